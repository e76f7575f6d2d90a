"""Paint H&E-like lymph-node tissue for the demo cohort.

Everything here works at the *painting* resolution of 1 um/px (10x, level-0 downsample 4)
and in optical-density space: a hematoxylin map (nuclei, purple) and an eosin map
(cytoplasm and stroma, pink) are mixed with Beer-Lambert's law, the way a stained section
absorbs light. Nuclei are stamped by convolving sparse random impulses with a nucleus
kernel, which paints tens of thousands of nuclei in a few milliseconds.

Tissue compartments, as in a lymph node:

- lymphoid cortex: dense, small, dark round nuclei (lymphocytes, ~7 um);
- germinal centres: rounded islands of larger, paler nuclei inside the cortex;
- stroma / medulla: pink fibres with sparse elongated nuclei;
- capsule: a pink fibrous rim along the tissue border;
- metastatic tumour (only inside the given polygons): nests of large (~13 um), pale,
  irregular nuclei with a dark rim and a nucleolus, in pink-purple cytoplasm.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from helpers import stains

PAINT_DOWNSAMPLE = 4  # painting resolution = level-0 pixels / 4 (1 um/px at 0.25 mpp)

# Ruifrok & Johnston optical-density vectors (RGB) of hematoxylin and eosin
HEMATOXYLIN = np.array(stains.HEMATOXYLIN)
EOSIN = np.array(stains.EOSIN)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: float) -> np.ndarray:
    """Zero-mean, unit-variance random field with features about ``scale`` pixels wide.

    Drawn on a coarse grid and upsampled, so it costs little even for large images.
    Returns float32 of shape ``shape``.
    """
    step = max(1, int(scale / 4))
    small = rng.standard_normal((shape[0] // step + 3, shape[1] // step + 3)).astype(np.float32)
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=max(scale / step / 2, 0.5))
    field = cv2.resize(small, (shape[1] + 3 * step, shape[0] + 3 * step), cv2.INTER_CUBIC)
    field = field[: shape[0], : shape[1]]
    return (field - field.mean()) / (field.std() + 1e-6)


def _disk_kernel(
    radius_x: float, radius_y: float, angle: float = 0.0, half: int | None = None
) -> np.ndarray:
    """A soft-edged filled ellipse, float32, peak 1, of side ``2 * half + 1``."""
    half = half or int(np.ceil(max(radius_x, radius_y))) + 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    u = (c * xx + s * yy) / radius_x
    v = (-s * xx + c * yy) / radius_y
    r = np.sqrt(u**2 + v**2)
    return np.clip((1.0 - r) * max(radius_x, radius_y) + 0.5, 0.0, 1.0).astype(np.float32)


def _stamp(points: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Place ``kernel`` at every non-zero pixel of ``points`` (a sparse float map)."""
    return cv2.filter2D(points, -1, kernel, borderType=cv2.BORDER_CONSTANT)


def _impulses(rng: np.random.Generator, density: np.ndarray) -> np.ndarray:
    """Bernoulli impulses with per-pixel probability ``density``."""
    return (rng.random(density.shape, dtype=np.float32) < density).astype(np.float32)


