"""What tells tumour from normal tissue in the demo cohort, measured on the raw statistics of
``helpers.encoder.StainStatsEncoder.statistics`` (before the whitening and the Hadamard mixing
spread them over 384 dimensions) and on the pixels.

Patches are read from the slides as the cohort reads them (level 0, 512 px, 0.5 um/px):
up to 24 tumour and 24 other patches, evenly spaced, from each macro- and micro-metastasis
slide, and 12 from each normal slide. Measured on the demo cohort (seed 0, cohort version
5, 70 slides), single statistics against the patch labels of the tumour slides (AUROC):

- the energy of the hematoxylin filters at the coarsest scale (8 um/px: nests and large
  nuclei) separates tumour patches best: 0.97-0.99 for the six filters; at 4 um/px
  0.85-0.95, at 2 um/px only 0.52-0.71;
- the eosin mean reaches 0.86, the hematoxylin mean only 0.66 (tumour is not just "more
  purple"; version 7, painted in float64: 0.84 and 0.68); the eosin filters at 8 um/px
  0.61-0.73;
- within each centre the best statistic still reaches 0.99 (A) and 0.99 (B); the centres
  differ in the eosin of their tumour-free patches (AUROC 0.72 between centres);
- look-alikes: on the best statistic, 7 of the 46 normal slides hold a sampled patch above
  the 5th percentile of the tumour patches (3% of their patches), none above the median;
- the pixels inside the tumour mask are darker than the other tissue of the same slide on
  21 of the 22 metastasis slides of version 5 (grey level lower by 1-12 of 255; on
  tumor_004 higher by 1), above all in green (lower by 6-20 on all 22: more eosin), never
  clearly paler.

Re-measure: load this file as a module (``importlib``), then
``sample = sample_statistics(Path("data/demo"))`` and
``aurocs(sample, [f"H {f} abs_mean 8um" for f in FILTERS])``, and so on for each claim.
"""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import openslide
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from helpers import demo
from helpers.encoder import N_STATS, StainStatsEncoder
from helpers.trident import read_patches

FILTERS = ("LoG", "xx", "yy", "xy", "x", "y")
BLOCKS = ("abs_mean", "mean", "max", "neg_min")


def statistic_names() -> list[str]:
    """Names of the ``N_STATS`` columns of ``StainStatsEncoder.statistics`` (its layout: the
    tissue share, the two stains' means and spreads, then per scale 2, 4 and 8 um/px four
    statistics of six filters on hematoxylin, then on eosin)."""
    names = ["tissue", "H mean", "E mean", "H std", "E std"]
    for scale in (2, 4, 8):
        for block in BLOCKS:
            for stain in "HE":
                names += [f"{stain} {f} {block} {scale}um" for f in FILTERS]
    assert len(names) == N_STATS
    return names


NAMES = statistic_names()


def col(name: str) -> int:
    return NAMES.index(name)


def _even(idx: np.ndarray, k: int) -> np.ndarray:
    if len(idx) == 0:
        return idx
    return idx[np.linspace(0, len(idx) - 1, min(k, len(idx))).round().astype(int)]


def sample_statistics(
    root, per_class: int = 24, per_normal: int = 12
) -> tuple[pd.DataFrame, np.ndarray]:
    """Raw statistics of patches read from the cohort at ``root``: ``per_class`` tumour and
    ``per_class`` other patches of each metastasis slide, ``per_normal`` of each normal
    slide (evenly spaced in the bag): a table with one row per patch (slide, kind, centre,
    patch label) and its statistics, ``(n_patches, N_STATS)``."""
    paths = demo.CohortPaths(root)
    summary = demo.cohort_summary(root)
    encoder = StainStatsEncoder(calibrated=False)  # raw statistics: no calibration needed
    rows, stats = [], []
    for s in summary.itertuples():
        if s.kind == "itc":
            continue
        with h5py.File(paths.coords_path(s.name), "r") as f:
            coords, attrs = f["coords"][:], dict(f["coords"].attrs)
        with h5py.File(paths.patch_labels_path(s.name), "r") as f:
            labels = f["patch_labels"][:]
        if s.kind == "normal":
            pick = _even(np.arange(len(labels)), per_normal)
        else:
            pick = np.concatenate(
                [
                    _even(np.flatnonzero(labels == 1), per_class),
                    _even(np.flatnonzero(labels == 0), per_class),
                ]
            )
        with openslide.OpenSlide(str(paths.wsi(s.name))) as slide:
            batch = read_patches(
                slide,
                coords[pick],
                attrs["patch_size_level0"],
                int(attrs["patch_size"]),
                path=paths.wsi(s.name),
            )
        with torch.inference_mode():
            stats.append(encoder.statistics(torch.from_numpy(batch).permute(0, 3, 1, 2)).numpy())
        rows += [
            {"name": s.name, "kind": s.kind, "centre": s.centre, "label": int(labels[i])}
            for i in pick
        ]
    return pd.DataFrame(rows), np.concatenate(stats)


@pytest.fixture(scope="module")
def sample(demo_dir) -> tuple[pd.DataFrame, np.ndarray]:
    table, stats = sample_statistics(demo_dir)
    metastasis = table.kind.isin(["macro", "micro"])
    assert 0 < table.label[metastasis].sum() < metastasis.sum()
    assert len(stats) == len(table) and np.isfinite(stats).all()
    return table, stats


