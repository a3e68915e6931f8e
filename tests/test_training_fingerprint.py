"""Training numerics are pinned: a tiny simulated set and every kind of network the notebooks train
(teacher, DP-Net, CDP-KDNet, a lightweight baseline, the real-data adaptation) must come out bit for
bit as recorded for this platform.

Why: the artifact cache reuses a trained network whenever its key (recipe, model configuration,
data) matches. A code change that alters training arithmetic without changing the key, even
only in how a gradient rounds, makes every cached network something the current code would not
train, and results mix old and new networks silently (session 25 found one: a lag-1 smoothness
difference computed by slicing instead of ``torch.diff``). This test fails on such a change.

Bit-equality holds for one torch version, one CPU instruction set and one thread count only
(:func:`cdpkd.runtime.numerics`), so fingerprints are recorded per platform; a platform without a
record skips, saying how to record one.

When a change of training numerics is intended: bump the version in the cache keys it affects
(``RECIPE_VERSION`` in ``cdpkd.recipes.unsupervised`` for the teacher and baselines,
``STUDENT_RECIPE_VERSION`` in ``cdpkd.recipes.students`` for DP-Net / CDP-KDNet, ``SIMULATOR_VERSION``
in ``cdpkd.sim.dataset`` for simulated data; the adaptation's key holds its recipe, which shares the
teacher's loss and schedule code) so caches rebuild, then record:
``CDPKD_RECORD_FINGERPRINTS=1 python -m pytest tests/test_training_fingerprint.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from cdpkd.atomic import write_json
from cdpkd.models import load_model
from cdpkd.recipes import (
    AdaptationRecipe,
    CDPKDRecipe,
    DPNetRecipe,
    StudentBudget,
    UnsupervisedRecipe,
    ensure_adapted,
    ensure_cdp_kdnet,
    ensure_dpnet,
    ensure_unsupervised_model,
)
from cdpkd.runtime import numerics
from cdpkd.sim import ImagingConfig, SimulationConfig
from cdpkd.sim.dataset import write_dataset

RECORD = Path(__file__).with_name("training_fingerprints.json")
RECORD_ENV = "CDPKD_RECORD_FINGERPRINTS"
CROP = (128, 32)


def platform_key() -> str:
    """What bit-equality of CPU training depends on besides the code (one thread)."""
    return f"torch {torch.__version__} | numpy {np.__version__} | {numerics()['cpu_capability']} | 1 thread"


def tensor_digest(tensors: dict[str, torch.Tensor] | dict[str, np.ndarray]) -> str:
    """First 16 hex digits of the SHA-256 over names, dtypes, shapes and raw bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        array = tensors[name]
        array = array.detach().cpu().contiguous().numpy() if isinstance(array, torch.Tensor) else np.ascontiguousarray(array)
        digest.update(f"{name}|{array.dtype}|{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def _dataset_digest(path: Path) -> str:
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return tensor_digest(arrays)


def _model_digest(folder: Path) -> str:
    return tensor_digest(dict(load_model(folder / "model.pt").state_dict()))


@pytest.fixture(scope="module")
def fingerprints(tmp_path_factory) -> dict[str, str]:
    """Digests of a 3-pair simulated set, a tiny teacher trained on it, a DP-Net pruned from that teacher,
    a CDP-KDNet distilled and pruned from it under the curriculum, a lightweight baseline, and the
    CDP-KDNet adapted to two of the pairs as if they were real frames (a few seeded steps each, one
    thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("fingerprint")
        config = SimulationConfig(imaging=ImagingConfig(n_samples=256, n_lines=32))
        train_set = write_dataset(root / "sim_train" / "key" / "pairs.h5", config, 3, base_seed=5, workers=1)
        # the cpu teacher's options: RF + envelope input, the NCC refinement head
        teacher = UnsupervisedRecipe(model="umen_teacher_smoke", crop=CROP, steps=4, batch_size=2, warmup_steps=1,
                                     val_pairs=0, seed=0,
                                     model_overrides={"input_mode": "rf+envelope", "refine_widths": [4, 4]})
        teacher_dir = ensure_unsupervised_model(root, "teacher", teacher, train_set)
        student = CDPKDRecipe(budget=StudentBudget(0.4, 0.5, min_channels=2, multiple_of=2), crop=CROP, steps=4,
                              batch_size=2, warmup_steps=1, val_pairs=0, seed=0, prune_end=0.5, prune_every=1,
                              finetune_steps=1, curriculum=True, start_fraction=0.5, end_step_fraction=0.5)
        student_dir = ensure_cdp_kdnet(root, student, teacher_dir, train_set)
        dpnet = DPNetRecipe(budget=StudentBudget(0.4, 0.5, min_channels=2, multiple_of=2), crop=CROP, steps=3,
                            batch_size=2, warmup_steps=1, val_pairs=0, seed=0)
        dpnet_dir = ensure_dpnet(root, dpnet, teacher_dir, train_set)
        baseline = UnsupervisedRecipe(model="dpunet_smoke", crop=CROP, steps=3, batch_size=2, warmup_steps=1,
                                      val_pairs=0, seed=0)
        baseline_dir = ensure_unsupervised_model(root, "baseline", baseline, train_set)
        with h5py.File(train_set, "r") as f:  # two simulated pairs standing in for real frames
            frames = [(f["pre"][k], f["post"][k]) for k in range(2)]
        adapted_dir = ensure_adapted(root, AdaptationRecipe(crop=CROP, steps=3, batch_size=2, warmup_steps=1, seed=0),
                                     student_dir, frames)
        digests = {"dataset": _dataset_digest(train_set), "teacher": _model_digest(teacher_dir),
                   "cdp_kdnet": _model_digest(student_dir), "dpnet": _model_digest(dpnet_dir),
                   "baseline": _model_digest(baseline_dir), "adapted": _model_digest(adapted_dir)}
    finally:
        torch.set_num_threads(threads)
    if os.environ.get(RECORD_ENV) == "1":
        write_json(RECORD, dict(sorted({**_recorded(), platform_key(): digests}.items())))
    return digests


def _recorded() -> dict[str, dict[str, str]]:
    return json.loads(RECORD.read_text()) if RECORD.is_file() else {}


@pytest.mark.parametrize("artifact", ["dataset", "teacher", "cdp_kdnet", "dpnet", "baseline", "adapted"])
def test_training_numerics_match_the_record(fingerprints, artifact):
    key = platform_key()
    records = _recorded()
    if key not in records:
        pytest.skip(f"no training fingerprint recorded for this platform ({key}); "
                    f"record one with {RECORD_ENV}=1 python -m pytest tests/{Path(__file__).name}")
    if artifact not in records[key]:
        pytest.skip(f"no {artifact} fingerprint in this platform's record; add it with {RECORD_ENV}=1")
    assert fingerprints[artifact] == records[key][artifact], (
        f"{artifact}: this code's arithmetic differs from the recorded one on this platform ({key}), so "
        "networks cached by earlier code under unchanged keys are not what it trains. If intended, bump the "
        f"cache-key version of what changed and re-record ({RECORD_ENV}=1); see this file's docstring."
    )


def test_digest_sees_one_bit():
    weights = {"w": torch.ones(3)}
    flipped = weights["w"].clone()
    flipped.view(torch.int32)[1] ^= 1  # the last mantissa bit of one element
    assert tensor_digest(weights) != tensor_digest({"w": flipped})
    assert tensor_digest(weights) == tensor_digest({"w": torch.ones(3)})
