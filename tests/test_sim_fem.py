"""FEM known answers: homogeneous compression, plane-strain Poisson effect, inclusions."""

import numpy as np
import pytest

from cdpkd.sim import Compression, ImagingConfig, Inclusion, Phantom, solve_compression

CFG = ImagingConfig(n_samples=512, n_lines=64)


def grid_strains(phantom, compression, **kw):
    sol = solve_compression(phantom, compression, **kw)
    zz, xx = np.meshgrid(CFG.sample_depths_m(), CFG.line_positions_m(), indexing="ij")
    uz, ux = sol.displacement_at(zz, xx)
    return sol, uz, ux, np.gradient(uz, CFG.dz_m, axis=0), np.gradient(ux, CFG.pitch_m, axis=1)


@pytest.mark.parametrize("applied", [0.005, 0.01, 0.03])
def test_homogeneous_block_has_uniform_applied_strain(applied):
    block = Phantom(CFG.depth_m, CFG.width_m)
    _, uz, _, e_zz, e_xx = grid_strains(block, Compression(applied))
    assert np.allclose(e_zz, -applied, rtol=0.01), "axial strain must equal the applied compression"
    # plane strain, free lateral faces: e_xx = -nu / (1 - nu) * e_zz
    nu = 0.495
    assert np.allclose(e_xx, nu / (1 - nu) * applied, rtol=0.01)
    # probe at depth 0 moves deepest, bottom held
    assert uz[0].mean() == pytest.approx(applied * CFG.depth_m, rel=1e-6)
    assert np.abs(uz[-1]).max() < applied * CFG.depth_m * 0.01


def test_poisson_ratio_changes_lateral_strain_as_theory_says():
    block = Phantom(CFG.depth_m, CFG.width_m)
    _, _, _, _, e_xx = grid_strains(block, Compression(0.01), poisson=0.3)
    assert np.allclose(e_xx, 0.3 / 0.7 * 0.01, rtol=0.01)


@pytest.mark.parametrize("ratio, softer", [(0.3, True), (4.0, False)])
def test_inclusion_strain_against_background(ratio, softer):
    inc = Inclusion(CFG.depth_m / 2, CFG.width_m / 2, 2.5e-3, 2.5e-3, stiffness_ratio=ratio)
    phantom = Phantom(CFG.depth_m, CFG.width_m, (inc,))
    _, _, _, e_zz, _ = grid_strains(phantom, Compression(0.01))
    zz, xx = np.meshgrid(CFG.sample_depths_m(), CFG.line_positions_m(), indexing="ij")
    labels = phantom.labels(zz, xx)
    inside, outside = np.abs(e_zz[labels == 1]).mean(), np.abs(e_zz[labels == 0]).mean()
    if softer:
        assert inside > 1.3 * outside, (inside, outside)
    else:
        assert inside < 0.7 * outside, (inside, outside)


def test_bonded_contact_moves_top_with_probe_slip():
    block = Phantom(CFG.depth_m, CFG.width_m)
    slip = 0.1e-3
    _, _, ux, _, _ = grid_strains(block, Compression(0.01, lateral_slip_m=slip, contact="bonded"))
    assert np.allclose(ux[0], slip, atol=1e-9)
    # the last grid row is one sample above the fixed bottom edge
    assert np.abs(ux[-1]).max() < 0.02 * slip


def test_frictionless_slip_is_rigid_translation():
    block = Phantom(CFG.depth_m, CFG.width_m)
    _, _, ux0, _, _ = grid_strains(block, Compression(0.01))
    _, _, ux1, _, _ = grid_strains(block, Compression(0.01, lateral_slip_m=0.05e-3))
    assert np.allclose(ux1 - ux0, 0.05e-3, atol=1e-9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"applied_strain": -0.01}, "applied_strain"),
        ({"applied_strain": 0.0}, "applied_strain"),
        ({"applied_strain": float("nan")}, "applied_strain"),
        ({"applied_strain": 0.01, "lateral_slip_m": float("inf")}, "lateral_slip_m"),
        ({"applied_strain": 0.01, "contact": "glued"}, "contact"),
    ],
)
def test_bad_compression_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Compression(**kwargs)


def test_bad_poisson_is_rejected():
    with pytest.raises(ValueError, match="poisson"):
        solve_compression(Phantom(CFG.depth_m, CFG.width_m), Compression(0.01), poisson=0.5)
