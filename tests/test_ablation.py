"""Ablation plan, variant recipes and the mean ± std summaries (training is covered by notebook 04's smoke run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cdpkd.ablation import (
    DISTILLATION_METHODS,
    OURS,
    Variant,
    ablation_plan,
    budget_variants,
    distinct,
    mean_std_strings,
    summarize,
    variant_recipe,
)
from cdpkd.models import build_model, count_parameters
from cdpkd.recipes import CDPKDRecipe, DPNetRecipe, UnsupervisedRecipe

BUDGET = (0.4, 0.5)


def _bases():
    student = dict(
        budget={"params_fraction": 0.4, "flops_fraction": 0.5, "min_channels": 2}, crop=(64, 32), steps=10
    )
    return {
        "cdp_kdnet": CDPKDRecipe(**student),
        "dpnet": DPNetRecipe(**student),
        "baseline": UnsupervisedRecipe(model="usenet_smoke", crop=(64, 32), steps=10),
    }


def test_plan_shares_ours_and_changes_one_thing_per_variant():
    plan = ablation_plan(BUDGET, criteria=("taylor", "l1"), pacings=("root", "linear", "geometric"))
    assert set(plan) == {"components", "distillation", "criterion", "pacing"}
    for variants in plan.values():
        assert variants[0].name == OURS and variants[0].changes == {}
    assert [v.name for v in plan["criterion"]] == [OURS, "criterion: l1"]  # ours (taylor) is not repeated
    assert [v.name for v in plan["pacing"]] == [OURS, "pacing: linear", "pacing: geometric"]
    assert len(plan["distillation"]) == 1 + len(DISTILLATION_METHODS)
    names = [v.name for v in distinct(plan)]
    assert len(names) == len(set(names)) == 4 + len(DISTILLATION_METHODS) + 1 + 2


def test_variant_recipes_apply_the_change_and_the_seed():
    bases = _bases()
    plan = ablation_plan(BUDGET)
    by_name = {v.name: v for v in distinct(plan)}
    ours = variant_recipe(by_name[OURS], 3, bases)
    assert ours.seed == 3 and ours.to_dict() == {**bases["cdp_kdnet"].to_dict(), "seed": 3}
    static = variant_recipe(by_name["static pruning"], 0, bases)
    assert static.prune_steps == (0, 1)  # channels chosen once, after the first batch
    no_kd = variant_recipe(by_name["no distillation"], 0, bases)
    assert not no_kd.distills and ours.distills
    assert not variant_recipe(by_name["no curriculum"], 0, bases).curriculum
    output_only = variant_recipe(by_name["KD: output-only"], 0, bases)
    assert output_only.distiller == "output" and output_only.distiller_options == {"include_levels": False}
    assert variant_recipe(by_name["KD: MAVKD"], 0, bases).distiller == "mavkd"


def test_budget_variants_keep_the_other_budget_fields_and_size_the_baselines():
    bases = _bases()
    teacher_params = count_parameters(build_model("umen_teacher_smoke"))
    variants = budget_variants(BUDGET, [[0.4, 0.5], [0.6, 0.7]], ["usenet_smoke"], teacher_params)
    names = [v.name for v in variants]
    assert names == [
        OURS,
        "DP-Net @ 40/50 %",
        "CDP-KDNet @ 60/70 %",
        "DP-Net @ 60/70 %",
        "usenet_smoke @ 40 %",
        "usenet_smoke @ 60 %",
    ]
    only = budget_variants(BUDGET, [[0.4, 0.5], [0.6, 0.7]], ["usenet_smoke"], teacher_params, [0.4])
    assert [v.name for v in only][-1:] == ["usenet_smoke @ 40 %"] and len(only) == 5
    dp = variant_recipe(variants[3], 1, bases)
    assert (dp.budget.params_fraction, dp.budget.flops_fraction, dp.budget.min_channels) == (0.6, 0.7, 2)
    baseline = variant_recipe(variants[5], 0, bases)
    params = count_parameters(build_model(baseline.model_config()))
    assert params <= 0.6 * teacher_params and params > count_parameters(
        build_model(variant_recipe(variants[4], 0, bases).model_config())
    )
    with pytest.raises(ValueError, match="teacher_params"):
        budget_variants(BUDGET, [[0.4, 0.5]], ["usenet_smoke"])


def test_variant_errors():
    with pytest.raises(ValueError, match="kind"):
        Variant("x", "teacher")
    with pytest.raises(ValueError, match="seed"):
        Variant("x", "dpnet", {"seed": 1})
    with pytest.raises(ValueError, match="unknown distillation"):
        ablation_plan(BUDGET, distillers=("nope",))
    with pytest.raises(ValueError, match="two different variants"):
        distinct({"a": [Variant("x", "dpnet")], "b": [Variant("x", "dpnet", {"steps": 3})]})
    with pytest.raises(ValueError, match="no base recipe"):
        variant_recipe(Variant("x", "dpnet"), 0, {})
    with pytest.raises(ValueError, match="unknown"):  # a typo in a changed field fails at the recipe
        variant_recipe(Variant("x", "cdp_kdnet", {"distiller": "nope"}), 0, _bases())


def test_summarize_mean_std_over_seeds():
    results = pd.DataFrame(
        {
            "variant": ["a", "a", "b", "b", "b"],
            "seed": [0, 1, 0, 1, 2],
            "params": [10.0, 10.0, 5.0, 5.0, 5.0],
            "flops": [1.0, 1.0, 0.5, 0.5, 0.5],
            "strain_rmse": [1.0, 3.0, 2.0, 2.0, 5.0],
            "snre": [4.0, 4.0, 1.0, 2.0, 3.0],
        }
    )
    table = summarize(
        results, [Variant("b", "dpnet"), Variant("a", "dpnet")], metrics=("strain_rmse", "snre")
    )
    assert list(table.index) == ["b", "a"]
    assert table.loc["a", "strain_rmse"] == 2.0 and table.loc["a", "strain_rmse_std"] == pytest.approx(
        np.sqrt(2)
    )
    assert table.loc["b", "snre"] == 2.0 and table.loc["b", "snre_std"] == pytest.approx(1.0)
    assert table.loc["b", "seeds"] == 3 and table.loc["a", "params"] == 10.0
    strings = mean_std_strings(table, ("strain_rmse",))
    assert strings.loc["a", "strain_rmse"] == "2 ± 1.41"
    one = summarize(results[results["seed"] == 2], metrics=("snre",))
    assert np.isnan(one.loc["b", "snre_std"]) and mean_std_strings(one, ("snre",)).loc["b", "snre"] == "3"
    with pytest.raises(ValueError, match="no results for"):
        summarize(results, [Variant("c", "dpnet")], metrics=("snre",))
    with pytest.raises(ValueError, match="not in the results"):
        summarize(results, metrics=("cnr_db",))
