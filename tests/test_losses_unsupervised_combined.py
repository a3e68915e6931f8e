"""The multi-scale combinator UnsupervisedLoss: named terms, level handling, coarse modes, config."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from test_losses_unsupervised import rf_pair

from cdpkd.losses import UnsupervisedLoss, UnsupervisedLossConfig
from cdpkd.losses.unsupervised import TERMS, envelope, similarity_ncc


def fake_outputs(n, h, w, strides=(8, 4, 2, 1), axial=0.0, seed=0, requires_grad=True):
    """PWC-like outputs: levels coarse -> fine in full-resolution units, plus the final field."""
    g = torch.Generator().manual_seed(seed)
    levels = []
    for s in strides:
        d = torch.zeros(n, 2, -(-h // s), -(-w // s))
        d[:, 0] = axial
        d = d + 0.01 * torch.randn(d.shape, generator=g)
        levels.append(d.requires_grad_(requires_grad))
    final = torch.zeros(n, 2, h, w)
    final[:, 0] = axial
    final = (final + 0.01 * torch.randn(final.shape, generator=g)).requires_grad_(requires_grad)
    return {"displacement": final, "levels": levels, "strides": list(strides)}


@pytest.mark.parametrize("mode", ["envelope", "upsample", "avgpool"])
def test_returns_all_named_terms_and_a_finite_total(mode):
    pre, post = rf_pair(3.0, n_samples=128, n_lines=16)
    pre, post = pre.repeat(2, 1, 1, 1), post.repeat(2, 1, 1, 1)
    out = fake_outputs(2, 128, 16, axial=3.0)
    loss = UnsupervisedLoss(coarse_mode=mode, poisson_weight=0.1)
    terms = loss(pre, post, out)
    expected = set(TERMS) | {"total", "similarity_final"} | {f"similarity_l{k}" for k in range(4)}
    assert set(terms) == expected
    for name, value in terms.items():
        assert value.shape == () and value.dtype == torch.float32 and torch.isfinite(value), name
    cfg = loss.config
    manual = sum(getattr(cfg, f"{t}_weight") * terms[t] for t in TERMS)
    assert torch.allclose(terms["total"], manual)
    terms["total"].backward()
    for d in [out["displacement"], *out["levels"]]:
        assert d.grad is not None and torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0


def test_level_weighted_mean_of_similarities():
    pre, post = rf_pair(3.0, n_samples=128, n_lines=16)
    out = fake_outputs(1, 128, 16, strides=(4, 1), axial=3.0, requires_grad=False)
    cfg = UnsupervisedLossConfig(final_weight=2.0, level_weights=(1.0, 0.5))
    t = UnsupervisedLoss(cfg)(pre, post, out)
    expected = (2.0 * t["similarity_final"] + 1.0 * t["similarity_l0"] + 0.5 * t["similarity_l1"]) / 3.5
    assert torch.allclose(t["similarity"], expected)
    # default weights: level_decay ** (distance from the finest level)
    assert UnsupervisedLoss()._level_weights(4) == [0.125, 0.25, 0.5, 1.0]
    # without levels: only the final displacement
    t = UnsupervisedLoss()(pre, post, {"displacement": out["displacement"]})
    assert torch.equal(t["similarity"], t["similarity_final"])
    assert not any(k.startswith("similarity_l") for k in t)


def test_rf_must_not_be_average_pooled_envelope_keeps_the_coarse_signal():
    """Why coarse levels compare envelopes: pooling RF by 8 samples (one carrier period) erases it."""
    pre, post = rf_pair(0.0, n_samples=256, n_lines=16)
    energy = lambda x: float((x - x.mean()).pow(2).mean())  # noqa: E731
    kept_rf = energy(F.avg_pool2d(pre, (8, 1))) / energy(pre)
    env = envelope(pre)
    kept_env = energy(F.avg_pool2d(env, (8, 1))) / energy(env)
    assert kept_rf < 0.05 and kept_env > 0.3


@pytest.mark.parametrize("shift", [3.0, 6.0])
def test_coarse_envelope_level_finds_the_shift(shift):
    pre, post = rf_pair(shift, n_samples=256, n_lines=16)
    loss = UnsupervisedLoss()  # coarse_mode="envelope"

    def level_similarity(axial):
        out = fake_outputs(1, 256, 16, strides=(4,), axial=axial, requires_grad=False)
        return float(loss(pre, post, out)["similarity_l0"])

    right, wrong = level_similarity(shift), level_similarity(0.0)
    assert right < 0.05 and wrong > 2 * right + 0.1


def test_coarse_envelope_level_pulls_from_beyond_the_rf_capture_range():
    """A 6-sample error (3/4 of a carrier period) sits in an RF NCC side lobe; the envelope
    level's gradient still points the right way (the reason it is the default at coarse levels)."""
    pre, post = rf_pair(6.0, n_samples=256, n_lines=16)
    d = torch.zeros(1, 2, 256, 16, requires_grad=True)
    similarity_ncc(pre, post, d).backward()
    rf_grad = float(d.grad[:, 0].sum())
    lvl = torch.zeros(1, 2, 64, 4, requires_grad=True)
    out = {"displacement": torch.zeros(1, 2, 256, 16), "levels": [lvl], "strides": [4]}
    UnsupervisedLoss()(pre, post, out)["similarity_l0"].backward()
    env_grad = float(lvl.grad[:, 0].sum())
    assert env_grad < 0  # loss decreases toward +6
    assert rf_grad > 0  # the RF term alone pushes the wrong way, into the side lobe