def aurocs(sample, names: list[str], mask=None) -> dict[str, float]:
    """AUROC of each named statistic against the patch labels, over the metastasis slides'
    patches (and ``mask``)."""
    table, stats = sample
    keep = table.kind.isin(["macro", "micro"]).to_numpy()
    if mask is not None:
        keep = keep & np.asarray(mask)
    stats, labels = stats[keep], table.label.to_numpy()[keep]
    return {n: roc_auc_score(labels, stats[:, col(n)]) for n in names}


def test_coarse_hematoxylin_texture_tells_tumour(sample):
    """Nests of large nuclei show at 8 um/px: every hematoxylin filter's energy there
    separates tumour patches (AUROC > 0.93); at 2 um/px none does well (< 0.8), and the
    coarser the scale, the better."""
    by_scale = {
        scale: aurocs(sample, [f"H {f} abs_mean {scale}um" for f in FILTERS]) for scale in (2, 4, 8)
    }
    coarse = by_scale[8]
    assert min(coarse.values()) > 0.93, coarse
    assert max(coarse.values()) > 0.96, coarse
    assert max(by_scale[2].values()) < 0.8, by_scale[2]
    means = [np.mean(list(by_scale[s].values())) for s in (2, 4, 8)]
    assert means[0] < means[1] < means[2], means


def test_eosin_not_hematoxylin_amount(sample):
    """Tumour patches hold more eosin (AUROC > 0.8: 0.86 in cohort version 5, 0.84 in
    version 7); the plain amount of hematoxylin tells little (< 0.8, and 0.1 below the
    eosin): tumour is not just "more purple". The eosin filters' energy at 8 um/px is weaker
    than any hematoxylin filter's there."""
    a = aurocs(sample, ["H mean", "E mean"])
    assert a["E mean"] > 0.8, a
    assert a["H mean"] < 0.8 and a["H mean"] < a["E mean"] - 0.1, a
    eosin = aurocs(sample, [f"E {f} abs_mean 8um" for f in FILTERS])
    haem = aurocs(sample, [f"H {f} abs_mean 8um" for f in FILTERS])
    assert max(eosin.values()) < min(haem.values()), (eosin, haem)


def test_the_signal_holds_in_each_centre_and_the_centres_differ(sample):
    """The best statistic separates tumour within each centre's slides alone (AUROC > 0.95):
    it is not the centre that tells tumour. The centres do differ: the eosin of their
    tumour-free patches tells them apart (AUROC > 0.65)."""
    table, stats = sample
    best = "H xy abs_mean 8um"
    for centre in ("A", "B"):
        a = aurocs(sample, [best], mask=table.centre == centre)[best]
        assert a > 0.95, (centre, a)
    negative = (table.label == 0).to_numpy()
    stats = stats[negative]
    from_a = (table.centre[negative] == "A").to_numpy()
    between = roc_auc_score(from_a, stats[:, col("E mean")])
    assert max(between, 1 - between) > 0.65, between


def test_normal_slides_hold_look_alikes(sample):
    """Benign look-alikes (germinal centres, histiocyte clusters): several normal slides hold
    a patch that the best single statistic puts among the tumour patches (above their 5th
    percentile), though none reaches the typical tumour patch (their median)."""
    table, stats = sample
    stats = stats[:, col("H xy abs_mean 8um")]
    tumour = stats[table.label.to_numpy() == 1]
    low, median = np.quantile(tumour, [0.05, 0.5])
    normal = (table.kind == "normal").to_numpy()
    top = pd.Series(stats[normal]).groupby(table.name[normal].to_numpy()).max()
    assert (top > low).sum() >= 3, top.describe()
    assert (top < median).all(), top.sort_values().tail()
    assert (stats[normal] > low).mean() < 0.1


def _colour_inside_and_outside(cfg, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean RGB of the tumour pixels (mask 2) and of the other tissue (mask 1), both read at
    the mask's level 3 (downsample 8)."""
    with openslide.OpenSlide(str(cfg.mask_path(name))) as mask:
        level = 3
        size = mask.level_dimensions[level]
        values = np.asarray(mask.read_region((0, 0), level, size))[..., 0]
        downsample = mask.level_downsamples[level]
    with openslide.OpenSlide(str(cfg.wsi_path(name))) as slide:
        level = slide.get_best_level_for_downsample(downsample)
        rgb = slide.read_region((0, 0), level, slide.level_dimensions[level]).convert("RGB")
    rgb = cv2.resize(np.asarray(rgb), size, interpolation=cv2.INTER_AREA).astype(float)
    assert (values == 2).any() and (values == 1).any(), name
    return rgb[values == 2].mean(0), rgb[values == 1].mean(0)


def test_tumour_pixels_are_darker_and_pinker_not_paler(demo_settings, demo_dir):
    cfg = demo_settings
    summary = demo.cohort_summary(demo_dir)
    names = list(summary.name[summary.kind.isin(["macro", "micro"])])
    pairs = [_colour_inside_and_outside(cfg, n) for n in names]
    inside, outside = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    darker = outside.mean(1) - inside.mean(1)  # grey level, tumour below the other tissue
    # darker on most slides, and nowhere clearly paler
    assert (darker > 0.5).mean() >= 0.9, dict(zip(names, darker.round(2), strict=True))
    assert np.median(darker) > 3 and (darker > -2).all(), darker.round(2)
    green = outside[:, 1] - inside[:, 1]  # eosin absorbs green
    assert (green > 5).all(), dict(zip(names, green.round(2), strict=True))
    assert (green > darker).all()
