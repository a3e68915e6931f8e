"""Contract of every distillation loss: zero at student == teacher, positive otherwise,
gradients to the student (and adapters) only, clear errors for mismatched outputs."""

from __future__ import annotations

import pytest
import torch

from cdpkd.losses.distill import (
    DISTILLERS,
    MAVKD,
    AttentionTransfer,
    FeatureDistillation,
    ImitationLoss,
    KDMRIDistillation,
    OutputDistillation,
    TeacherLevelDistillation,
    build_distiller,
    feature_channels,
)

STRIDES = (4, 2, 1)
TEACHER_CH = {"pre": [8, 6, 4], "estimator": [6, 5, 4], "cost": [15, 15, 15]}
STUDENT_CH = {"pre": [5, 4, 3], "estimator": [4, 3, 3], "cost": [15, 15, 15]}




def fake_outputs(channels=TEACHER_CH, n=2, h=16, w=8, strides=STRIDES, seed=0, requires_grad=True):
    """A PWC-like output dict: levels coarse -> fine, features aligned with them."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).requires_grad_(requires_grad)

    sizes = [(-(-h // s), -(-w // s)) for s in strides]
    return {
        "displacement": rand(n, 2, h, w),
        "levels": [rand(n, 2, hl, wl) for hl, wl in sizes],
        "strides": list(strides),
        "pyramid_levels": list(range(len(strides) - 1, -1, -1)),
        "features": {
            kind: [rand(n, c, hl, wl) for c, (hl, wl) in zip(chs, sizes)] for kind, chs in channels.items()
        },
    }


def clone_outputs(out, requires_grad=True):
    """Same values, separate leaf tensors."""
    c = lambda t: t.detach().clone().requires_grad_(requires_grad)  # noqa: E731
    return {
        **out,
        "displacement": c(out["displacement"]),
        "levels": [c(t) for t in out["levels"]],
        "features": {k: [c(t) for t in v] for k, v in out["features"].items()},
    }


def tensors(out):
    yield out["displacement"]
    yield from out["levels"]
    for v in out["features"].values():
        yield from v


# name -> factory(teacher_channels, student_channels, identity) ; identity only matters for adapters
METHODS = {
    "output_charbonnier": lambda tc, sc, ident: OutputDistillation(),
    "output_epe": lambda tc, sc, ident: OutputDistillation(penalty="epe"),
    "output_l1_no_levels": lambda tc, sc, ident: OutputDistillation(penalty="l1", include_levels=False),
    "output_l2": lambda tc, sc, ident: OutputDistillation(penalty="l2", component_weights=(1.0, 0.5)),
    "feature_pre": lambda tc, sc, ident: FeatureDistillation(tc, sc, identity_init=ident),
    "feature_estimator_norm": lambda tc, sc, ident: FeatureDistillation(
        tc, sc, kind="estimator", normalize=True, identity_init=ident
    ),
    "attention_pre": lambda tc, sc, ident: AttentionTransfer(),
    "attention_estimator_l2": lambda tc, sc, ident: AttentionTransfer(kind="estimator", distance="l2"),
    "imitation": lambda tc, sc, ident: ImitationLoss(tc, sc, identity_init=ident),
    "teacher_output": lambda tc, sc, ident: TeacherLevelDistillation(level="output"),
    "teacher_output_kl": lambda tc, sc, ident: TeacherLevelDistillation(
        level="output", cost_kl=True, temperature=2.0
    ),
    "teacher_encoder": lambda tc, sc, ident: TeacherLevelDistillation(
        tc, sc, level="encoder", identity_init=ident
    ),
    "teacher_encoder_kl": lambda tc, sc, ident: TeacherLevelDistillation(
        tc, sc, level="encoder", cost_kl=True, identity_init=ident
    ),
    "teacher_regressor": lambda tc, sc, ident: TeacherLevelDistillation(
        tc, sc, level="encoder_regressor", identity_init=ident
    ),
    "teacher_regressor_kl": lambda tc, sc, ident: TeacherLevelDistillation(
        tc, sc, level="encoder_regressor", cost_kl=True, identity_init=ident
    ),
    "mavkd": lambda tc, sc, ident: MAVKD(tc, sc, identity_init=ident),
    "mavkd_pooled": lambda tc, sc, ident: MAVKD(tc, sc, pool_factors=(1, 2), identity_init=ident),
    "kdmri": lambda tc, sc, ident: KDMRIDistillation(tc, sc, imitation={"identity_init": ident}),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_zero_when_student_equals_teacher(method):
    teacher = fake_outputs(TEACHER_CH)
    student = clone_outputs(teacher)
    loss = METHODS[method](TEACHER_CH, TEACHER_CH, True)
    terms = loss(student, teacher)
    assert "total" in terms
    for name, value in terms.items():
        assert value.shape == () and value.dtype == torch.float32, name
        assert abs(value.item()) < 1e-6, (name, value.item())
    terms["total"].backward()  # fine at the minimum too (no NaN from sqrt / norm at 0)
    for t in tensors(student):
        assert t.grad is None or torch.isfinite(t.grad).all()


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("equal_channels", [True, False])
def test_positive_and_gradients_reach_student_and_adapters_only(method, equal_channels):
    teacher = fake_outputs(TEACHER_CH, seed=0)
    s_ch = TEACHER_CH if equal_channels else STUDENT_CH
    student = fake_outputs(s_ch, seed=1)
    loss = METHODS[method](TEACHER_CH, s_ch, equal_channels)
    terms = loss(student, teacher)
    for name, value in terms.items():
        assert torch.isfinite(value), name
        # each term is a distance between different random tensors: strictly positive
        assert value.item() > 0, (name, value.item())
    terms["total"].backward()
    assert all(t.grad is None for t in tensors(teacher)), "teacher tensors must be treated as constants"
    grads = [t.grad for t in tensors(student) if t.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    for pname, p in loss.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"output_l1_no_levels"}))
def test_mismatched_number_of_levels_is_a_clear_error(method):
    teacher = fake_outputs(TEACHER_CH)
    student = fake_outputs(STUDENT_CH, seed=1)
    student["levels"] = student["levels"][1:]
    student["features"] = {k: v[1:] for k, v in student["features"].items()}
    loss = METHODS[method](TEACHER_CH, STUDENT_CH, False)
    with pytest.raises(ValueError, match="number of levels mismatch"):
        loss(student, teacher)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_spatial_size_mismatch_is_a_clear_error(method):
    teacher = fake_outputs(TEACHER_CH, h=16)
    student = fake_outputs(STUDENT_CH, h=24, seed=1)
    loss = METHODS[method](TEACHER_CH, STUDENT_CH, False)
    with pytest.raises(ValueError, match="spatial size mismatch"):
        loss(student, teacher)


@pytest.mark.parametrize(
    "method", ["feature_pre", "imitation", "teacher_encoder", "teacher_regressor", "mavkd"]
)
def test_channels_differing_from_the_adapters_are_a_clear_error(method):
    teacher = fake_outputs(TEACHER_CH)
    student = fake_outputs(TEACHER_CH, seed=1)  # adapters were built for STUDENT_CH
    loss = METHODS[method](TEACHER_CH, STUDENT_CH, False)
    with pytest.raises(ValueError, match="channel mismatch at student features"):
        loss(student, teacher)


DISPLACEMENT_ONLY = {"output_charbonnier", "output_epe", "output_l2", "output_l1_no_levels", "teacher_output"}


@pytest.mark.parametrize("method", sorted(set(METHODS) - DISPLACEMENT_ONLY))
def test_missing_features_name_return_features(method):
    teacher = fake_outputs(TEACHER_CH)
    student = fake_outputs(STUDENT_CH, seed=1)
    del student["features"]
    loss = METHODS[method](TEACHER_CH, STUDENT_CH, False)
    with pytest.raises(ValueError, match="return_features=True"):
        loss(student, teacher)


def test_not_a_dict_and_missing_displacement_are_clear_errors():
    teacher = fake_outputs(TEACHER_CH)
    with pytest.raises(ValueError, match="student outputs must be a model output dict"):
        OutputDistillation()(torch.zeros(1, 2, 4, 4), teacher)
    student = fake_outputs(TEACHER_CH, seed=1)
    del student["displacement"]
    with pytest.raises(ValueError, match="student outputs have no 'displacement'"):
        OutputDistillation()(student, teacher)


def test_registry_builds_every_method_from_feature_channel_dicts():
    teacher = fake_outputs(TEACHER_CH)
    student = fake_outputs(STUDENT_CH, seed=1)
    tc, sc = feature_channels(teacher), feature_channels(student)
    assert tc == TEACHER_CH and sc == STUDENT_CH
    for name, cls in DISTILLERS.items():
        loss = build_distiller(name, tc, sc)
        assert isinstance(loss, cls)
        assert loss(student, teacher)["total"].item() > 0, name
    assert isinstance(build_distiller("output", penalty="epe"), OutputDistillation)
    enc = build_distiller("teacher_level", tc, sc, level="encoder_regressor", cost_kl=True)
    assert len(enc.adapters) == 3
    with pytest.raises(ValueError, match="unknown distiller"):
        build_distiller("nope")
    with pytest.raises(ValueError, match="needs teacher_channels and student_channels"):
        build_distiller("feature")
    with pytest.raises(ValueError, match="needs teacher_channels and student_channels"):
        build_distiller("teacher_level", level="encoder")