def test_upsample_mode_matches_full_resolution_similarity():
    pre, post = rf_pair(3.0, n_samples=128, n_lines=16)
    level = torch.full((1, 2, 32, 4), 0.0)
    level[:, 0] = 3.0
    out = {"displacement": torch.zeros(1, 2, 128, 16), "levels": [level], "strides": [4]}
    t = UnsupervisedLoss(coarse_mode="upsample")(pre, post, out)
    full = torch.zeros(1, 2, 128, 16)
    full[:, 0] = 3.0
    assert torch.allclose(t["similarity_l0"], similarity_ncc(pre, post, full))


def test_interpolation_setting_warps_the_full_resolution_similarity_only():
    pre, post = rf_pair(2.5, n_samples=128, n_lines=16)
    out = fake_outputs(1, 128, 16, axial=2.5, requires_grad=False)
    bilinear = UnsupervisedLoss()(pre, post, out)
    spline = UnsupervisedLoss(interpolation="spline")(pre, post, out)
    final = out["displacement"]
    assert torch.equal(spline["similarity_final"], similarity_ncc(pre, post, final, interpolation="spline"))
    assert float(spline["similarity_final"]) < float(bilinear["similarity_final"])
    for name in ("similarity_l0", "similarity_l1", "similarity_l2"):  # coarse envelope levels: unchanged
        assert torch.equal(spline[name], bilinear[name])
    assert UnsupervisedLossConfig.from_dict({"interpolation": "spline"}).interpolation == "spline"
    with pytest.raises(ValueError, match="interpolation"):
        UnsupervisedLossConfig(interpolation="cubic")


def test_smooth_lag_weighs_the_final_fields_jitter_less():
    from cdpkd.losses.unsupervised import smoothness

    out = fake_outputs(1, 128, 16, axial=2.5, requires_grad=False)
    torch.manual_seed(1)
    out["displacement"] = out["displacement"] + 0.05 * torch.randn_like(out["displacement"])
    pre, post = rf_pair(2.5, n_samples=128, n_lines=16)
    final_only = {"smooth_weight": 1.0, "regularize_levels": False}
    adjacent = UnsupervisedLoss(**final_only)(pre, post, out)
    lagged = UnsupervisedLoss(**final_only, smooth_lag=(8, 2))(pre, post, out)
    assert torch.allclose(lagged["smooth"], smoothness(out["displacement"], (2, 2), eps=1e-3, lag=(8, 2)))
    assert float(lagged["smooth"]) < 0.25 * float(adjacent["smooth"])  # pixel jitter weighs far less (L1-like: 1 / lag)
    assert torch.equal(lagged["similarity"], adjacent["similarity"])
    with_levels = UnsupervisedLoss(smooth_weight=1.0, smooth_lag=(8, 2))(pre, post, out)  # level lags >= 1
    assert torch.isfinite(with_levels["total"])
    assert UnsupervisedLossConfig.from_dict({"smooth_lag": [8, 2]}).smooth_lag == (8, 2)
    same_both_ways = UnsupervisedLoss(**final_only, smooth_lag=8)(pre, post, out)  # one int: both directions
    assert torch.equal(same_both_ways["smooth"], UnsupervisedLoss(**final_only, smooth_lag=(8, 8))(pre, post, out)["smooth"])
    with pytest.raises(ValueError, match="smooth_lag"):
        UnsupervisedLossConfig(smooth_lag=(0, 1))