def tissue_shape(rng: np.random.Generator, shape: tuple[int, int], margin: int) -> np.ndarray:
    """An irregular lymph-node section (one or two lobes) as a bool mask of ``shape``."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = np.full(shape, np.inf, np.float32)
    lobes = 1 if rng.random() < 0.75 else 2
    for k in range(lobes):
        cx = w * (0.5 if lobes == 1 else (0.32 + 0.36 * k)) + rng.normal(0, w * 0.03)
        cy = h * 0.5 + rng.normal(0, h * 0.04)
        ax = (w / 2 - margin) * (1.0 if lobes == 1 else 0.55) * rng.uniform(0.92, 1.05)
        ay = (h / 2 - margin) * rng.uniform(0.9, 1.02)
        ang = rng.uniform(-0.3, 0.3)
        c, s = np.cos(ang), np.sin(ang)
        u = (c * (xx - cx) + s * (yy - cy)) / ax
        v = (-s * (xx - cx) + c * (yy - cy)) / ay
        dist = np.minimum(dist, np.sqrt(u**2 + v**2))
    wobble = 0.13 * smooth_field(rng, shape, 260) + 0.04 * smooth_field(rng, shape, 50)
    tissue = (dist + wobble) < 1.0
    # keep a clean margin so no patch grid cell falls off the slide
    tissue[:margin] = tissue[-margin:] = False
    tissue[:, :margin] = tissue[:, -margin:] = False
    # keep the largest pieces only (no specks)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(tissue.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] > 0.05 * tissue.sum()
    return keep[lab]


@dataclass
class _Compartments:
    """Where each tissue compartment is: float32 maps ``(H, W)`` in [0, 1]."""

    tissue: np.ndarray  # tissue as 0/1
    capsule: np.ndarray  # fibrous rim along the border
    stroma: np.ndarray
    gc: np.ndarray  # germinal centres
    mantle: np.ndarray  # the dense ring around them
    tum: np.ndarray  # tumour, slightly blurred
    lymphoid: np.ndarray
    normal: np.ndarray  # 1 - tum


def paint_section(
    rng: np.random.Generator,
    tissue: np.ndarray,
    tumor: np.ndarray,
    stain: dict[str, float],
) -> np.ndarray:
    """Paint an H&E section at 1 um/px.

    Arguments:
        rng: random generator (the slide's own, for determinism).
        tissue: bool mask ``(H, W)`` of where tissue is.
        tumor: bool mask ``(H, W)`` of metastatic tumour (inside ``tissue``).
        stain: per-slide staining: ``h`` and ``e`` strengths, ``hue`` shift, ``stroma`` share
            and ``follicles`` density.

    Returns:
        RGB image, uint8 of shape ``(H, W, 3)``.
    """
    # the steps draw from ``rng`` in this order: changing it changes every slide
    parts = _compartments(rng, tissue, tumor, stain)
    hema = _lymph_node_nuclei(rng, parts)
    nests = _tumour_nuclei(rng, tumor, parts.tum, hema)
    eos = _eosin(rng, parts, nests)
    return _beer_lambert(rng, hema, eos, stain)


def _compartments(
    rng: np.random.Generator, tissue: np.ndarray, tumor: np.ndarray, stain: dict[str, float]
) -> _Compartments:
    """Capsule, stroma, germinal centres and their mantles, tumour and lymphoid tissue."""
    shape = tissue.shape
    tf = tissue.astype(np.float32)
    border = cv2.distanceTransform(tissue.astype(np.uint8), cv2.DIST_L2, 5)
    capsule = np.clip(1.0 - (border - 8.0) / 10.0, 0, 1) * tf
    stroma_field = smooth_field(rng, shape, 160)
    cut = np.quantile(stroma_field[tissue], 1.0 - stain["stroma"]) if tissue.any() else 0
    stroma = np.clip((stroma_field - cut) * 2.0 + 0.5, 0, 1) * tf
    inner = np.argwhere((border > 90) & (stroma < 0.2) & ~tumor)
    gc, mantle = _follicles(rng, inner, tf, stain["follicles"] * tissue.sum() / 1e6)
    tum = cv2.GaussianBlur(tumor.astype(np.float32), (0, 0), 1.5)
    lymphoid = np.clip(tf - stroma - capsule, 0, 1)
    return _Compartments(tf, capsule, stroma, gc, mantle, tum, lymphoid, 1.0 - tum)


def _follicles(
    rng: np.random.Generator, inner: np.ndarray, tf: np.ndarray, expected: float
) -> tuple[np.ndarray, np.ndarray]:
    """Germinal centres (round islands) and the dense mantle around them, centred on pixels
    of ``inner``; ``expected`` follicles on average. Returns ``(gc, mantle)``."""
    gc = np.zeros(tf.shape, np.float32)
    mantle = np.zeros(tf.shape, np.float32)
    if not len(inner):
        return gc, mantle
    for _ in range(rng.poisson(expected)):
        cy, cx = inner[rng.integers(len(inner))]
        r = rng.uniform(45, 85)
        cv2.circle(mantle, (int(cx), int(cy)), int(r * 1.45), 1.0, -1)
        axes = (int(r), int(r * rng.uniform(0.75, 1)))
        cv2.ellipse(gc, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
    gc = cv2.GaussianBlur(gc, (0, 0), 6) * tf
    mantle = np.clip(cv2.GaussianBlur(mantle, (0, 0), 6) - gc, 0, 1) * tf
    return gc, mantle


def _lymph_node_nuclei(rng: np.random.Generator, parts: _Compartments) -> np.ndarray:
    """Hematoxylin of the normal tissue: lymphocytes, germinal-centre cells, fibroblasts."""
    p = parts
    lym_density = (0.016 + 0.007 * smooth_field(rng, p.tissue.shape, 60).clip(-1, 1)) * p.lymphoid
    lym_density = (lym_density * (1 - p.gc) + 0.024 * p.mantle) * p.normal + 0.0015 * p.tum
    hema = 1.15 * np.clip(_stamp(_impulses(rng, lym_density), _disk_kernel(3.2, 3.0)), 0, 1)
    hema += 0.62 * np.clip(
        _stamp(_impulses(rng, 0.006 * p.gc * p.normal), _disk_kernel(4.6, 4.0)), 0, 1
    )
    fib_density = (0.0024 * p.stroma + 0.004 * p.capsule) * p.normal
    for angle in (0.3, 1.9):
        fib = _stamp(_impulses(rng, fib_density), _disk_kernel(6.0, 1.6, angle))
        hema += 0.95 * np.clip(fib, 0, 1)
    hema += 0.06 * p.tissue
    return hema


def _tumour_nuclei(
    rng: np.random.Generator, tumor: np.ndarray, tum: np.ndarray, hema: np.ndarray
) -> np.ndarray:
    """Add the tumour's nuclei to ``hema`` (in place), painted inside its bounding box only:
    nests of large, pale, irregular nuclei with a dark rim and a nucleolus. Returns the
    nests map (float32 ``(H, W)``)."""
    nests = np.zeros(tumor.shape, np.float32)
    if not tumor.any():
        return nests
    ys, xs = np.nonzero(tumor)
    box = np.s_[max(ys.min() - 12, 0) : ys.max() + 13, max(xs.min() - 12, 0) : xs.max() + 13]
    t_box = tum[box]
    nests[box] = np.clip(smooth_field(rng, t_box.shape, 28) * 1.5 + 1.2, 0, 1)
    nuc = np.zeros(t_box.shape, np.float32)
    for angle in (0.2, 1.0, 1.8, 2.6):
        pts = _impulses(rng, 0.0016 * t_box * nests[box])
        rx, ry = rng.uniform(6.0, 7.5), rng.uniform(4.6, 5.8)
        body = _disk_kernel(rx, ry, angle, half=10)
        ring = np.clip(body - _disk_kernel(rx - 1.6, ry - 1.6, angle, half=10), 0, 1)
        kernel = 0.30 * body + 0.55 * ring + 0.70 * _disk_kernel(1.3, 1.3, half=10)
        nuc += _stamp(pts, kernel)
    hema[box] += np.clip(nuc, 0, 1.3)
    return nests


def _eosin(rng: np.random.Generator, parts: _Compartments, nests: np.ndarray) -> np.ndarray:
    """Eosin: cytoplasm and fibres, strongest in the capsule and the stroma."""
    p = parts
    fibres = 0.5 + 0.5 * np.clip(smooth_field(rng, p.tissue.shape, 6), -1, 1)
    eos = (
        0.20 * p.lymphoid * p.normal
        + 0.12 * p.gc * p.normal
        + 0.50 * p.stroma * p.normal * (0.6 + 0.5 * fibres)
        + 0.75 * p.capsule * (0.7 + 0.4 * fibres)
        + 0.42 * p.tum * (0.8 + 0.3 * nests)
    )
    return eos * (1.0 + 0.15 * smooth_field(rng, p.tissue.shape, 40)) * p.tissue


def _beer_lambert(
    rng: np.random.Generator, hema: np.ndarray, eos: np.ndarray, stain: dict[str, float]
) -> np.ndarray:
    """Mix the stain densities into RGB as light through the section: uint8 ``(H, W, 3)``."""
    h_vec = HEMATOXYLIN + np.array([stain["hue"], 0.0, -stain["hue"]])
    h_vec = h_vec / np.linalg.norm(h_vec)
    e_vec = EOSIN / np.linalg.norm(EOSIN)
    grain = 0.015 * rng.standard_normal(hema.shape, dtype=np.float32)
    od = cv2.merge(
        [
            hema * np.float32(1.15 * stain["h"] * h_vec[c])
            + eos * np.float32(0.85 * stain["e"] * e_vec[c])
            + (0.035 + grain)
            for c in range(3)
        ]
    )
    od = cv2.GaussianBlur(od, (0, 0), 0.7)
    rgb = 255.0 * np.exp(-np.clip(od, 0, None))
    return np.clip(rgb, 0, 255).astype(np.uint8)


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
