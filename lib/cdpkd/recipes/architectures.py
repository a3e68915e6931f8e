"""The networks a profile trains, as architectures with random weights (for costs: parameters,
FLOPs, latency, profiles), built from the notebooks' parameters without training anything."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..models import build_model, count_parameters, get_config
from ..models.scaling import overrides_for_parameters
from ..pipeline import NOTEBOOK_DIR, load_profile, resolved_parameters
from .student_parameters import student_settings
from .students import StudentBudget, one_shot_prune
from .teacher import teacher_stage_recipes

STUDENT_LABEL = "dpnet / cdp_kdnet (pruned widths)"


def profile_networks(
    profile_name: str, multiple_of: int | None = None
) -> tuple[dict[str, nn.Module], tuple[int, int], dict[str, Any]]:
    """Teacher, budget-pruned student and budget-sized baselines of a profile (random weights).

    The teacher is its last stage's architecture (refinement head included, where the profile
    adds one). DP-Net and CDP-KDNet have exactly the student's per-layer widths (both come from
    the same joint budget allocation; only *which* channels survive depends on the weights).
    ``multiple_of``: the student's widths rounded to multiples of it; None = the profile's own
    ``student_width_multiple`` (the student is then labelled :data:`STUDENT_LABEL`; another value
    gives a student the profile does not train, labelled by its multiple).

    Returns:
        ``({name: network}, training crop (samples, lines), settings for a result file)``.
    """
    teacher_recipe = teacher_stage_recipes(resolved_parameters(profile_name, NOTEBOOK_DIR / "01_teacher.ipynb"))[-1]
    crop = teacher_recipe.crop
    teacher = build_model(teacher_recipe.model_config(), seed=0)
    students = resolved_parameters(profile_name, NOTEBOOK_DIR / "02_dpnet.ipynb")
    profile_multiple = students["student_width_multiple"]
    multiple_of = profile_multiple if multiple_of is None else multiple_of
    budget = StudentBudget(**{**student_settings(students)["budget"], "multiple_of": multiple_of})
    student, report = one_shot_prune(teacher, budget, crop)
    label = STUDENT_LABEL if multiple_of == profile_multiple else f"student, widths multiple of {multiple_of}"
    networks = {"teacher": teacher, label: student}
    for name in load_profile(profile_name).common.get("baselines", []):
        overrides, _ = overrides_for_parameters(name, int(budget.params_fraction * count_parameters(teacher)))
        networks[name] = build_model(get_config(name).replace(**overrides), seed=0)
    settings = {
        "teacher_model": teacher_recipe.model,
        "teacher_model_overrides": teacher_recipe.model_overrides,
        "budget": {"params_fraction": budget.params_fraction, "flops_fraction": budget.flops_fraction},
        "student_fractions_at_crop": {k: report[k] for k in ("params_fraction", "flops_fraction")},
        "student_width_multiple": multiple_of,
        "profile_width_multiple": profile_multiple,
        "tile": list(crop),
    }
    return networks, crop, settings