def test_gradient_descent_recovers_a_known_shift():
    """Optimise a displacement field directly (no network) on a simulated pair shifted 2.6 samples."""
    pre, post = rf_pair(2.6, n_samples=128, n_lines=16, seed=3)
    d = torch.zeros(1, 2, 128, 16)
    d[:, 0] = 1.5
    d.requires_grad_(True)
    loss = UnsupervisedLoss()
    opt = torch.optim.Adam([d], lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        loss(pre, post, {"displacement": d})["total"].backward()
        opt.step()
    inner = d.detach()[0, 0, 16:-16]  # away from the rows that leave the frame
    assert abs(float(inner.mean()) - 2.6) < 0.05
    assert float(d.detach()[0, 1, 16:-16].abs().mean()) < 0.2


def test_autocast_and_half_outputs_give_float32_terms():
    pre, post = rf_pair(3.0, n_samples=128, n_lines=16)
    out = fake_outputs(1, 128, 16, axial=3.0, requires_grad=False)
    ref = UnsupervisedLoss()(pre, post, out)
    half = {
        "displacement": out["displacement"].bfloat16(),
        "levels": [d.bfloat16() for d in out["levels"]],
        "strides": out["strides"],
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = UnsupervisedLoss()(pre, post, half)
    for k in ref:
        assert got[k].dtype == torch.float32 and torch.isfinite(got[k])
    assert abs(float(got["total"] - ref["total"])) < 0.05 * float(ref["total"]) + 0.01


def test_config_json_round_trip_and_validation():
    cfg = UnsupervisedLossConfig(
        smooth_weight=0.2, level_weights=(0.1, 0.2, 1.0), smooth_weights=((1, 2), (3, 4))
    )
    text = json.dumps(cfg.to_dict())
    back = UnsupervisedLossConfig.from_dict(json.loads(text))
    assert back == cfg and UnsupervisedLossConfig.from_json(cfg.to_json()) == cfg
    assert UnsupervisedLoss(cfg, smooth_weight=0.5).config.smooth_weight == 0.5
    with pytest.raises(ValueError, match="unknown key"):
        UnsupervisedLossConfig.from_dict({"smoothness_weight": 1.0})
    with pytest.raises(ValueError, match="coarse_mode"):
        UnsupervisedLossConfig(coarse_mode="bilinear")
    with pytest.raises(ValueError, match="ncc_window"):
        UnsupervisedLossConfig(ncc_window=(30, 5))
    with pytest.raises(ValueError, match="smooth_weight"):
        UnsupervisedLossConfig(smooth_weight=-1.0)
    with pytest.raises(ValueError, match="nu_min"):
        UnsupervisedLossConfig(nu_min=0.6)


def test_bad_outputs_raise_clear_errors():
    pre, post = rf_pair(0.0, n_samples=64, n_lines=16)
    good = fake_outputs(1, 64, 16, strides=(4, 1), requires_grad=False)
    loss = UnsupervisedLoss()
    with pytest.raises(ValueError, match="same shape"):
        loss(pre, post[:, :, :-1], good)
    with pytest.raises(ValueError, match="'displacement'"):
        loss(pre, post, {"levels": good["levels"]})
    with pytest.raises(ValueError, match="2 channels"):
        loss(pre, post, {**good, "displacement": torch.zeros(1, 3, 64, 16)})
    with pytest.raises(ValueError, match="matching the frames"):
        loss(pre, post, {**good, "displacement": torch.zeros(1, 2, 64, 8)})
    with pytest.raises(ValueError, match="equal length"):
        loss(pre, post, {**good, "strides": [4]})
    with pytest.raises(ValueError, match=r"levels'\]\[0\].*stride"):
        loss(pre, post, {**good, "strides": [2, 1]})
    with pytest.raises(ValueError, match=r"levels'\]\[1\].*2 channels"):
        loss(pre, post, {**good, "levels": [good["levels"][0], torch.zeros(1, 1, 64, 16)]})
    with pytest.raises(ValueError, match="level_weights"):
        UnsupervisedLoss(level_weights=(1.0,))(pre, post, good)


def test_small_frames_and_final_only_regularization():
    from cdpkd.losses.unsupervised import smoothness

    pre, post = rf_pair(1.0, n_samples=24, n_lines=8)  # smaller than the (31, 5) default window
    out = fake_outputs(1, 24, 8, strides=(8, 2), axial=1.0, requires_grad=False)
    t = UnsupervisedLoss()(pre, post, out)
    assert torch.isfinite(t["total"]) and t["similarity_final"] < 0.05
    cfg = UnsupervisedLossConfig()
    t = UnsupervisedLoss(regularize_levels=False)(pre, post, out)
    expected = smoothness(out["displacement"], cfg.smooth_order, cfg.smooth_weights, eps=cfg.smooth_eps)
    assert torch.allclose(t["smooth"], expected)


def test_one_int_windows_mean_both_axes():
    """ncc_window, strain_window, smooth_order, smooth_lag: one int is stored as the pair it means."""
    cfg = UnsupervisedLossConfig(ncc_window=15, strain_window=5, smooth_order=1, smooth_lag=4)
    assert (cfg.ncc_window, cfg.strain_window, cfg.smooth_order, cfg.smooth_lag) == ((15, 15), (5, 5), (1, 1), (4, 4))
    assert UnsupervisedLossConfig.from_json(cfg.to_json()) == cfg
    out = fake_outputs(1, 64, 16, axial=1.5, requires_grad=False)
    pre, post = rf_pair(1.5, n_samples=64, n_lines=16)
    as_int = UnsupervisedLoss(ncc_window=15, strain_window=5)(pre, post, out)
    as_pair = UnsupervisedLoss(ncc_window=(15, 15), strain_window=(5, 5))(pre, post, out)
    for name in ("similarity", "incompressibility", "total"):
        assert torch.equal(as_int[name], as_pair[name]), name
