"""The efficiency benchmark measures architectures with random weights: that is only honest if the
students' widths do not depend on the weights nor on the pruning road (one-shot vs dynamic)."""

from __future__ import annotations

import pytest

from cdpkd.compress import ChannelMap, DynamicPruning
from cdpkd.models import build_model, count_parameters
from cdpkd.pipeline import PipelineError, load_profile
from cdpkd.recipes import StudentBudget, one_shot_prune
from cdpkd.recipes.architectures import profile_networks

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
    with pytest.raises(SystemExit):
        module.main(["--tiles", "plain", "--whole-frame"])
    assert "exclude each other" in capsys.readouterr().err


def test_benchmark_can_round_the_students_widths_within_the_budget():
    networks, _, settings = profile_networks("cpu", multiple_of=16)
    teacher_widths = ChannelMap.from_model(networks["teacher"]).widths()
    student = networks["student, widths multiple of 16"]
    floor = load_profile("cpu").common["min_channels"]
    widths = ChannelMap.from_model(student).widths()
    for name, width in widths.items():  # rounded, unless kept whole or at the floor
        assert width % 16 == 0 or width in (teacher_widths[name], floor), (name, width)
    assert sum(w % 16 == 0 for w in widths.values()) > len(widths) // 2
    fractions = settings["student_fractions_at_crop"]
    assert fractions["params_fraction"] <= settings["budget"]["params_fraction"] + 1e-9
    assert fractions["flops_fraction"] <= settings["budget"]["flops_fraction"] + 1e-9
    assert settings["student_width_multiple"] == 16
