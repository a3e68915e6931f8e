"""Random phantoms: validity, determinism, labels, bad input."""

import numpy as np
import pytest

from cdpkd.sim import Inclusion, Phantom, PhantomSpec, random_phantom

DEPTH, WIDTH = 30e-3, 25e-3


def test_same_seed_same_phantom_and_ranges_respected():
    spec = PhantomSpec()
    for seed in range(20):
        a = random_phantom(np.random.default_rng(seed), DEPTH, WIDTH, spec)
        b = random_phantom(np.random.default_rng(seed), DEPTH, WIDTH, spec)
        assert a.inclusions == b.inclusions
        assert np.array_equal(a.background_log_field, b.background_log_field)
        assert spec.n_inclusions[0] <= len(a.inclusions) <= spec.n_inclusions[1]
        for inc in a.inclusions:
            r = inc.stiffness_ratio
            assert 0.2 <= r <= 5.0 and (r <= 1 / 1.5 or r >= 1.5)
            assert inc.max_semi_axis_m <= inc.center_z_m <= DEPTH - inc.max_semi_axis_m


def test_soft_and_hard_inclusions_both_occur():
    ratios = [
        inc.stiffness_ratio
        for s in range(30)
        for inc in random_phantom(np.random.default_rng(s), DEPTH, WIDTH, PhantomSpec(n_inclusions=(1, 3))).inclusions
    ]
    assert any(r < 1 for r in ratios) and any(r > 1 for r in ratios)


def test_stiffness_and_labels_of_a_known_inclusion():
    inc = Inclusion(15e-3, 12e-3, 4e-3, 3e-3, stiffness_ratio=3.0)
    ph = Phantom(DEPTH, WIDTH, (inc,))
    assert ph.stiffness(np.array(15e-3), np.array(12e-3)) == pytest.approx(3.0, rel=1e-6)
    assert ph.stiffness(np.array(2e-3), np.array(2e-3)) == pytest.approx(1.0, rel=1e-6)
    zz, xx = np.meshgrid(np.linspace(0, DEPTH, 300), np.linspace(0, WIDTH, 250), indexing="ij")
    labels = ph.labels(zz, xx)
    assert set(np.unique(labels)) == {0, 1, 255}
    area = (labels == 1).mean() * DEPTH * WIDTH
    # core of the ellipse minus the 0.5 mm edge band
    assert np.pi * 3.5e-3 * 2.5e-3 * 0.85 < area < np.pi * 4e-3 * 3e-3


def test_inclusion_outside_the_phantom_rejected():
    with pytest.raises(ValueError, match="outside the phantom"):
        Phantom(DEPTH, WIDTH, (Inclusion(40e-3, 10e-3, 2e-3, 2e-3),))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stiffness_ratio": 0.0}, "stiffness_ratio"),
        ({"stiffness_ratio": float("nan")}, "stiffness_ratio"),
        ({"semi_axis_z_m": -1e-3}, "semi_axis_z_m"),
        ({"center_x_m": float("inf")}, "center_x_m"),
    ],
)
def test_bad_inclusion_rejected(kwargs, message):
    args = {"center_z_m": 10e-3, "center_x_m": 10e-3, "semi_axis_z_m": 2e-3, "semi_axis_x_m": 2e-3, **kwargs}
    with pytest.raises(ValueError, match=message):
        Inclusion(**args)


def test_non_finite_heterogeneity_rejected():
    field = np.zeros((4, 4))
    field[1, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        Phantom(DEPTH, WIDTH, background_log_field=field)


@pytest.mark.parametrize(
    "kwargs",
    [{"n_inclusions": (2, 1)}, {"semi_axis_m": (0.0, 1e-3)}, {"stiffness_ratio": (0.8, 1.2)}, {"correlation_m": -1.0}],
)
def test_bad_phantom_spec_rejected(kwargs):
    with pytest.raises(ValueError):
        PhantomSpec(**kwargs)
