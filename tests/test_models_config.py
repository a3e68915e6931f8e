"""PWCConfig: validation, shorthand expansion, scaling, JSON round trip."""

from __future__ import annotations

import json

import pytest

from cdpkd.models import MODEL_CONFIGS, PWCConfig


def test_defaults_are_the_teacher_layout():
    cfg = PWCConfig()
    assert cfg.pyramid_channels == tuple((c,) * 3 for c in (16, 32, 64, 96, 128, 196))
    assert cfg.estimator_widths == ((128, 128, 96, 64, 32),) * 5
    assert cfg.search_radii == ((4, 2),) * 5
    assert [cfg.level_stride(lv) for lv in range(6)] == [1, 1, 2, 4, 8, 16]
    assert cfg.strides == (16, 8, 4, 2, 1)
    assert cfg.total_stride == 16
    assert cfg.correlation == "plain"


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_json_round_trip(name):
    cfg = MODEL_CONFIGS[name]()
    text = json.dumps(cfg.to_dict())
    back = PWCConfig.from_dict(json.loads(text))
    assert back == cfg
    assert PWCConfig.from_json(cfg.to_json()) == cfg
    assert hash(back) == hash(cfg)  # frozen and hashable after normalisation


def test_explicit_per_conv_widths_survive_round_trip():
    cfg = PWCConfig(
        pyramid_channels=((4, 5), (6, 7, 8)),
        full_res_levels=1,
        estimator_levels=(1, 0),
        estimator_widths=((9, 3), (5,)),
        search_radii=((3, 1), (1, 0)),
        context_widths=(4, 6),
        context_dilations=(1, 3),
    )
    assert PWCConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.estimator_widths == ((9, 3), (5,))


def test_scaled_rounds_and_keeps_minimum_four():
    cfg = PWCConfig().scaled(0.5)
    assert cfg.pyramid_channels[0] == (8, 8, 8)
    assert cfg.pyramid_channels[5] == (98, 98, 98)
    assert cfg.estimator_widths[0] == (64, 64, 48, 32, 16)
    assert cfg.context_widths == (64, 64, 64, 48, 32, 16)
    assert cfg.upfeat_channels == 2  # tiny heads are not scaled
    tiny = PWCConfig().scaled(0.05)
    assert min(min(lv) for lv in tiny.pyramid_channels) == 4
    assert tiny.estimator_widths[0] == (6, 6, 5, 4, 4)
    with pytest.raises(ValueError, match="width_multiplier"):
        PWCConfig().scaled(0)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"correlation": "fancy"}, "correlation"),
        ({"input_mode": "bmode"}, "input_mode"),
        ({"estimator_levels": (1, 3)}, "strictly decreasing"),
        ({"estimator_levels": (7,)}, "pyramid levels"),
        ({"search_radii": ((4, 2),) * 3}, "search_radii"),
        ({"estimator_widths": ((8,),) * 2}, "estimator_widths"),
        ({"pyramid_channels": (16, 0, 8)}, "pyramid_channels"),
        ({"full_res_levels": 0}, "full_res_levels"),
        ({"context_widths": (8, 8), "context_dilations": (1,)}, "differ in length"),
        ({"leaky_slope": 1.5}, "leaky_slope"),
        ({"dense": 1}, "dense"),
        ({"in_channels": 1.0}, "in_channels"),
        ({"cost_windows": ((3, 3),) * 2}, "cost_windows"),
        ({"cost_windows": (4, 3)}, "cost_windows"),
        ({"cost_windows": (3, 0)}, "cost_windows"),
        ({"cost_windows": 3}, "cost_windows"),
    ],
)
def test_invalid_configs_are_rejected(changes, match):
    with pytest.raises(ValueError, match=match):
        PWCConfig(**changes)


def test_from_dict_rejects_unknown_keys():
    data = PWCConfig().to_dict()
    data["pyramid_chanels"] = [8]
    with pytest.raises(ValueError, match="unknown keys"):
        PWCConfig.from_dict(data)


def test_cost_windows_shorthand_round_trip_and_unchanged_keys():
    cfg = PWCConfig(cost_windows=(5, 3))
    assert cfg.cost_windows == ((5, 3),) * 5
    assert cfg.cost_window(4) == (5, 3)
    assert PWCConfig.from_dict(cfg.to_dict()) == cfg
    plain = PWCConfig()
    assert plain.cost_window(0) == (1, 1)
    # a config without windows hashes into artifact keys exactly as before the field existed
    assert "cost_windows" not in plain.to_dict()
    assert PWCConfig.from_dict(plain.to_dict()) == plain
    assert PWCConfig(cost_windows=(1, 1)) == plain  # windows of one pixel are no windows: same network, same key
