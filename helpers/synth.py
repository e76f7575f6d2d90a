"""Paint H&E-like lymph-node tissue for the demo cohort.

Everything here works at the *painting* resolution of 2 um/px (5x; level-0 downsample 4 of
the demo's 20x, 0.5 um/px slides) and in optical-density space: a hematoxylin map (nuclei,
purple) and an eosin map (cytoplasm and stroma, pink) are mixed with Beer-Lambert's law, the
way a stained section absorbs light. Nuclei are stamped by convolving sparse random impulses
with a nucleus kernel, which paints hundreds of thousands of nuclei in milliseconds.

Tissue compartments, as in a lymph node:

- lymphoid cortex: dense, small, dark round nuclei (lymphocytes, ~7 um);
- germinal centres: rounded islands of larger, paler nuclei inside the cortex;
- sinus histiocytes: clusters of large, pale, oval nuclei in abundant pink cytoplasm, the
  benign look-alike of metastatic tumour (they share its pale nuclei and its eosin);
- stroma / medulla: pink fibres with sparse elongated nuclei;
- capsule: a pink fibrous rim along the tissue border;
- metastatic tumour (only inside the given polygons): crowded nests of large (~13 um),
  irregular nuclei with a dark rim and a nucleolus, in pink-purple cytoplasm.

The scanner of each of two centres (:data:`CENTRES`) adds its own stain strength, hue,
sharpness and background tint.

The painting is the same on every machine: its arithmetic is float64 from the random draws
to the one rounding to 8-bit RGB at the end, and it uses no step whose result depends on the
CPU's instruction set (OpenCV's float32 kernels, its float64 bilinear resize and its
approximate distance transform pick their code per CPU and library build, and differ by far
more than rounding). The float64 kernels it keeps (Gaussian blur, filtering) differ between
code paths by 1e-16 to 1e-13, far below what turns a grey level into the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np
import scipy.ndimage

from helpers import stains

PAINT_DOWNSAMPLE = 4  # painting resolution = level-0 pixels / 4 (2 um/px at 0.5 mpp)
UM_PER_PX = 2.0  # micrometres per painting pixel

# Ruifrok & Johnston optical-density vectors (RGB) of hematoxylin and eosin
HEMATOXYLIN = np.array(stains.HEMATOXYLIN)
EOSIN = np.array(stains.EOSIN)

#: Per-centre ranges of the staining and scanning (uniform draws per slide): hematoxylin
#: and eosin strength, hue shift of hematoxylin, optical blur (px) and background tint
#: (optical density added to R, G, B of the whole slide; small enough that the glass stays
#: grey to TRIDENT's segmenter, HSV saturation <= 10 of 255).
CENTRES: dict[str, dict[str, tuple]] = {
    "A": {"h": (0.95, 1.15), "e": (0.9, 1.2), "hue": (-0.08, 0.0), "blur": (0.55, 0.7),
          "tint": (0.0, 0.0, 0.0)},
    "B": {"h": (0.75, 0.95), "e": (0.65, 0.9), "hue": (0.02, 0.08), "blur": (0.85, 1.1),
          "tint": (0.0, 0.008, 0.03)},
}  # fmt: skip


def px(um: float) -> float:
    """Micrometres to painting pixels."""
    return um / UM_PER_PX


def distance_to_edge(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels, float64) of every pixel of the bool ``mask`` to the nearest
    pixel outside it. Exact (OpenCV's precise transform: the square root of a whole number),
    so the same on every machine; OpenCV's 3x3 and 5x5 approximations are not."""
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist.astype(np.float64)


