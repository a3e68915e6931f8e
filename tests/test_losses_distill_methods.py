"""Method-specific behaviour of the distillation losses: known values, invariances, configs, real models."""

from __future__ import annotations

import json

import pytest
import torch
from test_losses_distill import STUDENT_CH, TEACHER_CH, clone_outputs, fake_outputs

from cdpkd.losses import DISTILLERS as REEXPORTED
from cdpkd.losses.distill import (
    DISTILLERS,
    MAVKD,
    AttentionTransfer,
    CombinedDistillation,
    FeatureDistillation,
    ImitationLoss,
    KDMRIDistillation,
    MAVKDConfig,
    OutputDistillation,
    OutputDistillationConfig,
    Regressor,
    TeacherLevelDistillation,
    attention_map,
    build_distiller,
    displacement_distance,
    feature_channels,
)


def shifted(out, axial=0.5):
    """A copy with every displacement shifted axially by ``axial`` samples."""
    s = clone_outputs(out)
    s["displacement"] = (
        s["displacement"].detach() + torch.tensor([axial, 0.0]).view(1, 2, 1, 1)
    ).requires_grad_()
    s["levels"] = [
        (t.detach() + torch.tensor([axial, 0.0]).view(1, 2, 1, 1)).requires_grad_() for t in s["levels"]
    ]
    return s


# --- output ----------------------------------------------------------------------------------------
def test_output_penalties_known_values():
    teacher = fake_outputs(TEACHER_CH)
    student = shifted(teacher, 0.5)  # axial error 0.5 samples everywhere, lateral 0
    assert OutputDistillation(penalty="l1")(student, teacher)["output"].item() == pytest.approx(0.25)
    assert OutputDistillation(penalty="l2")(student, teacher)["output"].item() == pytest.approx(0.125)
    epe = OutputDistillation(penalty="epe", eps=1e-6)(student, teacher)["output"].item()
    assert epe == pytest.approx(0.5, abs=1e-5)
    eps = 0.1
    charb = OutputDistillation(penalty="charbonnier", eps=eps)(student, teacher)["output"].item()
    assert charb == pytest.approx(((0.25 + eps**2) ** 0.5 - eps) / 2, rel=1e-5)
    weighted = OutputDistillation(penalty="l1", component_weights=(2.0, 1.0))(student, teacher)[
        "output"
    ].item()
    assert weighted == pytest.approx(0.5)
    # the function form
    d = displacement_distance(student["displacement"], teacher["displacement"].detach(), "l1")
    assert d.item() == pytest.approx(0.25)


def test_output_level_weights_and_names():
    teacher = fake_outputs(TEACHER_CH)
    student = fake_outputs(TEACHER_CH, seed=3)
    loss = OutputDistillation(penalty="l1", final_weight=2.0, level_weights=(1.0, 0.0, 0.5), weight=3.0)
    t = loss(student, teacher)
    assert set(t) == {"output_final", "output_l0", "output_l1", "output_l2", "output", "total"}
    expected = (2.0 * t["output_final"] + 1.0 * t["output_l0"] + 0.5 * t["output_l2"]) / 3.5
    assert torch.allclose(t["output"], expected)
    assert torch.allclose(t["total"], 3.0 * expected)
    # default decay 0.5 towards the coarse levels
    t = OutputDistillation(penalty="l1", final_weight=0.0)(student, teacher)
    expected = (0.25 * t["output_l0"] + 0.5 * t["output_l1"] + t["output_l2"]) / 1.75
    assert torch.allclose(t["output"], expected)
    with pytest.raises(ValueError, match="level_weights has 2 entries but the outputs have 3 levels"):
        OutputDistillation(level_weights=(1.0, 1.0))(student, teacher)


def test_output_is_float32_under_autocast_and_from_bfloat16():
    teacher = fake_outputs(TEACHER_CH, requires_grad=False)
    student = fake_outputs(TEACHER_CH, seed=1, requires_grad=False)
    s16 = {**student, "displacement": student["displacement"].bfloat16(), "levels": student["levels"]}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        t = OutputDistillation()(s16, teacher)
    assert t["total"].dtype == torch.float32


