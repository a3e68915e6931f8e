"""Importance criteria and mask selection for a target pruning ratio."""

from __future__ import annotations

import pytest
import torch

from cdpkd.compress import (
    ChannelMap,
    filter_norm_scores,
    importance_scores,
    normalize_scores,
    select,
    select_counts,
    taylor_scores,
)
from cdpkd.models import build_model


def _scores():
    return {
        "a": torch.tensor([0.1, 5.0, 3.0, 0.2]),  # mean 2.075
        "b": torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0, 60.0]),  # mean 35
    }


def _batches(n=2):
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        pre = torch.randn(1, 1, 16, 12, generator=g)
        yield pre, torch.roll(pre, 1, dims=-2)


def _loss(pre, post, out):
    return {"total": sum((lv**2).mean() for lv in out["levels"])}


def test_filter_norms_match_weights():
    model = build_model("umen_teacher_smoke", seed=0)
    cmap = ChannelMap.from_model(model)
    l1 = filter_norm_scores(model, cmap, p=1)
    l2 = importance_scores(model, "l2")
    assert set(l1) == set(cmap.prunable)
    w = model.get_submodule("estimators.1.convs.0").weight.detach().double()
    torch.testing.assert_close(l1["estimators.1.convs.0"], w.abs().sum(dim=(1, 2, 3)))
    torch.testing.assert_close(l2["estimators.1.convs.0"], w.pow(2).sum(dim=(1, 2, 3)).sqrt())


def test_taylor_scores_leave_parameters_alone():
    model = build_model("umen_teacher_smoke", seed=0)
    scores = importance_scores(model, "taylor", batches=_batches(), loss_fn=_loss)
    assert set(scores) == set(ChannelMap.from_model(model).prunable)
    assert all(bool(torch.isfinite(s).all()) and bool((s >= 0).all()) for s in scores.values())
    assert sum(float(s.sum()) for s in scores.values()) > 0
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed
    again = taylor_scores(model, list(_batches()), _loss)
    for n in scores:
        torch.testing.assert_close(again[n], scores[n])


def test_select_per_layer():
    masks = select(_scores(), 0.5, scope="per_layer")
    assert masks["a"].tolist() == [0, 1, 1, 0]
    assert masks["b"].tolist() == [0, 0, 0, 1, 1, 1]
    masks = select(_scores(), 0.5, scope="per_layer", min_channels=3)
    assert masks["a"].tolist() == [0, 1, 1, 1] and int(masks["b"].sum()) == 3
    assert all(m.sum() == m.numel() for m in select(_scores(), 0.0, scope="per_layer").values())


def test_select_global_normalises_layers():
    # mean-normalised: a -> [0.05, 2.4, 1.45, 0.1]; b -> [0.29, 0.57, 0.86, 1.14, 1.43, 1.71]
    masks = select(_scores(), 0.4, scope="global")  # prune floor(0.4 * 10) = 4
    assert masks["a"].tolist() == [0, 1, 1, 0]
    assert masks["b"].tolist() == [0, 0, 1, 1, 1, 1]
    raw = select(_scores(), 0.4, scope="global", normalize="none")  # raw scores: all of layer a goes first
    assert raw["a"].tolist() == [0, 1, 0, 0]  # min_channels=1 keeps the best one
    assert raw["b"].tolist() == [0, 1, 1, 1, 1, 1]
    normed = normalize_scores(_scores(), "max")
    assert float(normed["b"].max()) == 1.0


def test_select_counts_and_ties():
    masks = select_counts({"a": torch.tensor([1.0, 1.0, 1.0, 0.0])}, {"a": 2})
    assert masks["a"].tolist() == [1, 1, 0, 0]  # ties: lower index kept
    with pytest.raises(ValueError, match="keep"):
        select_counts(_scores(), {"a": 0})
    with pytest.raises(ValueError, match="without scores"):
        select_counts(_scores(), {"c": 1})


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan"), True, "0.5", None])
def test_select_rejects_bad_ratio(ratio):
    with pytest.raises(ValueError, match="ratio"):
        select(_scores(), ratio)


def test_bad_arguments_raise_value_error():
    model = build_model("umen_teacher_smoke", seed=0)
    with pytest.raises(ValueError, match="criterion"):
        importance_scores(model, "random")
    with pytest.raises(ValueError, match="needs batches"):
        importance_scores(model, "taylor")
    with pytest.raises(ValueError, match="empty"):
        taylor_scores(model, [], _loss)
    with pytest.raises(ValueError, match="scope"):
        select(_scores(), 0.5, scope="layer")
    with pytest.raises(ValueError, match="min_channels"):
        select(_scores(), 0.5, min_channels=0)
    with pytest.raises(ValueError, match="normalization"):
        select(_scores(), 0.5, normalize="z")
    with pytest.raises(ValueError, match="NaN"):
        select({"a": torch.tensor([1.0, float("nan")])}, 0.5)
    with pytest.raises(ValueError, match="1-D"):
        select({"a": torch.ones(2, 2)}, 0.5)
    with pytest.raises(ValueError, match="order"):
        filter_norm_scores(model, p=3)
