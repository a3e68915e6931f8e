"""cdpkd.realdata: ROI helpers, strain consistency and no-reference metrics on known arrays."""

import math

import numpy as np
import pytest

from cdpkd.realdata import (
    RealPair,
    consecutive,
    crop_frames,
    inner_mask,
    no_reference_metrics,
    relative_difference,
    roi_in_crop,
    roi_mask,
    run_on_pairs,
    strain_consistency,
)

H, W = 128, 24


def _speckle(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(H)[:, None]
    return (rng.standard_normal((H, W)) * np.cos(2 * np.pi * 0.2 * t)).astype(np.float32)


def _constant_strain(strain: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rows = np.arange(H, dtype=np.float32)[:, None]
    disp = np.zeros((2, H, W), dtype=np.float32)
    disp[0] = strain * rows
    if noise:
        disp[0] += np.random.default_rng(seed).normal(0, noise, (H, W)).astype(np.float32)
    return disp


def test_roi_mask_rectangle_and_out_of_frame():
    mask = roi_mask((H, W), (10, 20, 2, 5))
    assert mask.shape == (H, W) and mask.sum() == 30 and mask[10, 2] and not mask[20, 2]
    for bad in [(10, 200, 0, 5), (-1, 5, 0, 5), (0, 5, 20, 30), (5, 5, 0, 3), (0, 4, 3)]:
        with pytest.raises(ValueError):
            roi_mask((H, W), bad)


def test_roi_in_crop_translates_clips_and_rejects_disjoint():
    assert roi_in_crop((100, 200, 10, 20), None) == (100, 200, 10, 20)
    assert roi_in_crop((100, 200, 10, 20), (50, 150, 15, 40)) == (50, 100, 0, 5)
    with pytest.raises(ValueError, match="overlap"):
        roi_in_crop((100, 200, 10, 20), (300, 400, 0, 40))


def test_crop_frames_and_inner_mask():
    frames = np.arange(2 * H * W, dtype=np.float32).reshape(2, H, W)
    out = crop_frames(frames, (4, 8, 1, 3))
    assert out.shape == (2, 4, 2) and out.flags.c_contiguous and out[1, 0, 0] == frames[1, 4, 1]
    assert crop_frames(frames, None).shape == frames.shape
    with pytest.raises(ValueError):
        crop_frames(frames, (0, H + 1, 0, 3))
    inner = inner_mask((H, W), (10, 2))
    assert inner.sum() == (H - 20) * (W - 4)
    with pytest.raises(ValueError):
        inner_mask((H, W), (64, 2))


def test_strain_consistency_identical_scaled_and_opposite():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((H, W))
    assert strain_consistency(a, a) == pytest.approx(1.0)
    assert strain_consistency(a, 3 * a - 0.01) == pytest.approx(1.0)  # NCC ignores the strain level
    assert strain_consistency(a, -a) == pytest.approx(-1.0)
    assert abs(strain_consistency(a, rng.standard_normal((H, W)))) < 0.1
    assert math.isnan(strain_consistency(np.ones((H, W)), a))
    assert relative_difference(a, a) == 0.0
    assert relative_difference(a, 3 * a) == pytest.approx(1.0)  # |2a| / (0.5 * 4|a|)
    mask = np.zeros((H, W), bool)
    mask[:10] = True
    b = a.copy()
    b[20:] = 0
    assert strain_consistency(a, b, mask) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        strain_consistency(a, a, np.zeros((H, W), bool))
    with pytest.raises(ValueError):
        strain_consistency(a, a[:10])


def test_constant_strain_gives_infinite_snre_and_noise_lowers_it():
    pre = _speckle()
    region = roi_mask((H, W), (20, 100, 2, 22))
    exact = no_reference_metrics(_constant_strain(-0.01), pre, pre, strain_window=15, homogeneous=region)
    assert exact["snre"] > 1e6 and exact["mean_strain"] == pytest.approx(-0.01, rel=1e-5)
    assert math.isnan(exact["cnr_db"])
    noisy = no_reference_metrics(_constant_strain(-0.01, noise=0.05), pre, pre, strain_window=15, homogeneous=region)
    noisier = no_reference_metrics(_constant_strain(-0.01, noise=0.2), pre, pre, strain_window=15, homogeneous=region)
    assert 0 < noisier["snre"] < noisy["snre"] < exact["snre"]
    # doubling the strain at the same noise doubles SNRe
    doubled = no_reference_metrics(_constant_strain(-0.02, noise=0.05), pre, pre, strain_window=15, homogeneous=region)
    assert doubled["snre"] == pytest.approx(2 * noisy["snre"], rel=1e-2)  # float32 rounding


def test_cnr_of_a_stiff_inclusion_and_warp_ncc_of_true_shift():
    disp = np.zeros((2, H, W), np.float32)
    strain = np.full(H, -0.02)
    strain[50:80] = -0.005  # stiff layer
    disp[0] = np.cumsum(strain)[:, None]
    pre = _speckle()
    target = roi_mask((H, W), (55, 75, 2, 22))
    background = roi_mask((H, W), (10, 40, 2, 22))
    m = no_reference_metrics(disp, pre, pre, strain_window=9, homogeneous=background, target=target,
                             background=background)
    assert m["cnr_db"] > 40  # noise-free: only the LS-window edges add spread
    # warp NCC: a post frame shifted by exactly the estimate gives ~1, a zero estimate less
    post = np.roll(pre, 2, axis=0)
    shift = np.zeros((2, H, W), np.float32)
    shift[0] = 2.0
    good = no_reference_metrics(shift, pre, post, strain_window=9)["warp_ncc"]
    bad = no_reference_metrics(np.zeros_like(shift), pre, post, strain_window=9)["warp_ncc"]
    assert good > 0.99 and bad < 0.5
    with pytest.raises(ValueError):
        no_reference_metrics(shift[:, :10], pre, post, strain_window=9)


def test_run_on_pairs_scores_times_and_consistency():
    frames = [_speckle(s) for s in range(3)]
    pairs = [RealPair(f"s {i}-{i + 1}", "s", i, i + 1, frames[i], frames[i + 1]) for i in range(2)]
    pairs.append(RealPair("t 0-1", "t", 0, 1, frames[0], frames[1]))
    assert [(p.name, q.name) for p, q in consecutive(pairs)] == [("s 0-1", "s 1-2")]
    estimators = {"a": lambda pre, post: _constant_strain(-0.01, noise=0.05),
                  "zero": lambda pre, post: np.zeros((2, *pre.shape), np.float32)}
    target = roi_mask((H, W), (40, 60, 4, 12))
    background = roi_mask((H, W), (70, 100, 4, 12))
    run = run_on_pairs(estimators, pairs, strain_window=15, border=(16, 2),
                       regions=lambda p: {"target": target, "background": background} if p.sequence == "s" else {})
    assert len(run.per_pair) == 6 and set(run.estimates["a"]) == {"s 0-1", "s 1-2", "t 0-1"}
    assert (run.per_pair["time_per_frame_ms"] >= 0).all()
    assert run.per_pair.set_index(["method", "pair"]).loc[("a", "t 0-1"), "cnr_db"] != run.per_pair.set_index(
        ["method", "pair"]).loc[("a", "s 0-1"), "cnr_db"]  # NaN without regions
    assert list(run.consistency["method"]) == ["a", "zero"]
    # the same estimate for both pairs: perfectly consistent; zero strain: undefined
    assert run.consistency.set_index("method").loc["a", "strain_consistency"] == pytest.approx(1.0)
    assert math.isnan(run.consistency.set_index("method").loc["zero", "strain_consistency"])
    summary = run.summary()
    assert list(summary.index) == ["a", "zero"] and "strain_consistency" in summary
    with pytest.raises(ValueError):
        run_on_pairs({"bad": lambda pre, post: np.zeros((2, 3, 3))}, pairs, strain_window=15)
