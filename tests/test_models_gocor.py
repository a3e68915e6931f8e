"""GOCor-style optimized correspondence volume: adjoint, K=0 limit, descent, gradients."""

from __future__ import annotations

import pytest
import torch

from cdpkd.models import GOCorrelation, build_model, transposed_correlation
from cdpkd.ops import correlation


def _feats(seed: int, shape=(2, 5, 9, 7), dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype)


def test_transposed_correlation_is_the_adjoint():
    a, f = _feats(0), _feats(1)
    r = torch.randn(2, 15, 9, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    lhs = (correlation(a, f, 2, 1) * r).sum()
    rhs = (a * transposed_correlation(r, f, 2, 1)).sum()
    torch.testing.assert_close(lhs, rhs)
    with pytest.raises(ValueError, match="N x D x H x W"):
        transposed_correlation(r[:, :3], f, 2, 1)


def test_zero_steps_equal_plain_correlation():
    f1, f2 = _feats(3, dtype=torch.float32), _feats(4, dtype=torch.float32)
    vol = GOCorrelation(3, 1, num_steps=0)(f1, f2)
    torch.testing.assert_close(vol, correlation(f1, f2, 3, 1))


def test_output_shape_and_dtype():
    f1, f2 = _feats(5, dtype=torch.float32), _feats(6, dtype=torch.float32)
    vol = GOCorrelation(2, 1, num_steps=3)(f1, f2)
    assert vol.shape == (2, 15, 9, 7) and vol.dtype == torch.float32
    assert torch.isfinite(vol).all()


def test_closed_form_gradient_matches_autograd():
    gc = GOCorrelation(2, 1).double()
    f1, w = _feats(7), _feats(8).requires_grad_(True)
    (auto,) = torch.autograd.grad(gc.objective(w, f1).sum(), w)
    torch.testing.assert_close(gc.gradient(w.detach(), f1), auto)


def test_steps_decrease_the_objective_per_pixel():
    gc = GOCorrelation(3, 2).double()
    f1 = _feats(9)
    with torch.no_grad():
        w = f1
        losses = [gc.objective(w, f1)]
        for _ in range(4):
            w = gc.step(w, f1)
            losses.append(gc.objective(w, f1))
    for before, after in zip(losses, losses[1:]):
        assert (after <= before + 1e-12).all()
    assert losses[-1].sum() < 0.5 * losses[0].sum()


def test_exact_line_search_is_optimal_along_the_gradient():
    gc = GOCorrelation(2, 1).double()
    f1 = _feats(10)
    with torch.no_grad():
        w1 = gc.step(f1, f1)
        g = gc.gradient(f1, f1)
        best = gc.objective(w1, f1)
        for eps in (-0.05, 0.05):  # move the step length a little either way
            other = gc.objective(w1 + eps * (w1 - f1), f1)
            assert (other >= best - 1e-12).all()
        # at the line minimum the new gradient is orthogonal to the search direction
        dot = (gc.gradient(w1, f1) * g).sum(1)
        assert dot.abs().max() < 1e-8 * (g * g).sum(1).max()


def test_gradients_flow_to_features_and_parameters():
    gc = GOCorrelation(2, 1, num_steps=2)
    f1 = _feats(11, dtype=torch.float32).requires_grad_(True)
    f2 = _feats(12, dtype=torch.float32).requires_grad_(True)
    gc(f1, f2).square().mean().backward()
    for name, t in [("f1", f1), ("f2", f2), *gc.named_parameters()]:
        assert t.grad is not None, name
        assert torch.isfinite(t.grad).all(), name
        assert t.grad.abs().sum() > 0, name


def test_gocor_network_trains_a_step():
    cfg = build_model("umen_teacher_smoke").config.replace(correlation="gocor", gocor_steps=2)
    model = build_model(cfg, seed=0)
    pre = torch.randn(1, 1, 24, 12, generator=torch.Generator().manual_seed(0))
    out = model(pre, pre.roll(1, dims=-2))
    out["displacement"].square().mean().backward()
    params = dict(model.named_parameters())
    assert params["cost_volumes.1.target_bins"].grad.abs().sum() > 0
    # the window basis is derived from the radii, so it is not saved in the state_dict
    assert not any("basis" in k for k in model.state_dict())
