"""Release pairs: the inverse displacement of a known field, and a simulated pair played backwards."""

import numpy as np
import pytest
import torch

from cdpkd.metrics import local_ncc
from cdpkd.ops.warp_reference import warp_reference
from cdpkd.sim import ImagingConfig, SimulationConfig, simulate_pair
from cdpkd.sim.release import invert_displacement, release_pair


def test_inverse_of_a_uniform_strain_is_the_exact_release_field():
    h, w, strain = 200, 12, -0.03
    rows = np.arange(h, dtype=np.float64)[:, None].repeat(w, 1)
    disp = np.stack((-strain * (h - 1 - rows), np.zeros_like(rows)))  # compression: bottom fixed
    inverse = invert_displacement(disp)
    # r(y) = -d(y + r): with d = a (h - 1 - z), r = -a (h - 1 - y) / (1 - a)
    # (inside the frame: near the top y + r leaves it and the inverse is extrapolated)
    a, inner = -strain, slice(10, None)
    np.testing.assert_allclose(inverse[0, inner], (-a * (h - 1 - rows) / (1 - a))[inner], atol=1e-4)
    np.testing.assert_allclose(inverse[1], 0, atol=1e-6)
    # inverting twice gives the field back
    back = invert_displacement(inverse)
    np.testing.assert_allclose(back[:, inner], disp[:, inner], atol=1e-3)


def test_inverse_rejects_bad_fields():
    with pytest.raises(ValueError, match="2 x H x W"):
        invert_displacement(np.zeros((3, 4, 4)))
    bad = np.zeros((2, 4, 4))
    bad[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        invert_displacement(bad)


def test_a_released_simulated_pair_warps_onto_itself():
    config = SimulationConfig(imaging=ImagingConfig(n_samples=384, n_lines=48))
    pair = simulate_pair(config, 3)
    released = release_pair(pair)
    assert released.meta["release"] and not pair.meta.get("release")
    np.testing.assert_array_equal(released.pre, pair.post)
    np.testing.assert_array_equal(released.post, pair.pre)

    def warped_ncc(p):
        post, disp = torch.from_numpy(p.post)[None, None], torch.from_numpy(p.displacement)[None]
        warped = warp_reference(post, disp.float(), padding="border")
        inner = (slice(None), slice(None), slice(48, -48), slice(4, -4))
        return float(local_ncc(torch.from_numpy(p.pre)[None, None][inner], warped[inner], (31, 5)).mean())

    assert warped_ncc(released) > 0.9 and warped_ncc(released) == pytest.approx(warped_ncc(pair), abs=0.03)
    # the release is the compression reversed: the mean axial displacement changes sign
    assert np.sign(released.displacement[0].mean()) == -np.sign(pair.displacement[0].mean())
    from cdpkd.sim.release import UNKNOWN_LABEL

    assert set(np.unique(released.labels)) <= set(np.unique(pair.labels)) | {UNKNOWN_LABEL}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    from cdpkd.sim.dataset import write_dataset

    config = SimulationConfig(imaging=ImagingConfig(n_samples=256, n_lines=32))
    return write_dataset(tmp_path_factory.mktemp("release") / "pairs.h5", config, 6, base_seed=2, workers=1)


def test_dataset_serves_seeded_release_pairs(small_set):
    from cdpkd.sim import RFPairDataset

    plain = RFPairDataset(small_set, crop=(128, 32), seed=5, normalize=False)
    always = RFPairDataset(small_set, crop=(128, 32), seed=5, normalize=False, release_fraction=1.0)
    half = RFPairDataset(small_set, crop=(128, 32), seed=5, normalize=False, release_fraction=0.5)
    a, b = plain[2], always[2]
    assert not a["released"] and b["released"]
    torch.testing.assert_close(b["pre"], a["post"])  # same crop, frames swapped
    torch.testing.assert_close(b["post"], a["pre"])
    expected = invert_displacement(a["displacement"].numpy(), tol=1e-3)
    torch.testing.assert_close(b["displacement"], torch.from_numpy(expected))
    draws = [bool(half[i]["released"]) for i in range(len(half))]
    assert draws == [bool(half[i]["released"]) for i in range(len(half))], "a seeded draw"
    half.set_epoch(1)
    draws += [bool(half[i]["released"]) for i in range(len(half))]
    assert 0 < sum(draws) < len(draws)
    with pytest.raises(ValueError, match="release_fraction"):
        RFPairDataset(small_set, crop=(128, 32), release_fraction=1.5)


def test_release_set_of_a_dataset_is_cached_and_matches_release_pair(small_set, tmp_path):
    from cdpkd.sim import ensure_release_set, read_metas, read_pair

    path = ensure_release_set(tmp_path, small_set)
    assert ensure_release_set(tmp_path, small_set) == path  # built once
    metas = read_metas(path)
    assert len(metas) == 6 and all(m["release"] for m in metas)
    got, expected = read_pair(path, 4), release_pair(read_pair(small_set, 4))
    for name in ("pre", "post", "displacement", "labels", "stiffness"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))