def test_config_json_round_trip_and_validation():
    cfg = OutputDistillationConfig(penalty="epe", level_weights=[1.0, 2.0], component_weights=[1.0, 0.5])
    assert cfg.level_weights == (1.0, 2.0)
    again = OutputDistillationConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg
    with pytest.raises(ValueError, match="unknown field"):
        OutputDistillationConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="penalty must be one of"):
        OutputDistillation(penalty="huber")
    with pytest.raises(ValueError, match="level_decay"):
        OutputDistillation(level_decay=0.0)
    with pytest.raises(ValueError, match="weight"):
        OutputDistillation(weight=-1.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        FeatureDistillation(TEACHER_CH, STUDENT_CH, kind="decoder")
    with pytest.raises(ValueError, match="pool_factors"):
        MAVKD(TEACHER_CH, STUDENT_CH, pool_factors=(0,))
    with pytest.raises(ValueError, match="level must be one of"):
        TeacherLevelDistillation(level="logits")
    with pytest.raises(ValueError, match="temperature"):
        TeacherLevelDistillation(temperature=0.0)
    with pytest.raises(ValueError, match="has no entry for feature kind 'estimator'"):
        ImitationLoss({"pre": [4]}, {"pre": [4]})
    with pytest.raises(ValueError, match="number of levels mismatch"):
        FeatureDistillation([4, 4], [4])
    assert MAVKD(TEACHER_CH, STUDENT_CH, config=MAVKDConfig(pool_factors=(1, 2))).config.pool_factors == (
        1,
        2,
    )


# --- feature ---------------------------------------------------------------------------------------
def test_feature_adapters_match_channels_and_normalize_is_scale_free():
    loss = FeatureDistillation(TEACHER_CH, STUDENT_CH)
    assert [(a.in_channels, a.out_channels) for a in loss.adapters] == [(5, 8), (4, 6), (3, 4)]
    teacher = fake_outputs(TEACHER_CH)
    student = fake_outputs(TEACHER_CH, seed=1)
    plain = FeatureDistillation(TEACHER_CH, TEACHER_CH, identity_init=True)
    norm = FeatureDistillation(TEACHER_CH, TEACHER_CH, identity_init=True, normalize=True)
    big_t = {**teacher, "features": {"pre": [10 * f for f in teacher["features"]["pre"]]}}
    big_s = {**student, "features": {"pre": [10 * f for f in student["features"]["pre"]]}}
    assert plain(big_s, big_t)["feature"].item() == pytest.approx(
        100 * plain(student, teacher)["feature"].item()
    )
    assert norm(big_s, big_t)["feature"].item() == pytest.approx(
        norm(student, teacher)["feature"].item(), rel=1e-4
    )


# --- attention -------------------------------------------------------------------------------------
def test_attention_map_is_unit_norm_and_channel_count_free():
    f = torch.randn(2, 6, 5, 4)
    a = attention_map(f)
    assert a.shape == (2, 20)
    assert torch.allclose(a.norm(dim=1), torch.ones(2))
    # a student with twice the channels but the same per-pixel energy has the same attention map
    teacher = fake_outputs(TEACHER_CH)
    feats = [torch.cat((t, t), dim=1).detach() / 2**0.5 for t in teacher["features"]["pre"]]
    student = {**teacher, "features": {"pre": [f.requires_grad_() for f in feats]}}
    assert AttentionTransfer()(student, teacher)["total"].item() < 1e-10
    # and scaling the activations changes nothing
    scaled = {**teacher, "features": {"pre": [3 * t.detach() for t in teacher["features"]["pre"]]}}
    assert AttentionTransfer()(scaled, teacher)["total"].item() < 1e-10


# --- imitation -------------------------------------------------------------------------------------
def test_imitation_terms_and_total():
    teacher = fake_outputs(TEACHER_CH)
    student = shifted(teacher, 0.5)
    loss = ImitationLoss(TEACHER_CH, TEACHER_CH, identity_init=True, disp_weight=2.0, feat_weight=5.0)
    t = loss(student, teacher)
    assert t["imitation_disp"].item() == pytest.approx(0.25)  # L1, axial 0.5 / 2 components
    assert t["imitation_feat"].item() == pytest.approx(0.0, abs=1e-7)
    assert t["total"].item() == pytest.approx(0.5)
    assert {"imitation_disp_final", "imitation_disp_l0", "imitation_feat_l2"} <= set(t)
    no_final = ImitationLoss(TEACHER_CH, TEACHER_CH, include_final=False)(student, teacher)
    assert "imitation_disp_final" not in no_final


# --- teacher level ---------------------------------------------------------------------------------
def test_regressor_identity_init_is_exact_despite_relu():
    x = torch.randn(2, 3, 5, 4)  # negative values too
    for c_out in (3, 5, 2):
        r = Regressor(3, c_out, hidden=max(c_out, 6), identity_init=True)
        y = r(x)
        m = min(3, c_out)
        assert torch.allclose(y[:, :m], x[:, :m], atol=1e-6)
        assert torch.all(y[:, m:] == 0)
    with pytest.raises(ValueError, match="identity_init needs hidden"):
        Regressor(3, 4, hidden=5, identity_init=True)
    with pytest.raises(ValueError, match="identity_init needs hidden"):
        TeacherLevelDistillation(
            TEACHER_CH, STUDENT_CH, level="encoder_regressor", identity_init=True, regressor_hidden=4
        )


def test_cost_kl_is_shift_invariant_and_scaled_by_temperature():
    teacher = fake_outputs(TEACHER_CH)
    # softmax over D ignores a constant shift of the cost: still zero loss
    shifted_cost = {**teacher, "features": {"cost": [t.detach() + 3.0 for t in teacher["features"]["cost"]]}}
    loss = TeacherLevelDistillation(level="output", cost_kl=True)
    assert loss(shifted_cost, teacher)["total"].item() < 1e-6
    student = fake_outputs(TEACHER_CH, seed=2)
    t1 = loss(student, teacher)
    assert set(t1) == {"cost_kl_l0", "cost_kl_l1", "cost_kl_l2", "teacher_level", "total"}
    # a manual KL at T = 1 for level 0
    s0, te0 = student["features"]["cost"][0], teacher["features"]["cost"][0]
    p_t = te0.softmax(1)
    manual = (p_t * (p_t.log() - s0.log_softmax(1))).sum(1).mean()
    assert torch.allclose(t1["cost_kl_l0"], manual, atol=1e-6)
    # high temperature: KL ~ ||s - t||^2 / (2 T^2 D) per pixel (centred), times T^2 -> finite limit
    hot = TeacherLevelDistillation(level="output", cost_kl=True, temperature=100.0)(student, teacher)
    hotter = TeacherLevelDistillation(level="output", cost_kl=True, temperature=1000.0)(student, teacher)
    assert hot["total"].item() == pytest.approx(hotter["total"].item(), rel=0.05)


def test_teacher_level_output_mse_has_no_parameters_and_names():
    loss = TeacherLevelDistillation(level="output")
    assert len(list(loss.parameters())) == 0
    teacher = fake_outputs(TEACHER_CH)
    t = loss(shifted(teacher, 0.5), teacher)
    assert t["output_mse_final"].item() == pytest.approx(0.125)
    assert t["teacher_level"].item() == pytest.approx(0.125)
    enc = TeacherLevelDistillation(TEACHER_CH, STUDENT_CH, level="encoder", cost_kl=True)
    t = enc(fake_outputs(STUDENT_CH, seed=1), teacher)
    assert {"encoder_kl_l0", "encoder_kl_l1", "encoder_kl_l2"} <= set(t)


def test_cost_kl_needs_equal_cost_volume_depths():
    teacher = fake_outputs(TEACHER_CH)
    student = fake_outputs({**STUDENT_CH, "cost": [9, 9, 9]}, seed=1)
    with pytest.raises(ValueError, match=r"channel mismatch at features\['cost'\]\[0\]"):
        TeacherLevelDistillation(level="output", cost_kl=True)(student, teacher)


# --- MAVKD -----------------------------------------------------------------------------------------
def test_mavkd_adaptation_vectors():
    loss = MAVKD(TEACHER_CH, {"pre": [8, 4, 4]}, identity_init=True)
    shapes = [(tuple(a.scale.shape), type(a.projection).__name__) for a in loss.adapters]
    assert shapes == [((8,), "Identity"), ((4,), "Conv2d"), ((4,), "Identity")]
    teacher = fake_outputs(TEACHER_CH)
    # learnable scale undoes a per-channel scaling of the student exactly
    loss = MAVKD(TEACHER_CH, TEACHER_CH)
    student = clone_outputs(teacher)
    student["features"]["pre"] = [(2 * t.detach()).requires_grad_() for t in teacher["features"]["pre"]]
    assert loss(student, teacher)["total"].item() > 0
    with torch.no_grad():
        for a in loss.adapters:
            a.scale.fill_(0.5)
    assert loss(student, teacher)["total"].item() < 1e-10
    pooled = MAVKD(TEACHER_CH, TEACHER_CH, pool_factors=(1, 2, 4))(fake_outputs(TEACHER_CH, seed=1), teacher)
    assert set(pooled) == {"mavkd_l0", "mavkd_l1", "mavkd_l2", "mavkd", "total"}


# --- composition -----------------------------------------------------------------------------------
def test_kdmri_and_combined_sum_their_parts():
    teacher = fake_outputs(TEACHER_CH)
    student = fake_outputs(STUDENT_CH, seed=1)
    loss = KDMRIDistillation(TEACHER_CH, STUDENT_CH, attention_weight=2.0, imitation_weight=0.5)
    t = loss(student, teacher)
    assert torch.allclose(t["total"], 2.0 * t["attention"] + 0.5 * t["imitation"])
    assert "attention.attention_l0" in t and "imitation.imitation_feat_l1" in t
    assert len(list(loss.parameters())) == 6  # three 1x1 adapters (weight + bias)
    combo = CombinedDistillation({"out": OutputDistillation(), "at": AttentionTransfer()}, {"at": 0.0})
    t = combo(student, teacher)
    assert torch.allclose(t["total"], t["out"])
    with pytest.raises(ValueError, match="weights for unknown parts"):
        CombinedDistillation({"out": OutputDistillation()}, {"x": 1.0})


# --- real models -----------------------------------------------------------------------------------
def test_smoke_models_feed_every_distiller():
    from cdpkd.models import build_model

    assert REEXPORTED is DISTILLERS
    teacher_net = build_model("umen_teacher_smoke", seed=0).eval()
    student_net = build_model("dpnet_smoke", seed=1)
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(1, 1, 64, 32, generator=g)
    post = torch.roll(pre, 1, dims=2) + 0.05 * torch.randn(1, 1, 64, 32, generator=g)
    with torch.no_grad():
        t_out = teacher_net(pre, post, return_features=True)
    s_out = student_net(pre, post, return_features=True)
    tc, sc = feature_channels(t_out), feature_channels(s_out)
    assert tc["pre"] != sc["pre"]  # the student is narrower
    losses = [build_distiller(name, tc, sc) for name in DISTILLERS]
    losses += [
        build_distiller("teacher_level", tc, sc, level=level, cost_kl=kl)
        for level in ("output", "encoder", "encoder_regressor")
        for kl in (False, True)
    ]
    total = sum(loss(s_out, t_out)["total"] for loss in losses)
    assert torch.isfinite(total) and total.item() > 0
    total.backward()
    assert all(p.grad is None for p in teacher_net.parameters())
    grads = [p.grad for p in student_net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    for loss in losses:
        for p in loss.parameters():
            assert p.grad is not None
