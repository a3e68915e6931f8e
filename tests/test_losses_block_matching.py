"""The block-matching consistency term: it measures how far a field is from the windowed NCC peak
around it, pulls it there, and joins the combined loss only when asked."""

from __future__ import annotations

import pytest
import torch
from test_losses_unsupervised import rf_pair

from cdpkd.losses import UnsupervisedLoss, UnsupervisedLossConfig
from cdpkd.losses.unsupervised import TERMS, block_matching_consistency

SHIFT = 2.37  # samples: integer and sub-sample parts both matter




@pytest.fixture(scope="module")
def pair():
    return rf_pair(SHIFT, n_samples=256, n_lines=24)


def _uniform(axial: float, h: int = 256, w: int = 24) -> torch.Tensor:
    disp = torch.zeros(1, 2, h, w)
    disp[:, 0] = axial
    return disp.requires_grad_(True)


def test_small_at_the_true_shift_and_at_least_the_squared_error_away_from_it(pair):
    """The lateral offset is part of the term: a wrong axial field also moves the lateral peak of
    anisotropic speckle (here by ~0.2 lines RMS at 0.3 samples off, more further away), so away from the truth the term
    is the axial error squared plus a lateral part."""
    pre, post = pair
    assert block_matching_consistency(pre, post, _uniform(SHIFT)).item() < 0.045**2
    for error in (-0.6, -0.3, 0.25, 0.5):
        value = block_matching_consistency(pre, post, _uniform(SHIFT + error)).item()
        assert 0.9 * error**2 < value < error**2 + 0.1, error


@pytest.mark.parametrize("error", [-0.4, 0.3])
def test_the_gradient_pulls_each_pixel_toward_the_peak(pair, error):
    pre, post = pair
    disp = _uniform(SHIFT + error)
    block_matching_consistency(pre, post, disp).backward()
    axial = disp.grad[0, 0]
    inside = axial[30:-30, 6:-6]
    assert (torch.sign(inside) == torch.sign(torch.tensor(error))).float().mean() > 0.95
    # no gradient where the window is not wholly inside the frame (rows within 41 // 2 + 3 of an edge)
    assert axial[:23].abs().max() == 0 and axial[-23:].abs().max() == 0


def test_the_peak_is_not_differentiated(pair):
    """Only the field's own value carries the gradient: -2 w o / sum(w) per pixel, o the measured
    offset, so the axial gradient sums to twice the error (o = -error everywhere it counts)."""
    pre, post = pair
    disp = _uniform(SHIFT + 0.3)
    block_matching_consistency(pre, post, disp).backward()
    assert disp.grad[0, 0].sum().item() == pytest.approx(2 * 0.3, rel=0.05)


def test_joins_the_combined_loss_only_when_weighted(pair):
    pre, post = pair
    outputs = {"displacement": _uniform(SHIFT + 0.2)}
    plain = UnsupervisedLoss()(pre, post, outputs)
    assert "block_matching" not in plain and set(TERMS) <= set(plain)
    weighted = UnsupervisedLoss(block_matching_weight=3.0)(pre, post, outputs)
    alone = block_matching_consistency(pre, post, outputs["displacement"])
    assert torch.isclose(weighted["block_matching"], alone)
    assert torch.isclose(weighted["total"], plain["total"] + 3.0 * alone)
    for term in TERMS:
        assert torch.equal(weighted[term], plain[term]), term


def test_config_round_trip_and_validation():
    cfg = UnsupervisedLossConfig(block_matching_weight=2.0, block_matching_window=[31, 5], block_matching_radius=[2, 1])
    assert cfg.block_matching_window == (31, 5) and cfg.block_matching_radius == (2, 1)
    assert UnsupervisedLossConfig.from_json(cfg.to_json()) == cfg
    for bad in ({"block_matching_weight": -1.0}, {"block_matching_window": (40, 9)}, {"block_matching_radius": (0, 1)}):
        with pytest.raises(ValueError):
            UnsupervisedLossConfig(**bad)


def test_bad_inputs_fail_clearly(pair):
    pre, post = pair
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        block_matching_consistency(pre.repeat(1, 2, 1, 1), post.repeat(1, 2, 1, 1), _uniform(0.0))
    with pytest.raises(ValueError, match="too small"):
        block_matching_consistency(pre[..., :40, :], post[..., :40, :], _uniform(0.0, 40))
    with pytest.raises(ValueError, match="interpolation"):
        block_matching_consistency(pre, post, _uniform(0.0), interpolation="nearest")
    with pytest.raises(ValueError, match="radius"):
        block_matching_consistency(pre, post, _uniform(0.0), radius=(0, 1))


def test_a_smoothed_guide_penalises_jitter_below_the_window(pair):
    """Warped by the field itself, the peak offset o is a window mean and the target d + o keeps the
    field's sub-window jitter; warped by the field's box mean g, the target g + o is the window's
    answer, so each pixel pays its own error."""
    pre, post = pair
    disp = _uniform(SHIFT).detach()
    disp[:, 0, ::2] += 0.2  # rows alternate truth + 0.2 / truth: window mean error +0.1
    raw = block_matching_consistency(pre, post, disp).item()
    smoothed = block_matching_consistency(pre, post, disp, guide_smoothing=(61, 9)).item()
    # (window mean error)^2 and the mean of the pixels' squared errors, each + a lateral part
    assert 0.1**2 * 0.9 < raw < 0.1**2 + 0.008
    assert (0.2**2 + 0) / 2 * 0.9 < smoothed < (0.2**2 + 0) / 2 + 0.01
    assert smoothed > 1.3 * raw
    uniform = _uniform(SHIFT + 0.3)
    assert block_matching_consistency(pre, post, uniform, guide_smoothing=(61, 9)).item() == pytest.approx(
        block_matching_consistency(pre, post, uniform).item(), rel=1e-4)
