"""Probe-frame pairs: the compressed surface stays put, the truth is shifted by the same whole samples
the post frame is re-read by, and a set keeps one frame size."""

import numpy as np
import pytest
import torch

from cdpkd.metrics import local_ncc
from cdpkd.ops.warp_reference import warp_reference
from cdpkd.sim import (
    ImagingConfig,
    SimulationConfig,
    ensure_release_set,
    read_metas,
    read_pair,
    simulate_pair,
)
from cdpkd.sim.dataset import open_dataset, read_config, write_dataset
from cdpkd.sim.probe_frame import common_rows, ensure_probe_frame_set, probe_frame_pair, surface_shift


def warped_ncc(pair) -> float:
    post, disp = torch.from_numpy(pair.post)[None, None], torch.from_numpy(pair.displacement)[None]
    warped = warp_reference(post, disp.float(), padding="border")
    inner = (slice(None), slice(None), slice(48, -48), slice(4, -4))
    return float(local_ncc(torch.from_numpy(pair.pre)[None, None][inner], warped[inner], (31, 5)).mean())


def test_a_probe_frame_pair_keeps_the_surface_still_and_warps_onto_itself():
    pair = simulate_pair(SimulationConfig(imaging=ImagingConfig(n_samples=384, n_lines=48)), 3)
    shift = surface_shift(pair.displacement)
    assert shift >= 3  # the simulator compresses from the top: the surface moves deeper
    moved = probe_frame_pair(pair, shift, (0, 384 - shift))
    assert moved.pre.shape == moved.post.shape == moved.labels.shape == (384 - shift, 48)
    assert abs(float(moved.displacement[0, 0].mean())) <= 0.5  # the surface stays put
    assert np.percentile(moved.displacement[0], 95) < 1.0  # deeper tissue comes toward the probe
    np.testing.assert_array_equal(moved.post, pair.post[shift:])
    np.testing.assert_array_equal(moved.pre, pair.pre[: 384 - shift])
    # the same strain: the truth differs by a constant
    np.testing.assert_allclose(moved.displacement[0] - pair.displacement[0, : 384 - shift], -shift, atol=1e-5)
    assert warped_ncc(moved) > 0.9 and warped_ncc(moved) == pytest.approx(warped_ncc(pair), abs=0.03)
    assert moved.meta["probe_shift"] == shift and moved.meta["rows"] == [0, 384 - shift]


def test_probe_frame_parts_reject_what_does_not_fit():
    assert common_rows([3, 7, 5], 100) == (0, 93)
    assert common_rows([-4, -2], 100) == (4, 100)  # release pairs: the surface moved up
    assert common_rows([-4, 6], 100) == (4, 94)
    with pytest.raises(ValueError, match="leave no rows"):
        common_rows([-60, 60], 100)
    with pytest.raises(ValueError, match="2 x H x W"):
        surface_shift(np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        surface_shift(np.full((2, 4, 4), np.nan))
    pair = simulate_pair(SimulationConfig(imaging=ImagingConfig(n_samples=128, n_lines=16)), 1)
    with pytest.raises(ValueError, match="do not fit"):
        probe_frame_pair(pair, 10, (0, 128))


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    config = SimulationConfig(imaging=ImagingConfig(n_samples=256, n_lines=32))
    return write_dataset(tmp_path_factory.mktemp("probe") / "pairs.h5", config, 4, base_seed=2, workers=1)


def test_probe_frame_set_is_cached_one_size_and_matches_probe_frame_pair(small_set, tmp_path):
    path = ensure_probe_frame_set(tmp_path, small_set)
    assert ensure_probe_frame_set(tmp_path, small_set) == path  # built once
    shifts = [surface_shift(read_pair(small_set, i).displacement) for i in range(4)]
    rows = (0, 256 - max(shifts))
    assert [m["probe_shift"] for m in read_metas(path)] == shifts
    with open_dataset(path) as f:
        assert f["pre"].shape == (4, rows[1], 32)
    assert read_config(path).imaging.n_samples == rows[1]
    got, expected = read_pair(path, 2), probe_frame_pair(read_pair(small_set, 2), shifts[2], rows)
    for name in ("pre", "post", "displacement", "labels", "stiffness"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    # a release set's surface moves up: rows are cut at the top instead
    released = ensure_probe_frame_set(tmp_path, ensure_release_set(tmp_path, small_set))
    assert all(m["probe_shift"] < 0 for m in read_metas(released))
    assert read_metas(released)[0]["rows"][0] == -min(m["probe_shift"] for m in read_metas(released))
