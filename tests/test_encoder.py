"""helpers.encoder.StainStatsEncoder: shapes, dtypes, no weights, determinism, batch
independence, uint8 and float inputs, known answers of ``statistics()`` (a blank patch, a
uniform hematoxylin patch), the fixed mixing (centring, whitening, Hadamard) and its
calibration file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from helpers import encoder as E
from helpers.encoder import N_STATS, StainStatsEncoder, filter_bank, hadamard_mixing

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DIM = 384
N_FILTERS, N_SCALES = 6, 3
#: statistics() is scaled by 10 (see its last line)
SCALE = 10.0


def random_patches(n: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def tissue_like_patches(n: int = 3, size: int = 256, seed: int = 0) -> torch.Tensor:
    """Smooth purple-pink blobs on white, uint8 ``(n, 3, size, size)``: nearer to H&E than
    uniform noise (whose 4x4 block means are all grey)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.uniform(0, 1, (3, size // 16, size // 16))
        big = torch.nn.functional.interpolate(
            torch.tensor(small)[None], size=(size, size), mode="bicubic", align_corners=False
        )[0].clamp(0, 1)
        rgb = torch.stack([0.55 + 0.45 * big[0], 0.25 + 0.7 * big[1], 0.6 + 0.4 * big[2]])
        out.append((rgb * 255).round().clamp(0, 255).to(torch.uint8))
    return torch.stack(out)


# --------------------------------------------------------------------------------------
# layout of statistics(): 5 stain statistics, then per scale 4 blocks of 12 responses
# (6 filters on hematoxylin, then the same 6 on eosin)
# --------------------------------------------------------------------------------------
TISSUE, H_MEAN, E_MEAN, H_STD, E_STD = range(5)
BLOCKS = ("abs_mean", "mean", "max", "neg_min")


def response_index(scale: int, block: str, stain: int, filt: int) -> int:
    """Column of ``statistics()`` for one filter response statistic."""
    per_scale = len(BLOCKS) * 2 * N_FILTERS
    return 5 + scale * per_scale + BLOCKS.index(block) * 2 * N_FILTERS + stain * N_FILTERS + filt


def test_statistics_count_and_layout():
    assert N_STATS == 5 + N_SCALES * len(BLOCKS) * 2 * N_FILTERS == 149
    assert response_index(N_SCALES - 1, "neg_min", 1, N_FILTERS - 1) == N_STATS - 1


def test_shapes_and_dtype():
    enc = StainStatsEncoder()
    assert enc.dim == DIM and enc.min_patch_px == 64
    for size in (64, 96, 256):  # 64 px is the smallest side pool=4 accepts
        x = random_patches(4, size)
        out, stats = enc(x), enc.statistics(x)
        assert out.shape == (4, DIM) and out.dtype == torch.float32
        assert stats.shape == (4, N_STATS) and stats.dtype == torch.float32
        assert torch.isfinite(out).all() and torch.isfinite(stats).all()
    assert StainStatsEncoder(dim=256)(random_patches(2)).shape == (2, 256)


def test_no_learned_weights():
    enc = StainStatsEncoder()
    assert list(enc.parameters()) == [] and enc.state_dict() == {}
    # every constant is a buffer, so .to(device) moves it
    assert {name for name, _ in enc.named_buffers()} == {"unmix", "bank", "center", "mixing"}


def test_deterministic_across_calls_and_instances():
    x = tissue_like_patches(4)
    a = StainStatsEncoder()(x)
    assert torch.equal(a, StainStatsEncoder()(x))
    assert torch.equal(a, StainStatsEncoder()(x.clone()))


def test_each_row_depends_on_its_own_patch_only():
    x = tissue_like_patches(4)
    enc = StainStatsEncoder()
    together = enc(x)
    alone = torch.cat([enc(x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(together, alone)
    assert not torch.allclose(together[0], together[1])  # different patches, different rows


def test_uint8_and_float_agree_exactly_when_blocks_are_flat():
    """Patches constant on every 4x4 block: OpenCV's area resize (uint8, CPU) has nothing to
    round, so it and ``avg_pool2d`` (float input) see the same 2 um/px image."""
    small = tissue_like_patches(3, 64)
    x = small.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)  # (3, 3, 256, 256)
    enc = StainStatsEncoder(calibrated=False)
    s8, sf = enc.statistics(x), enc.statistics(x.float() / 255.0)
    torch.testing.assert_close(s8, sf, atol=1e-4, rtol=1e-4)


def test_uint8_and_float_agree_closely():
    """On the CPU uint8 patches are pooled by OpenCV, which rounds each 4x4 block mean to a
    whole grey level (at most 0.5 of 255 off); float patches are not rounded. The statistics
    differ by that rounding only: a few hundredths, against spreads of whole units."""
    x = tissue_like_patches(4)
    enc = StainStatsEncoder(calibrated=False)
    s8, sf = enc.statistics(x), enc.statistics(x.float() / 255.0)
    diff = (s8 - sf).abs()
    assert diff.max() < 0.15, diff.max()
    assert diff.mean() < 0.02, diff.mean()
    # the rounding is not nothing (the two paths are really different) ...
    assert diff.max() > 0
    # ... and far below what tells patches apart
    spread = sf.std(0)
    assert (diff.mean(0) < 0.05 * spread + 1e-3).float().mean() > 0.9


def test_channels_first_and_channels_last_uint8_agree():
    """uint8 patches permuted from images ``(B, H, W, 3)`` (how TRIDENT reads them) take
    OpenCV's 3-channel path; contiguous ``(B, 3, H, W)`` takes the per-plane path: same
    numbers."""
    images = tissue_like_patches(3).permute(0, 2, 3, 1).contiguous()  # (B, H, W, 3)
    permuted = images.permute(0, 3, 1, 2)  # a view, channels-last in memory
    enc = StainStatsEncoder()
    torch.testing.assert_close(enc(permuted), enc(permuted.contiguous()), atol=0, rtol=0)


def test_a_blank_patch_has_every_statistic_zero():
    """White light: optical density 0, so no stain, no tissue, no filter response: every raw
    statistic is exactly 0, and the output is ``-center @ mixing``."""
    enc = StainStatsEncoder()
    for white in (
        torch.full((1, 3, 128, 128), 255, dtype=torch.uint8),
        torch.ones(1, 3, 128, 128),
    ):
        stats = enc.statistics(white)
        assert torch.equal(stats, torch.zeros(1, N_STATS))
        torch.testing.assert_close(enc(white), (-enc.center @ enc.mixing)[None])


def _uniform_hematoxylin(c: float, size: int) -> torch.Tensor:
    """Float RGB in [0, 1] whose optical density is ``c`` times the unit hematoxylin vector."""
    hema = np.array(E.stains.HEMATOXYLIN) / np.linalg.norm(E.stains.HEMATOXYLIN)
    rgb = np.exp(-c * hema)
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, size, size)


def _expected_uniform_responses(c: float, side: int) -> dict[tuple[str, int], float]:
    """What each hematoxylin filter gives on a uniform image of value ``c`` and ``side`` px,
    zero-padded at its borders, computed with SciPy (not torch): ``{(block, filter): value}``.
    Inside (3 px from the border) every response is 0, since the kernels sum to 0; near the
    border the padding cuts the kernel and the response is not 0."""
    bank = filter_bank().numpy()[:, 0].astype(np.float64)
    out = {}
    for f, kernel in enumerate(bank):
        image = np.full((side, side), c)
        # torch's conv2d is a correlation
        resp = scipy.signal.correlate2d(image, kernel, mode="same", boundary="fill")
        assert np.abs(resp[3:-3, 3:-3]).max() < 1e-6  # the interior: nothing
        cells = resp.reshape(side // 4, 4, side // 4, 4).mean((1, 3))
        out["abs_mean", f] = np.abs(resp).mean()
        out["mean", f] = resp.mean()
        out["max", f] = cells.max()
        out["neg_min", f] = -cells.min()
    return out


def test_filter_bank_kernels_have_zero_sum_and_unit_l1():
    bank = filter_bank()
    assert bank.shape == (N_FILTERS, 1, 7, 7)
    torch.testing.assert_close(bank.sum((1, 2, 3)), torch.zeros(N_FILTERS), atol=1e-6, rtol=0)
    torch.testing.assert_close(bank.abs().sum((1, 2, 3)), torch.ones(N_FILTERS))
    # x, y (first derivatives) are odd: minus themselves turned by 180 degrees; xy is odd
    # in each axis alone; LoG, xx and yy are even
    for f in (4, 5):
        torch.testing.assert_close(bank[f, 0], -bank[f, 0].flip(0, 1))
    torch.testing.assert_close(bank[3, 0], -bank[3, 0].flip(0))
    for f in (0, 1, 2):
        torch.testing.assert_close(bank[f, 0], bank[f, 0].flip(0, 1))


@pytest.mark.parametrize("c", [0.4, 0.8])
def test_a_uniform_hematoxylin_patch(c):
    """Optical density ``c`` x hematoxylin: tissue share 1, hematoxylin mean ``c``, no eosin,
    no spread; the filters answer only where the zero padding cuts them (the patch border),
    exactly as SciPy's zero-padded correlation says, and not at all on the eosin channel."""
    side = 256
    stats = StainStatsEncoder().statistics(_uniform_hematoxylin(c, side).contiguous())[0]
    stats = stats.double() / SCALE
    assert stats[TISSUE] == 1.0
    assert stats[H_MEAN] == pytest.approx(c, abs=1e-5)
    assert abs(stats[E_MEAN]) < 1e-5
    assert abs(stats[H_STD]) < 1e-5 and abs(stats[E_STD]) < 1e-5
    for scale in range(N_SCALES):
        level_side = side // 4 // 2**scale  # pooled by 4, then halved per scale
        expected = _expected_uniform_responses(c, level_side)
        for (block, f), value in expected.items():
            got = float(stats[response_index(scale, block, 0, f)])
            assert got == pytest.approx(value, abs=1e-5), (scale, block, f)
            assert abs(float(stats[response_index(scale, block, 1, f)])) < 1e-5  # eosin
        # odd filters balance out over the patch; the border makes LoG answer
        for f in (3, 4, 5):
            assert abs(expected["mean", f]) < 1e-9
        assert expected["abs_mean", 0] > 1e-3
        # the border is a thinner share of a larger image
        if scale:
            smaller = _expected_uniform_responses(c, level_side // 2)
            assert smaller["abs_mean", 0] > 1.5 * expected["abs_mean", 0]


def test_the_uniform_hematoxylin_patch_scales_with_its_stain():
    """Twice the stain, twice every statistic but the tissue share (the encoder is linear in
    optical density after the colour deconvolution)."""
    enc = StainStatsEncoder()
    a = enc.statistics(_uniform_hematoxylin(0.3, 128).contiguous())[0]
    b = enc.statistics(_uniform_hematoxylin(0.6, 128).contiguous())[0]
    torch.testing.assert_close(b[1:], 2 * a[1:], atol=1e-4, rtol=1e-4)
    assert b[1:].abs().sum() > 0


def test_more_stain_gives_a_higher_hematoxylin_mean():
    light = torch.full((1, 3, 64, 64), 200, dtype=torch.uint8)
    dark = torch.full((1, 3, 64, 64), 100, dtype=torch.uint8)
    enc = StainStatsEncoder()
    assert enc.statistics(dark)[0, H_MEAN] > enc.statistics(light)[0, H_MEAN] > 0


def test_forward_is_centred_statistics_times_mixing():
    x = tissue_like_patches(3)
    for calibrated in (True, False):
        enc = StainStatsEncoder(calibrated=calibrated)
        torch.testing.assert_close(enc(x), (enc.statistics(x) - enc.center) @ enc.mixing)
        assert enc.mixing.shape == (N_STATS, DIM) and enc.center.shape == (N_STATS,)


def test_mixing_is_the_calibration_times_the_hadamard_matrix():
    center, whiten = E.load_calibration()
    enc = StainStatsEncoder()
    assert torch.equal(enc.center, center)
    torch.testing.assert_close(enc.mixing, whiten @ hadamard_mixing(N_STATS, DIM) * E.GAIN)
    raw = StainStatsEncoder(calibrated=False)
    assert torch.equal(raw.center, torch.zeros(N_STATS))
    assert torch.equal(raw.mixing, hadamard_mixing(N_STATS, DIM))


def test_hadamard_mixing_is_sylvester_signs_over_sqrt_n():
    """Every entry is +-1 / sqrt(N_STATS), and every row is a row of Sylvester's Hadamard
    matrix (entry ``(i, j)`` = ``(-1) ** popcount(i & j)``) without its constant first
    column, a different row each time; exact, and the same on every call."""
    m = hadamard_mixing(N_STATS, DIM)
    assert m.shape == (N_STATS, DIM) and m.dtype == torch.float32
    unit = torch.tensor(1 / math.sqrt(N_STATS), dtype=torch.float32)
    assert set(m.abs().unique().tolist()) == {unit.item()}
    order = 2 ** math.ceil(math.log2(DIM + 1))
    sylvester = {
        tuple((-1) ** bin(i & j).count("1") for j in range(1, DIM + 1)): i for i in range(order)
    }
    rows = [sylvester.get(tuple(int(v) for v in row)) for row in torch.sign(m).tolist()]
    assert None not in rows and len(set(rows)) == N_STATS
    assert torch.equal(m, hadamard_mixing(N_STATS, DIM))
    assert torch.linalg.matrix_rank(m.double()) == N_STATS  # nothing of the statistics is lost


def test_no_output_dimension_is_a_copy_of_another():
    """Like a foundation model's embedding, every dimension mixes the statistics its own way:
    no two columns of the mixing (and so no two output dimensions) are equal."""
    m = hadamard_mixing(N_STATS, DIM)
    assert len(torch.unique(m.T, dim=0)) == DIM


def test_calibration_file_round_trip_and_shape_check(tmp_path):
    center = np.arange(N_STATS, dtype=np.float32)
    whiten = np.eye(N_STATS, dtype=np.float32) * 2
    path = tmp_path / "cal.npz"
    np.savez(path, center=center, whiten=whiten)
    c, w = E.load_calibration(path)
    assert torch.equal(c, torch.from_numpy(center)) and torch.equal(w, torch.from_numpy(whiten))
    c, w = E.load_calibration(tmp_path / "absent.npz")
    assert torch.equal(c, torch.zeros(N_STATS)) and torch.equal(w, torch.eye(N_STATS))
    np.savez(path, center=center[:10], whiten=whiten)
    with pytest.raises(ValueError, match=f"expected {N_STATS}"):
        E.load_calibration(path)


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_device_of_its_input(device):
    x = tissue_like_patches(3)
    enc = StainStatsEncoder().to(device)
    assert all(b.device.type == device for b in enc.buffers())
    out = enc(x.to(device))
    assert out.device.type == device
    # off the CPU uint8 patches are pooled without rounding: compare with float on the CPU
    ref = StainStatsEncoder()(x.float() / 255.0 if device != "cpu" else x)
    torch.testing.assert_close(out.cpu(), ref, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 3, 63, 128), "at least 64 x 64 px"),
        ((2, 3, 128, 60), "at least 64 x 64 px"),
        ((2, 4, 128, 128), "(batch_size, 3, height, width)"),
        ((3, 128, 128), "(batch_size, 3, height, width)"),
    ],
)
def test_bad_patch_shapes_are_named(shape, message):
    """Too small for the 64 px the pooling steps need, not RGB, or not a batch: a clear
    ValueError, not an error from inside ``avg_pool2d``."""
    escaped = message.replace("(", r"\(").replace(")", r"\)")
    for dtype in (torch.float32, torch.uint8):
        with pytest.raises(ValueError, match=escaped):
            StainStatsEncoder()(torch.zeros(shape, dtype=dtype))
