"""Training recipes: what the notebooks train, as cached artifacts keyed by their settings."""

from .adaptation import AdaptationRecipe, RealPairCrops, ensure_adapted, frames_fingerprint
from .students import (
    CDPKDRecipe,
    DPNetRecipe,
    StudentBudget,
    cost_report,
    ensure_cdp_kdnet,
    ensure_dpnet,
    one_shot_prune,
    read_student_report,
    train_cdp_kdnet,
    train_dpnet,
)
from .teacher import (
    TEACHER_PARAMETERS,
    ensure_refined,
    ensure_teacher,
    final_teacher_loss,
    refine_stages,
    refinement_recipe,
    teacher_base_recipe,
)
from .unsupervised import (
    UnsupervisedRecipe,
    ensure_unsupervised_model,
    load_trained,
    train_unsupervised,
)

__all__ = [
    "AdaptationRecipe",
    "RealPairCrops",
    "ensure_adapted",
    "frames_fingerprint",
    "CDPKDRecipe",
    "DPNetRecipe",
    "StudentBudget",
    "UnsupervisedRecipe",
    "cost_report",
    "ensure_cdp_kdnet",
    "ensure_dpnet",
    "TEACHER_PARAMETERS",
    "ensure_refined",
    "ensure_teacher",
    "final_teacher_loss",
    "refine_stages",
    "refinement_recipe",
    "teacher_base_recipe",
    "ensure_unsupervised_model",
    "load_trained",
    "one_shot_prune",
    "read_student_report",
    "train_cdp_kdnet",
    "train_dpnet",
    "train_unsupervised",
]
