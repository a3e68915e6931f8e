"""The efficiency benchmark measures architectures with random weights: that is only honest if the
students' widths do not depend on the weights nor on the pruning road (one-shot vs dynamic)."""

from __future__ import annotations

import json

import pytest

from cdpkd.compress import ChannelMap, DynamicPruning
from cdpkd.models import build_model, count_parameters
from cdpkd.pipeline import PipelineError, load_profile
from cdpkd.recipes import StudentBudget, one_shot_prune
from cdpkd.recipes.architectures import STUDENT_LABEL, profile_networks

CROP = (128, 32)


@pytest.mark.parametrize("multiple_of", [1, 4])
def test_pruned_widths_depend_on_the_budget_only(multiple_of):
    budget = StudentBudget(0.4, 0.5, 2, multiple_of)
    a, _ = one_shot_prune(build_model("umen_teacher_smoke", seed=0), budget, CROP)
    b, _ = one_shot_prune(build_model("umen_teacher_smoke", seed=1), budget, CROP, criterion="l2")
    widths = ChannelMap.from_model(a).widths()
    assert widths == ChannelMap.from_model(b).widths()  # other weights, other criterion: same widths
    dynamic = DynamicPruning(
        build_model("umen_teacher_smoke", seed=2),
        flops_fraction=budget.flops_fraction,
        params_fraction=budget.params_fraction,
        end_step=1,
        criterion="taylor",
        height=CROP[0],
        width=CROP[1],
        min_channels=budget.min_channels,
        multiple_of=budget.multiple_of,
    )
    final = dynamic._keep_at(1.0)  # where CDP-KDNet's ramp ends
    assert final == {name: widths[name] for name in final}
    if multiple_of > 1:
        full = ChannelMap.from_model(build_model("umen_teacher_smoke", seed=0)).widths()
        assert all(w % multiple_of == 0 or w in (full[n], budget.min_channels) for n, w in widths.items())


def test_benchmark_builds_the_profile_networks_at_the_budget():
    networks, crop, settings = profile_networks("cpu")
    teacher = count_parameters(networks["teacher"])
    # the profile's teacher is its last stage's architecture, refinement head included
    assert settings["teacher_model_overrides"].get("refine_widths"), "the cpu profile's teacher has a head"
    assert any(name.startswith("refine.") for name, _ in networks["teacher"].named_parameters())
    budget = settings["budget"]["params_fraction"]
    assert crop == tuple(settings["tile"])
    for name, net in networks.items():
        if name != "teacher":
            assert count_parameters(net) <= budget * teacher + 1, name
    assert (
        settings["student_fractions_at_crop"]["flops_fraction"]
        <= settings["budget"]["flops_fraction"] + 1e-12
    )
    with pytest.raises(PipelineError, match="unknown profile"):
        profile_networks("no_such_profile")


def test_benchmark_refuses_tiles_with_whole_frame(capsys, load_benchmark):
    module = load_benchmark("efficiency")
    for args in (["--tiles", "plain"], ["--tile", "512", "128"], ["--overlap", "0.25"]):
        with pytest.raises(SystemExit):
            module.main([*args, "--whole-frame"])
        assert "not with --whole-frame" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        module.main(["--overlap", "1.0"])
    assert "--overlap must be in [0, 1)" in capsys.readouterr().err


@pytest.mark.parametrize("multiple_of", [None, 1])
def test_benchmark_builds_the_profiles_or_other_rounded_widths_within_the_budget(multiple_of):
    networks, _, settings = profile_networks("cpu", multiple_of=multiple_of)
    profile_multiple = load_profile("cpu").common["student_width_multiple"]
    assert settings["profile_width_multiple"] == profile_multiple > 1, "the cpu profile rounds its students"
    multiple = profile_multiple if multiple_of is None else multiple_of
    assert settings["student_width_multiple"] == multiple
    # the profile's own student carries the students' label; another multiple is labelled by it
    label = STUDENT_LABEL if multiple == profile_multiple else f"student, widths multiple of {multiple}"
    assert set(networks) == {"teacher", label, *load_profile("cpu").common["baselines"]}
    teacher_widths = ChannelMap.from_model(networks["teacher"]).widths()
    widths = ChannelMap.from_model(networks[label]).widths()
    floor = load_profile("cpu").common["min_channels"]
    rounded = [w % multiple == 0 or w in (teacher_widths[n], floor) for n, w in widths.items()]
    assert all(rounded) and sum(w % multiple == 0 for w in widths.values()) > len(widths) // 2
    if multiple == 1:  # unrounded: some layer keeps a count no 16-channel block divides
        assert any(w % 16 for w in widths.values())
    fractions = settings["student_fractions_at_crop"]
    assert fractions["params_fraction"] <= settings["budget"]["params_fraction"] + 1e-9
    assert fractions["flops_fraction"] <= settings["budget"]["flops_fraction"] + 1e-9


def test_benchmark_times_the_notebooks_tiles_by_default(tmp_path, monkeypatch, load_benchmark):
    """Without ``--tile`` the benchmark tiles as the notebooks do under the profile (``tile_samples``
    and ``guide_pass`` included), and names only other tiles in its file name."""
    module = load_benchmark("efficiency")
    notebook_parameters = module.resolved_parameters

    def deeper(profile, notebook):
        return {**notebook_parameters(profile, notebook), "tile_samples": 192, "guide_pass": "whole"}

    monkeypatch.setattr(module, "resolved_parameters", deeper)
    common = ["--profile", "smoke", "--samples", "256", "--lines", "48", "--repeats", "1",
              "--cpu-timing", "off", "--gpu", "off"]
    assert module.main([*common, "--out", str(tmp_path / "default")]) == 0
    (default,) = (tmp_path / "default").glob("*.json")
    result = json.loads(default.read_text())
    assert result["tile"] == [192, 32] and result["guide_pass"] == "whole"
    assert "_tile" not in default.name
    assert module.main([*common, "--tile", "128", "32", "--out", str(tmp_path / "other")]) == 0
    (other,) = (tmp_path / "other").glob("*.json")
    assert json.loads(other.read_text())["tile"] == [128, 32] and "_tile128x32" in other.name
