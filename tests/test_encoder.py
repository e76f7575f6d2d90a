"""helpers.encoder.StainStatsEncoder: shapes, dtypes, determinism, known inputs with known
answers (a blank patch, a patch of pure hematoxylin), batch independence and devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.encoder import CALIBRATION, StainStatsEncoder

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DIM = 28


def random_patches(n: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def calibrated(raw: list[float]) -> torch.Tensor:
    """What the encoder outputs for the raw statistics ``raw``: ``(raw - mean) / std``."""
    mean, std = (torch.tensor(v) for v in CALIBRATION)
    return (torch.tensor(raw) - mean) / std


def test_shapes_and_dtype():
    enc = StainStatsEncoder()
    assert enc.dim == DIM == len(CALIBRATION[0]) == len(CALIBRATION[1])
    for size in (64, 96, 128):  # patch sides of at least 64 px (16 px after the pooling)
        out = enc(random_patches(4, size))
        assert out.shape == (4, DIM) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_no_learned_weights():
    enc = StainStatsEncoder()
    assert list(enc.parameters()) == [] and enc.state_dict() == {}


def test_deterministic_across_calls_and_instances():
    x = random_patches(5)
    a = StainStatsEncoder()(x)
    assert torch.equal(a, StainStatsEncoder()(x))
    assert torch.equal(a, StainStatsEncoder()(x.clone()))


def test_each_row_depends_on_its_own_patch_only():
    x = random_patches(4)
    enc = StainStatsEncoder()
    together = enc(x)
    alone = torch.cat([enc(x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(together, alone)
    assert not torch.allclose(together[0], together[1])  # different patches, different rows


def test_uint8_and_float_inputs_agree():
    x = random_patches(2)
    enc = StainStatsEncoder()
    torch.testing.assert_close(enc(x), enc(x.float() / 255.0), atol=1e-4, rtol=1e-4)


def test_a_blank_patch_has_every_statistic_zero():
    """White light: optical density 0, so no stain, no tissue, no blobs: every raw statistic
    is 0 and the output is the calibration's ``-mean / std``."""
    white = torch.full((1, 3, 64, 64), 255, dtype=torch.uint8)
    out = StainStatsEncoder()(white)[0]
    torch.testing.assert_close(out, calibrated([0.0] * DIM))


def test_a_uniform_hematoxylin_patch():
    """A patch whose optical density is ``c`` times the hematoxylin stain vector unmixes to
    hematoxylin ``c`` and no eosin; being uniform, it has no spread and no blob response."""
    stains = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
    hema = stains[0] / np.linalg.norm(stains[0])
    c = 0.8
    rgb = np.exp(-c * hema)  # float RGB in [0, 1] with optical density c * hema
    x = torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 64, 64)
    out = StainStatsEncoder()(x.contiguous())[0]
    raw = [1.0, c, 0.0, c, 0.0, 0.0, 0.0, 0.0] + [0.0] * (DIM - 8)  # tissue share 1
    torch.testing.assert_close(out, calibrated(raw), atol=1e-4, rtol=1e-4)


def test_more_stain_gives_a_higher_hematoxylin_mean():
    light = torch.full((1, 3, 64, 64), 200, dtype=torch.uint8)
    dark = torch.full((1, 3, 64, 64), 100, dtype=torch.uint8)
    enc = StainStatsEncoder()
    assert enc(dark)[0, 1] > enc(light)[0, 1]


@pytest.mark.parametrize("device", DEVICES)
def test_runs_on_the_device_of_its_input(device):
    x = random_patches(3)
    enc = StainStatsEncoder().to(device)
    assert all(b.device.type == device for b in enc.buffers())
    out = enc(x.to(device))
    assert out.device.type == device
    torch.testing.assert_close(out.cpu(), StainStatsEncoder()(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 3, 63, 128), "at least 64 x 64 px"),
        ((2, 4, 128, 128), "(batch_size, 3, height, width)"),
    ],
)
def test_bad_patch_shapes_are_named(shape, message):
    """Too small for the 64 px the pooling steps need, or not RGB: a clear ValueError, not an
    error from inside ``avg_pool2d``."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StainStatsEncoder()(torch.zeros(shape))
