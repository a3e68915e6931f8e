"""Unsupervised fine-tuning on real pairs: the crop dataset, the cache key and a short run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdpkd.models import build_model, load_model, save_model
from cdpkd.recipes import AdaptationRecipe, RealPairCrops, ensure_adapted, frames_fingerprint


def _pairs(n=2, shape=(160, 40), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pre = (50 * rng.standard_normal(shape)).astype(np.float32)
        out.append((pre, np.roll(pre, 2, axis=0)))
    return out


def test_crops_are_normalised_seeded_and_follow_the_epoch():
    data = RealPairCrops(_pairs(), (64, 32), seed=3)
    a = data[1]
    assert a["pre"].shape == a["post"].shape == (1, 64, 32) and a["pre"].dtype == torch.float32
    assert float(a["pre"].std(correction=0)) == pytest.approx(1.0, rel=1e-4)  # divided by the pre crop's std
    assert torch.equal(RealPairCrops(_pairs(), (64, 32), seed=3)[1]["pre"], a["pre"])  # same seed, same crop
    data.set_epoch(1)
    assert not torch.equal(data[1]["pre"], a["pre"])  # a new epoch draws new positions


def test_crop_dataset_bad_input():
    with pytest.raises(ValueError, match="no pairs"):
        RealPairCrops([], (8, 8))
    pre = np.zeros((32, 16), np.float32)
    with pytest.raises(ValueError, match="one shape"):
        RealPairCrops([(pre, pre[:-1])], (8, 8))
    with pytest.raises(ValueError, match="smaller than the crop"):
        RealPairCrops([(pre, pre)], (64, 8))
    bad = pre.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        RealPairCrops([(bad, pre)], (8, 8))


def test_fingerprint_depends_on_every_frame():
    pairs = _pairs()
    assert frames_fingerprint(pairs) == frames_fingerprint(_pairs())
    changed = [pairs[0], (pairs[1][0], pairs[1][1] + 1)]
    assert frames_fingerprint(changed) != frames_fingerprint(pairs)
    assert frames_fingerprint(pairs[::-1]) != frames_fingerprint(pairs)


def test_ensure_adapted_fine_tunes_a_copy_and_caches_it(tmp_path):
    source = tmp_path / "teacher" / "abc"
    source.mkdir(parents=True)
    save_model(source / "model.pt", build_model("umen_teacher_smoke", seed=0))
    recipe = AdaptationRecipe(crop=(128, 32), steps=3, batch_size=2, warmup_steps=1, lr=1e-3)
    pairs = _pairs()
    path = ensure_adapted(tmp_path, recipe, source, pairs)
    assert path.parent.name == "adapted" and (path / "metrics.csv").is_file()
    before, after = load_model(source / "model.pt"), load_model(path / "model.pt")
    assert before.config == after.config
    changed = [not torch.equal(p, q) for p, q in zip(before.parameters(), after.parameters())]
    assert any(changed)  # trained; the source artifact itself is untouched (reloaded above)
    stamp = (path / "model.pt").stat().st_mtime_ns
    assert ensure_adapted(tmp_path, recipe, source, _pairs()) == path  # same frames: cached
    assert (path / "model.pt").stat().st_mtime_ns == stamp
    assert ensure_adapted(tmp_path, recipe, source, _pairs(seed=1)) != path  # other frames: another artifact
    with pytest.raises(FileNotFoundError, match="no trained model"):
        ensure_adapted(tmp_path, recipe, tmp_path / "missing", pairs)
    with pytest.raises(ValueError, match="steps"):
        AdaptationRecipe(steps=0)
