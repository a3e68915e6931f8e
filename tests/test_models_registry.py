"""Registry, exact parameter counts, and pickle-free save/load."""

from __future__ import annotations

import fractions
import json

import pytest
import torch

from cdpkd.models import (
    MODEL_CONFIGS,
    PWCConfig,
    build_model,
    count_parameters,
    get_config,
    load_model,
    model_spec,
    save_model,
)
from cdpkd.models.io import spec_path

EXACT_PARAMETERS = {
    "umen_teacher": 9_366_466,
    "umen_teacher_gocor": 9_366_536,
    "umen_teacher_cpu": 2_629_020,
    "umen_teacher_smoke": 9_954,
    "dpnet": 3_654_664,
    "dpnet_cpu": 1_082_800,
    "dpnet_smoke": 6_819,
}



def test_every_registry_entry_has_a_known_count():
    assert set(MODEL_CONFIGS) == set(EXACT_PARAMETERS)


@pytest.mark.parametrize("name", sorted(EXACT_PARAMETERS))
def test_exact_parameter_counts(name):
    model = build_model(name)
    assert count_parameters(model) == EXACT_PARAMETERS[name]
    assert count_parameters(model, trainable_only=True) == EXACT_PARAMETERS[name]


def test_teacher_is_about_9_4_million_and_students_are_subnetworks():
    teacher = get_config("umen_teacher")
    assert abs(EXACT_PARAMETERS["umen_teacher"] - 9.4e6) / 9.4e6 < 0.01
    dp = get_config("dpnet")
    assert dp.estimator_levels == teacher.estimator_levels and dp.strides == teacher.strides
    for a, b in zip(
        dp.pyramid_channels + dp.estimator_widths, teacher.pyramid_channels + teacher.estimator_widths
    ):
        assert len(a) == len(b) and all(x <= y for x, y in zip(a, b))
    assert EXACT_PARAMETERS["dpnet"] / EXACT_PARAMETERS["umen_teacher"] < 0.40


def test_build_model_accepts_names_configs_and_dicts():
    cfg = get_config("umen_teacher_smoke")
    model = build_model(cfg)
    assert build_model(cfg.to_dict()).config == cfg
    assert build_model(model_spec(model)).config == cfg
    with pytest.raises(ValueError, match="unknown model name"):
        build_model("umen_teacher_huge")
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model({"architecture": "transformer", "config": {}})
    with pytest.raises(ValueError, match="needs a 'config'"):
        build_model({"architecture": "pwc"})
    with pytest.raises(ValueError, match="expected a name"):
        build_model(3)


@pytest.mark.parametrize("correlation", ["plain", "gocor"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, correlation):
    cfg = get_config("umen_teacher_smoke").replace(correlation=correlation, gocor_steps=2)
    model = build_model(cfg, seed=5)
    with torch.no_grad():  # make the GOCor parameters differ from their init
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_model(tmp_path / "sub" / "model.pt", model)
    assert json.loads(spec_path(path).read_text()) == model_spec(model)
    loaded = load_model(path)
    assert loaded.config == cfg
    pre = torch.randn(1, 1, 24, 12, generator=torch.Generator().manual_seed(0))
    post = pre.roll(1, dims=-2)
    with torch.no_grad():
        assert torch.equal(model(pre, post)["displacement"], loaded(pre, post)["displacement"])
    assert not list(tmp_path.glob("sub/.*.tmp"))  # atomic write left no temporary behind


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "missing.pt")

    good = save_model(tmp_path / "good.pt", build_model("umen_teacher_smoke", seed=0))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.pt: not a readable"):
        load_model(truncated)

    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="format marker"):
        load_model(other)

    pickled = tmp_path / "pickled.pt"  # an object needing an arbitrary global: refused by weights_only
    torch.save({"format": "cdpkd.model", "obj": fractions.Fraction(1, 3)}, pickled)
    with pytest.raises(ValueError, match="not a readable"):
        load_model(pickled)

    # tensors that do not fit the stored architecture (e.g. a tampered spec)
    payload = torch.load(good, weights_only=True)
    spec = json.loads(payload["spec"])
    spec["config"]["context_widths"] = [7]
    payload["spec"] = json.dumps(spec)
    tampered = tmp_path / "tampered.pt"
    torch.save(payload, tampered)
    with pytest.raises(ValueError, match="do not match the stored architecture"):
        load_model(tampered)


def test_config_default_is_plain_correlation():
    assert PWCConfig().correlation == "plain"
    assert get_config("umen_teacher").correlation == "plain"
    assert get_config("umen_teacher_gocor").correlation == "gocor"
