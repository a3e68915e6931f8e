"""Training recipes: what the notebooks train, as cached artifacts keyed by their settings."""

from .unsupervised import UnsupervisedRecipe, ensure_unsupervised_model, load_trained, train_unsupervised

__all__ = ["UnsupervisedRecipe", "ensure_unsupervised_model", "load_trained", "train_unsupervised"]