def test_release_pixels_without_truth_are_labelled_and_left_out_of_the_metrics():
    from cdpkd.evaluation import pair_metrics
    from cdpkd.sim.release import UNKNOWN_LABEL

    config = SimulationConfig(imaging=ImagingConfig(n_samples=384, n_lines=48), strain_range=(0.03, 0.03))
    released = release_pair(simulate_pair(config, 5))
    unknown = released.labels == UNKNOWN_LABEL
    rows = np.flatnonzero(unknown.all(axis=1))
    # compressed from the top: the tissue in the top rows of the release pair's pre frame was above
    # the compression pair's frame, as many rows as the surface moved (11.5 samples here)
    assert list(rows) == list(range(int(np.ceil(-released.displacement[0, 0].min()))))
    assert not unknown[len(rows) + 40 :, 1:-1].any()  # below them only the lateral edges (lateral motion)
    wrong = released.displacement.copy()
    wrong[:, unknown] += 5.0  # any estimate is as good as another where nothing is known
    score = dict(strain_window=31, border=(8, 4))
    metrics = pair_metrics(wrong, released.displacement, released.pre, released.post, released.labels, **score)
    assert metrics["strain_rmse"] == 0 and metrics["disp_rmse_axial"] == 0
    wrong[:, 100:110] += 1.0  # known pixels still count
    assert pair_metrics(wrong, released.displacement, released.pre, released.post, released.labels,
                        **score)["disp_rmse_axial"] > 0


def test_dataset_serves_seeded_axial_offsets_that_still_warp_onto_pre(small_set):
    from cdpkd.sim import RFPairDataset, read_pair

    data = RFPairDataset(small_set, crop=(128, 32), seed=5, normalize=False, axial_offset=12)
    shifts = []
    for epoch in range(3):
        data.set_epoch(epoch)
        shifts += [int(data[i]["axial_shift"]) for i in range(len(data))]
    assert all(-12 <= s <= 12 for s in shifts) and min(shifts) < 0 < max(shifts)
    data.set_epoch(2)
    assert [int(data[i]["axial_shift"]) for i in range(len(data))] == shifts[-len(data):], "a seeded draw"
    index = next(i for i in range(len(data)) if abs(int(data[i]["axial_shift"])) >= 4)
    item, pair = data[index], read_pair(small_set, index)
    top, left = (int(v) for v in item["offset"])
    shift = int(item["axial_shift"])
    cols = slice(left, left + 32)
    np.testing.assert_array_equal(item["pre"][0].numpy(), pair.pre[top : top + 128, cols])
    np.testing.assert_array_equal(item["post"][0].numpy(), pair.post[top + shift : top + shift + 128, cols])
    np.testing.assert_allclose(item["displacement"][0].numpy(), pair.displacement[0, top : top + 128, cols] - shift)

    def warped_ncc(displacement):
        warped = warp_reference(item["post"][None], displacement[None].float(), padding="border")
        inner = (slice(None), slice(None), slice(16, -16), slice(4, -4))
        return float(local_ncc(item["pre"][None][inner], warped[inner], (31, 5)).mean())

    unshifted = torch.from_numpy(pair.displacement[:, top : top + 128, cols].copy())
    assert warped_ncc(item["displacement"]) > 0.9 > warped_ncc(unshifted) + 0.2


def test_axial_offset_needs_room_and_crops(small_set):
    from cdpkd.sim import RFPairDataset

    with pytest.raises(ValueError, match="non-negative integer"):
        RFPairDataset(small_set, crop=(128, 32), axial_offset=-1)
    with pytest.raises(ValueError, match="axial offsets up to 65"):
        RFPairDataset(small_set, crop=(128, 32), axial_offset=65)  # 128 + 2 x 65 > 256 rows
    with pytest.raises(ValueError, match="needs crops"):
        RFPairDataset(small_set, axial_offset=4)
    centred = RFPairDataset(small_set, crop=(128, 32), random_crop=False, axial_offset=8)
    assert int(centred[0]["offset"][0]) == 8 + (256 - 128 - 16) // 2
