"""ROI masks: shapes, areas, anisotropic radii, erosion against scipy."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion

from cdpkd.metrics import disk_mask, erode, rect_mask, ring_mask


def test_rect_mask():
    m = rect_mask((30, 12), rows=(5, 25), cols=(2, 7))
    assert m.shape == (30, 12) and m.dtype == torch.bool
    assert int(m.sum()) == 20 * 5 and m[5, 2] and m[24, 6] and not m[25, 6] and not m[5, 7]
    assert int(rect_mask((4, 4), (0, 4), (0, 4)).sum()) == 16


def test_disk_mask_area_and_anisotropic_extent():
    m = disk_mask((200, 200), center=(100, 100), radius=40)
    assert m.shape == (200, 200)
    assert int(m.sum()) == pytest.approx(math.pi * 40**2, rel=0.01)
    e = disk_mask((300, 64), center=(150, 30), radius=(60, 8))  # 60 samples x 8 lines
    rows = torch.nonzero(e.any(dim=1)).flatten()
    cols = torch.nonzero(e.any(dim=0)).flatten()
    assert (int(rows.min()), int(rows.max())) == (90, 210)
    assert (int(cols.min()), int(cols.max())) == (22, 38)
    assert int(e.sum()) == pytest.approx(math.pi * 60 * 8, rel=0.02)
    # A disk cut by the frame edge keeps only the inside part.
    i, j = np.meshgrid(np.arange(50), np.arange(50), indexing="ij")
    assert int(disk_mask((50, 50), (0, 0), 10).sum()) == int((i**2 + j**2 <= 100).sum())


def test_ring_mask_complements_inner_disk():
    shape, c = (120, 80), (60.0, 40.5)
    ring = ring_mask(shape, c, inner_radius=(20, 10), outer_radius=(35, 18))
    inner = disk_mask(shape, c, (20, 10))
    outer = disk_mask(shape, c, (35, 18))
    assert not (ring & inner).any()
    assert torch.equal(ring | inner, outer)
    assert int(ring.sum()) == pytest.approx(math.pi * (35 * 18 - 20 * 10), rel=0.03)


@pytest.mark.parametrize("iterations", [0, 1, 2, 3])
def test_erode_matches_scipy(iterations):
    rng = np.random.default_rng(iterations)
    m = rng.random((2, 1, 25, 18)) < 0.8
    m[0, 0, 5:20, 3:15] = True
    out = erode(m, iterations)  # numpy in -> numpy out
    assert isinstance(out, np.ndarray) and out.dtype == bool and out.shape == m.shape
    for k in range(2):
        ref = (
            m[k, 0]
            if iterations == 0
            else binary_erosion(m[k, 0], structure=np.ones((3, 3)), iterations=iterations)
        )
        np.testing.assert_array_equal(out[k, 0], ref)
    t = erode(torch.from_numpy(m), iterations)
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), out)


def test_erode_shrinks_rect_and_frame_edge():
    m = rect_mask((20, 20), (0, 10), (5, 15))
    e = erode(m, 2)
    assert torch.equal(e, rect_mask((20, 20), (2, 8), (7, 13)))  # the frame edge erodes too


def test_mask_bad_input():
    with pytest.raises(ValueError, match="rows"):
        rect_mask((10, 10), (5, 5), (0, 3))
    with pytest.raises(ValueError, match="cols"):
        rect_mask((10, 10), (0, 5), (0, 11))
    with pytest.raises(ValueError, match="shape"):
        rect_mask((10,), (0, 5), (0, 3))
    with pytest.raises(ValueError, match="radius"):
        disk_mask((10, 10), (5, 5), -1.0)
    with pytest.raises(ValueError, match="radius"):
        disk_mask((10, 10), (5, 5), (3, 0))
    with pytest.raises(ValueError, match="no pixel"):
        disk_mask((10, 10), (50, 50), 3)
    with pytest.raises(ValueError, match="exceed"):
        ring_mask((10, 10), (5, 5), (3, 3), (4, 3))
    with pytest.raises(ValueError, match="center"):
        disk_mask((10, 10), (5,), 3)
    with pytest.raises(ValueError, match="iterations"):
        erode(np.ones((4, 4), bool), -1)
    with pytest.raises(ValueError, match="boolean"):
        erode(np.full((4, 4), 3), 1)
