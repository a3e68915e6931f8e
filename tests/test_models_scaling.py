"""Width scaling of registered configs (budget sweeps of the baselines)."""

from __future__ import annotations

import dataclasses

import pytest

from cdpkd.models import build_model, count_parameters, get_config, overrides_for_parameters, width_overrides
from cdpkd.recipes import UnsupervisedRecipe


@pytest.mark.parametrize("name", ["usenet_smoke", "dpunet_smoke", "dspwc_smoke", "umen_teacher_smoke"])
def test_width_overrides_scale_parameters_monotonically(name):
    config = get_config(name)
    counts = [
        count_parameters(build_model(dataclasses.replace(config, **width_overrides(config, m))))
        for m in (1, 2, 3)
    ]
    assert counts[0] == count_parameters(build_model(config))  # x1 is the registered network
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize("name", ["usenet_cpu", "dpunet_cpu", "dspwc_cpu"])
def test_overrides_for_parameters_lands_just_below_the_target(name):
    target = 500_000
    overrides, found = overrides_for_parameters(name, target)
    assert 0.97 * target <= found <= target
    # the overrides are what a recipe stores (plain JSON values) and rebuild the same network
    recipe = UnsupervisedRecipe(model=name, model_overrides=overrides)
    assert count_parameters(build_model(recipe.model_config())) == found


def test_scaling_errors():
    with pytest.raises(ValueError, match="narrowest"):
        overrides_for_parameters("dspwc_smoke", 100)
    with pytest.raises(ValueError, match="positive integer"):
        overrides_for_parameters("usenet_smoke", 0)
    with pytest.raises(ValueError, match="width_multiplier"):
        width_overrides(get_config("usenet_smoke"), -1.0)
    with pytest.raises(TypeError, match="no width scaling"):
        width_overrides(object(), 1.0)