def resize_linear(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float64 ``image`` to ``shape`` (rows, columns), pixel centres
    aligned as OpenCV aligns them. SciPy's plain C, not OpenCV: OpenCV's optimised bilinear
    path for float64 differs from its own reference path by up to 1e-4."""
    zoom = (shape[0] / image.shape[0], shape[1] / image.shape[1])
    # an ndarray (scipy types its result as any array too)
    out = cast(np.ndarray, scipy.ndimage.zoom(image, zoom, order=1, mode="nearest", grid_mode=True))
    if out.shape != tuple(shape):  # pragma: no cover - zoom rounds the shape it computes
        raise ValueError(f"resize to {shape} gave {out.shape}")
    return out


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-variance random field with features about ``scale`` pixels wide.

    Drawn on a coarse grid and upsampled, so it costs little even for large images.
    Returns float64 of shape ``shape``.
    """
    step = max(1, int(scale / 4))
    small = rng.standard_normal((shape[0] // step + 3, shape[1] // step + 3))
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=max(scale / step / 2, 0.5))
    field = resize_linear(small, (shape[0] + 3 * step, shape[1] + 3 * step))
    field = field[: shape[0], : shape[1]]
    return (field - field.mean()) / (field.std() + 1e-6)


def _disk_kernel(
    radius_x: float, radius_y: float, angle: float = 0.0, half: int | None = None
) -> np.ndarray:
    """A soft-edged filled ellipse, float64, peak 1, of side ``2 * half + 1``."""
    half = half or int(np.ceil(max(radius_x, radius_y))) + 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    u = (c * xx + s * yy) / radius_x
    v = (-s * xx + c * yy) / radius_y
    r = np.sqrt(u**2 + v**2)
    return np.clip((1.0 - r) * max(radius_x, radius_y) + 0.5, 0.0, 1.0)


def _stamp(points: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Place ``kernel`` at every non-zero pixel of ``points`` (a sparse float map)."""
    return cv2.filter2D(points, -1, kernel, borderType=cv2.BORDER_CONSTANT)


def _impulses(rng: np.random.Generator, density: np.ndarray) -> np.ndarray:
    """Bernoulli impulses (float64 0/1) with per-pixel probability ``density``."""
    # (the draws are float32, as in cohort versions up to 6: the same random stream)
    return (rng.random(density.shape, dtype=np.float32) < density).astype(np.float64)


def tissue_shape(rng: np.random.Generator, shape: tuple[int, int], margin: int) -> np.ndarray:
    """An irregular lymph-node section (one to three lobes) as a bool mask of ``shape``.

    Drawn on a grid 8 times coarser and upsampled (the outline is smooth at that scale).
    """
    h, w = shape
    coarse = (max(h // 8, 8), max(w // 8, 8))
    yy, xx = np.mgrid[0 : coarse[0], 0 : coarse[1]].astype(np.float64) * 8.0
    dist = np.full(coarse, np.inf)
    lobes = 1 if rng.random() < 0.7 else 2
    for k in range(lobes):
        cx = w * (0.5 if lobes == 1 else (0.3 + 0.4 * k)) + rng.normal(0, w * 0.03)
        cy = h * 0.5 + rng.normal(0, h * 0.04)
        ax = (w / 2 - margin) * (1.0 if lobes == 1 else 0.56) * rng.uniform(0.92, 1.05)
        ay = (h / 2 - margin) * rng.uniform(0.9, 1.02)
        ang = rng.uniform(-0.3, 0.3)
        c, s = np.cos(ang), np.sin(ang)
        u = (c * (xx - cx) + s * (yy - cy)) / ax
        v = (-s * (xx - cx) + c * (yy - cy)) / ay
        dist = np.minimum(dist, np.sqrt(u**2 + v**2))
    wobble = 0.13 * smooth_field(rng, coarse, 32) + 0.04 * smooth_field(rng, coarse, 6)
    level = resize_linear(dist + wobble, (h, w))
    tissue = level < 1.0
    # keep a clean margin so no patch grid cell falls off the slide
    tissue[:margin] = tissue[-margin:] = False
    tissue[:, :margin] = tissue[:, -margin:] = False
    # keep the largest pieces only (no specks)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(tissue.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] > 0.05 * tissue.sum()
    return keep[cast(np.ndarray, lab)]  # (H, W) int32 labels (OpenCV types any matrix)


@dataclass
class _Compartments:
    """Where each tissue compartment is: float64 maps ``(H, W)`` in [0, 1]."""

    tissue: np.ndarray  # tissue as 0/1
    capsule: np.ndarray  # fibrous rim along the border
    stroma: np.ndarray
    gc: np.ndarray  # germinal centres
    mantle: np.ndarray  # the dense ring around them
    histio: np.ndarray  # sinus histiocyte clusters (the look-alike)
    tum: np.ndarray  # tumour, slightly blurred
    lymphoid: np.ndarray
    normal: np.ndarray  # 1 - tum


def paint_section(
    rng: np.random.Generator,
    tissue: np.ndarray,
    tumor: np.ndarray,
    stain: dict[str, Any],
    cellularity: np.ndarray | None = None,
) -> np.ndarray:
    """Paint an H&E section at 2 um/px.

    Arguments:
        rng: random generator (the slide's own, for determinism).
        tissue: bool mask ``(H, W)`` of where tissue is.
        tumor: bool mask ``(H, W)`` of metastatic tumour (inside ``tissue``).
        stain: per-slide staining and scanning: ``h`` and ``e`` strengths, ``hue`` shift,
            ``blur`` (px), ``tint`` (3 optical densities), ``stroma`` share, ``follicles``
            density and ``histiocytes`` (expected clusters per mm^2 of tissue).
        cellularity: float ``(H, W)`` in [0, 1], the share of tumour cells where ``tumor``
            holds (1, a solid nest, if ``None``); the rest is lymph node.

    Returns:
        RGB image, uint8 of shape ``(H, W, 3)``.
    """
    # tumour share of each pixel, slightly blurred: 1 in a solid nest
    tum = cv2.GaussianBlur(tumor.astype(np.float64), (0, 0), 0.75)
    if cellularity is not None:
        tum *= cv2.GaussianBlur(cellularity.astype(np.float64), (0, 0), 0.75)
    # the steps draw from ``rng`` in this order: changing it changes every slide
    parts = _compartments(rng, tissue, tumor, tum, stain)
    hema, eos_cells = _lymph_node_nuclei(rng, parts)
    nests = _tumour_nuclei(rng, tumor, parts.tum, hema)
    eos = _eosin(rng, parts, nests) + eos_cells
    return _beer_lambert(rng, hema, eos, stain)


def _compartments(
    rng: np.random.Generator, tissue: np.ndarray, tumor: np.ndarray, tum: np.ndarray, stain: dict
) -> _Compartments:
    """Capsule, stroma, germinal centres and their mantles, histiocyte clusters, tumour
    (``tum``, its share of each pixel) and lymphoid tissue."""
    shape = tissue.shape
    tf = tissue.astype(np.float64)
    border = distance_to_edge(tissue)
    capsule = np.clip(1.0 - (border - px(16)) / px(20), 0, 1) * tf
    stroma_field = smooth_field(rng, shape, px(320))
    cut = np.quantile(stroma_field[tissue][::97], 1.0 - stain["stroma"]) if tissue.any() else 0
    stroma = np.clip((stroma_field - cut) * 2.0 + 0.5, 0, 1) * tf
    mm2 = tissue.sum() * UM_PER_PX**2 / 1e6
    inner = np.argwhere((border > px(180)) & (stroma < 0.2) & ~tumor)[::7]
    gc, mantle = _follicles(rng, inner, tf, stain["follicles"] * mm2 / 4.0)
    near_stroma = np.argwhere((stroma > 0.3) & (border > px(60)) & ~tumor)[::7]
    histio = _clusters(rng, near_stroma, shape, stain["histiocytes"] * mm2) * tf
    lymphoid = np.clip(tf - stroma - capsule, 0, 1)
    return _Compartments(tf, capsule, stroma, gc, mantle, histio, tum, lymphoid, 1.0 - tum)


def _follicles(
    rng: np.random.Generator, inner: np.ndarray, tf: np.ndarray, expected: float
) -> tuple[np.ndarray, np.ndarray]:
    """Germinal centres (round islands) and the dense mantle around them, centred on pixels
    of ``inner``; ``expected`` follicles on average. Returns ``(gc, mantle)``."""
    gc = np.zeros(tf.shape)
    mantle = np.zeros(tf.shape)
    if not len(inner):
        return gc, mantle
    for _ in range(rng.poisson(expected)):
        cy, cx = inner[rng.integers(len(inner))]
        r = rng.uniform(px(90), px(170))
        cv2.circle(mantle, (int(cx), int(cy)), int(r * 1.45), 1.0, -1)
        axes = (int(r), int(r * rng.uniform(0.75, 1)))
        cv2.ellipse(gc, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
    gc = cv2.GaussianBlur(gc, (0, 0), 3) * tf
    mantle = np.clip(cv2.GaussianBlur(mantle, (0, 0), 3) - gc, 0, 1) * tf
    return gc, mantle


def _clusters(
    rng: np.random.Generator, centres: np.ndarray, shape: tuple[int, int], expected: float
) -> np.ndarray:
    """Irregular clusters (sinus histiocytes), ``expected`` of them on average, centred on
    pixels of ``centres``; a float64 map in [0, 1]."""
    out = np.zeros(shape)
    if not len(centres):
        return out
    for _ in range(rng.poisson(expected)):
        cy, cx = centres[rng.integers(len(centres))]
        for _blob in range(int(rng.integers(2, 6))):
            dx, dy = rng.normal(0, px(60), 2)
            axes = (int(rng.uniform(px(40), px(110))), int(rng.uniform(px(25), px(70))))
            centre = (int(cx + dx), int(cy + dy))
            cv2.ellipse(out, centre, axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
    return cv2.GaussianBlur(out, (0, 0), 2)


def _lymph_node_nuclei(
    rng: np.random.Generator, parts: _Compartments
) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin of the normal tissue (lymphocytes, germinal-centre cells, fibroblasts,
    histiocytes) and the eosin of the histiocytes' cytoplasm: ``(hema, eos)``."""
    p = parts
    shape = p.tissue.shape
    crowd = 0.064 + 0.028 * smooth_field(rng, shape, px(60)).clip(-1, 1)
    lym_density = crowd * p.lymphoid * (1 - p.gc) * (1 - p.histio) + 0.096 * p.mantle
    lym_density = lym_density * p.normal + 0.006 * p.tum
    hema = 1.15 * np.clip(_stamp(_impulses(rng, lym_density), _disk_kernel(1.6, 1.5)), 0, 1)
    hema += 0.62 * np.clip(
        _stamp(_impulses(rng, 0.024 * p.gc * p.normal), _disk_kernel(2.3, 2.0)), 0, 1
    )
    fib_density = (0.0096 * p.stroma + 0.016 * p.capsule) * p.normal * (1 - p.histio)
    for angle in (0.3, 1.9):
        fib = _stamp(_impulses(rng, fib_density), _disk_kernel(3.0, 0.8, angle))
        hema += 0.95 * np.clip(fib, 0, 1)
    # histiocytes: large pale oval nuclei, each in a wide pink cell body
    histio_pts = _impulses(rng, 0.016 * p.histio * p.normal)
    nucleus = _disk_kernel(2.9, 2.1, rng.uniform(0, np.pi), half=6)
    hema += 0.42 * np.clip(_stamp(histio_pts, nucleus), 0, 1)
    eos = 0.45 * np.clip(_stamp(histio_pts, _disk_kernel(5.5, 5.0, half=6)), 0, 1)
    hema += 0.06 * p.tissue
    return hema, eos


def _tumour_nuclei(
    rng: np.random.Generator, tumor: np.ndarray, tum: np.ndarray, hema: np.ndarray
) -> np.ndarray:
    """Add the tumour's nuclei to ``hema`` (in place), painted inside its bounding box only:
    crowded nests of large, irregular nuclei with a dark rim and a nucleolus. Returns the
    nests map (float64 ``(H, W)``)."""
    nests = np.zeros(tumor.shape)
    if not tumor.any():
        return nests
    ys, xs = np.nonzero(tumor)
    box = np.s_[max(ys.min() - 6, 0) : ys.max() + 7, max(xs.min() - 6, 0) : xs.max() + 7]
    t_box = tum[box]
    nests[box] = np.clip(smooth_field(rng, t_box.shape, px(28)) * 1.5 + 1.2, 0, 1)
    nuc = np.zeros(t_box.shape)
    for angle in (0.2, 1.0, 1.8, 2.6):
        pts = _impulses(rng, 0.0075 * t_box * nests[box])
        rx, ry = rng.uniform(3.0, 3.75), rng.uniform(2.3, 2.9)
        body = _disk_kernel(rx, ry, angle, half=6)
        ring = np.clip(body - _disk_kernel(rx - 1.0, ry - 1.0, angle, half=6), 0, 1)
        kernel = 0.30 * body + 0.55 * ring + 0.70 * _disk_kernel(0.8, 0.8, half=6)
        nuc += _stamp(pts, kernel)
    hema[box] += np.clip(nuc, 0, 1.3)
    return nests


def _eosin(rng: np.random.Generator, parts: _Compartments, nests: np.ndarray) -> np.ndarray:
    """Eosin: cytoplasm and fibres, strongest in the capsule and the stroma."""
    p = parts
    fibres = 0.5 + 0.5 * np.clip(smooth_field(rng, p.tissue.shape, 3), -1, 1)
    eos = (
        0.20 * p.lymphoid * p.normal * (1 - p.histio)
        + 0.12 * p.gc * p.normal
        + 0.18 * p.histio * p.normal
        + 0.50 * p.stroma * p.normal * (1 - p.histio) * (0.6 + 0.5 * fibres)
        + 0.75 * p.capsule * (0.7 + 0.4 * fibres)
        + 0.42 * p.tum * (0.8 + 0.3 * nests)
    )
    return eos * (1.0 + 0.15 * smooth_field(rng, p.tissue.shape, px(40))) * p.tissue


def _beer_lambert(
    rng: np.random.Generator, hema: np.ndarray, eos: np.ndarray, stain: dict[str, Any]
) -> np.ndarray:
    """Mix the stain densities into RGB as light through the section, then the scanner's
    blur and tint: uint8 ``(H, W, 3)``."""
    h_vec = HEMATOXYLIN + np.array([stain["hue"], 0.0, -stain["hue"]])
    h_vec = h_vec / np.linalg.norm(h_vec)
    e_vec = EOSIN / np.linalg.norm(EOSIN)
    # (float32 draws, as in cohort versions up to 6: the same random stream)
    grain = 0.015 * rng.standard_normal(hema.shape, dtype=np.float32).astype(np.float64)
    grain += 0.035
    tint = stain["tint"]
    od = cv2.merge(
        [
            cv2.scaleAdd(hema, float(1.15 * stain["h"] * h_vec[c]), grain)
            + eos * (0.85 * stain["e"] * e_vec[c])
            + tint[c]
            for c in range(3)
        ]
    )
    od = cv2.GaussianBlur(od, (0, 0), stain["blur"])
    np.maximum(od, 0, out=od)
    rgb = np.exp(-od) * 255.0  # light through the section, in grey levels
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)  # the one rounding


def lesion_polygon(
    rng: np.random.Generator, center: tuple[float, float], radius: float, n_vertices: int = 28
) -> np.ndarray:
    """An irregular, star-shaped tumour outline: float ``(n_vertices, 2)`` rows of (x, y)."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
    harmonics = np.zeros(n_vertices)
    for k in (2, 3, 5):
        harmonics += rng.normal(0, 0.08) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    radii = radius * (1.0 + harmonics + rng.normal(0, 0.04, n_vertices))
    return np.stack(
        [center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)], axis=1
    )
