"""helpers.grid: the coordinate frames, the level choice and the min-max scaling."""

import numpy as np
import pytest

from helpers.grid import (
    check_coords_level0,
    check_grid_xy,
    grid_xy,
    values_on_grid,
)
from helpers.scores import minmax
from helpers.slide import choose_level


def test_check_coords_level0_accepts_ints_and_whole_floats():
    out = check_coords_level0(np.array([[0.0, 1024.0], [2048.0, 0.0]]), 1024)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[0, 1024], [2048, 0]])
    assert check_coords_level0(np.zeros((0, 2))).shape == (0, 2)


@pytest.mark.parametrize(
    "coords, match",
    [
        (np.zeros((3,)), r"shape \(N, 2\)"),
        (np.zeros((3, 3)), r"shape \(N, 2\)"),
        (np.array([[0.5, 1.0]]), "whole numbers"),
        (np.array([[np.nan, 1.0]]), "whole numbers"),
        (np.array([["a", "b"]]), "whole numbers"),
    ],
)
def test_check_coords_level0_rejects(coords, match):
    with pytest.raises(ValueError, match=match):
        check_coords_level0(coords)


@pytest.mark.parametrize("size", [0, -1024])
def test_check_coords_level0_patch_size(size):
    with pytest.raises(ValueError, match="patch_size_level0 must be positive"):
        check_coords_level0(np.zeros((1, 2), int), size)


def test_check_grid_xy():
    np.testing.assert_array_equal(check_grid_xy([[0, 0], [1, 0]], n=2), [[0, 0], [1, 0]])
    with pytest.raises(ValueError, match="duplicate grid cells"):
        check_grid_xy([[0, 0], [0, 0]])
    with pytest.raises(ValueError, match="grid_xy of slide 3 has 2 rows but there are 3"):
        check_grid_xy([[0, 0], [1, 0]], n=3, where=" of slide 3")
    with pytest.raises(ValueError, match="coords_level0 // patch_size_level0"):
        check_grid_xy([[0.5, 0]])


def test_grid_xy_is_floor_division_not_shifted():
    coords = np.array([[1024, 3072], [2048, 1024], [1500, 1023]])
    np.testing.assert_array_equal(grid_xy(coords, 1024), [[1, 3], [2, 1], [1, 0]])
    assert grid_xy(coords, 1024).dtype == np.int64


def test_choose_level():
    downsamples = [1.0, 4.0, 16.0, 64.0]
    # 1024 px patches: 1024, 256, 64, 16 level pixels per patch
    assert choose_level(downsamples, 1024, 64) == 2  # exactly the bar counts
    assert choose_level(downsamples, 1024, 65) == 1
    assert choose_level(downsamples, 1024, 2000) == 0  # none qualifies: level 0
    assert choose_level(downsamples, 1024, 1) == 3
    # a file downsample a hair off the nominal value still counts, a clear miss does not
    assert choose_level([1.0, 4.0, 16.004], 1024, 64) == 2
    assert choose_level([1.0, 4.0, 16.1], 1024, 64) == 1
    # a strict bar (the label maps): the hair counts no more
    assert choose_level([1.0, 4.0, 16.004], 1024, 64, rtol=1e-6) == 1
    assert choose_level([1.0, 4.0, 16.0], 1024, 64, rtol=1e-6) == 2
    with pytest.raises(ValueError, match="rtol"):
        choose_level([1.0], 1024, 64, rtol=-1)


def test_minmax():
    np.testing.assert_allclose(minmax([2.0, 4.0, 3.0]), [0.0, 1.0, 0.5])
    out = minmax([7.0, 7.0])
    np.testing.assert_array_equal(out, [0.0, 0.0])  # constant input: zeros, decided once
    assert out.dtype == np.float64
    assert minmax(np.array([], dtype=np.float32)).shape == (0,)
    np.testing.assert_array_equal(minmax([5]), [0.0])


def test_values_on_grid_puts_each_value_in_its_cell():
    cells = np.array([[2, 0], [0, 1], [1, 1]])  # (x, y)
    image = values_on_grid([5.0, 7.0, 9.0], cells)
    assert image.shape == (2, 3)  # rows = max y + 1, columns = max x + 1
    assert image[0, 2] == 5.0 and image[1, 0] == 7.0 and image[1, 1] == 9.0
    assert np.isnan(image).sum() == 3  # the cells without a patch
    with pytest.raises(ValueError):
        values_on_grid([1.0], cells)
