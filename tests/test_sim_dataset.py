"""HDF5 datasets: round trip, determinism, validation, torch Dataset crops."""

import hashlib

import h5py
import numpy as np
import pytest
import torch

from cdpkd.sim import (
    RFPairDataset,
    SimulationConfig,
    ensure_dataset,
    open_dataset,
    read_config,
    read_metas,
    read_pair,
    simulate_pair,
    write_dataset,
)
from cdpkd.sim.dataset import pair_seed


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from cdpkd.sim import ImagingConfig

    config = SimulationConfig(imaging=ImagingConfig(n_samples=256, n_lines=32))
    path = tmp_path_factory.mktemp("ds") / "pairs.h5"
    write_dataset(path, config, 3, base_seed=11, workers=1)
    return path, config


def test_round_trip_matches_direct_simulation(dataset):
    path, config = dataset
    assert read_config(path) == config
    for i in range(3):
        stored = read_pair(path, i)
        direct = simulate_pair(config, pair_seed(11, i))
        for name in ("pre", "post", "displacement", "stiffness", "echogenicity", "labels"):
            assert np.array_equal(getattr(stored, name), getattr(direct, name)), name
        assert stored.meta == direct.meta
    assert read_metas(path) == [read_pair(path, i).meta for i in range(3)]
    with h5py.File(path) as f:
        assert f.attrs["fs_hz"] == config.imaging.fs_hz
        assert f["displacement"].shape == (3, 2, 256, 32)
        assert f["labels"].dtype == np.uint8


def test_same_seed_same_bytes_whatever_the_workers(dataset, tmp_path):
    path, config = dataset
    again = write_dataset(tmp_path / "again.h5", config, 3, base_seed=11, workers=2)
    assert digest(again) == digest(path)
    other = write_dataset(tmp_path / "other.h5", config, 3, base_seed=12, workers=1)
    assert digest(other) != digest(path)


def test_pair_seeds_do_not_depend_on_dataset_size():
    assert [pair_seed(5, i) for i in range(3)] == [pair_seed(5, i) for i in range(10)][:3]


def test_ensure_dataset_builds_once(small_config, tmp_path):
    first = ensure_dataset(tmp_path, small_config, 2, 3, workers=1)
    stamp = first.stat().st_mtime_ns
    second = ensure_dataset(tmp_path, small_config, 2, 3, workers=1)
    assert first == second and second.stat().st_mtime_ns == stamp
    third = ensure_dataset(tmp_path, small_config, 2, 4, workers=1)
    assert third != first


@pytest.mark.parametrize("strain_range", [(-0.01, 0.02), (0.02, 0.01), (0.0, 0.01), (0.01, float("nan"))])
def test_bad_strain_range_rejected(strain_range):
    with pytest.raises(ValueError, match="strain_range"):
        SimulationConfig(strain_range=strain_range)


def test_bad_sizes_rejected(small_config, tmp_path):
    with pytest.raises(ValueError, match="n_pairs"):
        write_dataset(tmp_path / "x.h5", small_config, 0, 1)
    with pytest.raises(ValueError, match="base_seed"):
        write_dataset(tmp_path / "x.h5", small_config, 1, -1)
    assert not (tmp_path / "x.h5").exists()


def test_invalid_files_give_clear_errors(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="notes.h5: not a readable HDF5 file"):
        open_dataset(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["pre"] = np.zeros((1, 8, 8))
    with pytest.raises(ValueError, match="foreign.h5: not a valid cdpkd simulated dataset: format"):
        open_dataset(foreign)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        open_dataset(tmp_path / "missing.h5")


def test_truncated_file_is_rejected(dataset, tmp_path):
    path, _ = dataset
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(ValueError, match="cut.h5"):
        open_dataset(cut)


def test_torch_dataset_crops_are_seeded_and_consistent(dataset):
    path, _ = dataset
    ds = RFPairDataset(path, crop=(64, 16), seed=3)
    item = ds[1]
    assert item["pre"].shape == (1, 64, 16) and item["displacement"].shape == (2, 64, 16)
    assert item["inclusion_mask"].dtype == torch.bool
    assert not (item["inclusion_mask"] & item["background_mask"]).any()
    assert torch.equal(ds[1]["offset"], item["offset"])
    assert item["pre"].std(correction=0).item() == pytest.approx(1.0, rel=1e-4)
    # the crop is where the offset says it is
    top, left = item["offset"].tolist()
    full = read_pair(path, 1)
    assert np.array_equal(item["displacement"].numpy(), full.displacement[:, top : top + 64, left : left + 16])
    offsets = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        offsets.add(tuple(ds[1]["offset"].tolist()))
    assert len(offsets) > 1, "crops must change between epochs"
    centred = RFPairDataset(path, crop=(64, 16), random_crop=False)
    assert centred[0]["offset"].tolist() == [(256 - 64) // 2, (32 - 16) // 2]


def test_torch_dataset_works_in_a_dataloader(dataset):
    path, _ = dataset
    loader = torch.utils.data.DataLoader(RFPairDataset(path, crop=(32, 16)), batch_size=2, num_workers=1)
    batch = next(iter(loader))
    assert batch["post"].shape == (2, 1, 32, 16)


def test_torch_dataset_rejects_bad_crop(dataset):
    path, _ = dataset
    with pytest.raises(ValueError, match="crop"):
        RFPairDataset(path, crop=(512, 16))
    with pytest.raises(IndexError):
        RFPairDataset(path)[3]


def test_torch_dataset_subset_serves_the_chosen_pairs(dataset):
    path, _ = dataset
    subset = RFPairDataset(path, indices=[2, 0])
    assert len(subset) == 2
    assert subset[0]["index"].item() == 2 and subset[1]["index"].item() == 0
    assert torch.equal(subset[0]["displacement"], RFPairDataset(path)[2]["displacement"])
    with pytest.raises(ValueError, match="indices"):
        RFPairDataset(path, indices=[0, 3])
    with pytest.raises(ValueError, match="indices"):
        RFPairDataset(path, indices=[])
