"""Known-answer and bad-input tests of the classical trackers (NCC block matching, GLUE).

Frames are simulated with the project's RF model (40 MHz, 5 MHz, 0.2 mm
pitch) from scatterers moved by an exactly known field, 512 x 48, noiseless
unless stated: a translation, a 20-sample translation (needs the coarse to
fine scheme) and a uniform 1 % compression.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cdpkd.classic import TrackerResult, glue, ncc_block_matching
from cdpkd.classic.dp import dp_seed_line
from cdpkd.estimators import mirror_averaged
from cdpkd.metrics import ls_strain
from cdpkd.sim import ImagingConfig, Scatterers, simulate_rf
from cdpkd.sim.rf_convolution import scatterer_margins_m

SHAPE = (512, 48)
# Interior: away from the windows' reach at the frame edges (41-sample axial window,
# 9-line lateral window, and where the tissue leaves the field of view).
INTERIOR = (slice(40, -40), slice(8, -8))


def known_pair(shift=(0.0, 0.0), strain=0.0, seed=0, snr_db=None, shape=SHAPE):
    """Pre/post RF of scatterers moved by ``shift`` (samples, lines) plus ``strain`` about mid-depth.

    Returns (pre, post, ground truth 2 x H x W), axial displacement
    ``shift_ax + strain * (i - H/2)`` and lateral ``shift_lat``.
    """
    h, w = shape
    img = ImagingConfig(n_samples=h, n_lines=w, snr_db=None)
    rng = np.random.default_rng(seed)
    mz, mx = scatterer_margins_m(img)
    mz += abs(strain) * img.depth_m + abs(shift[0]) * img.dz_m
    mx += abs(shift[1]) * img.pitch_m
    area = (img.depth_m + 2 * mz) * (img.width_m + 2 * mx)
    n = int(area / img.resolution_cell_m2 * img.scatterers_per_cell)
    z = rng.uniform(-mz, img.depth_m + mz, n)
    x = rng.uniform(-mx, img.width_m + mx, n)
    scatterers = Scatterers(z, x, rng.choice([-1.0, 1.0], n))
    z_mid = img.depth_m / 2
    moved = scatterers.displaced(
        shift[0] * img.dz_m + strain * (z - z_mid), np.full(n, shift[1] * img.pitch_m)
    )
    pre, post = simulate_rf(scatterers, img), simulate_rf(moved, img)
    if snr_db is not None:
        sigma = np.sqrt(np.mean(pre.astype(np.float64) ** 2) / 10 ** (snr_db / 10))
        pre = (pre + sigma * rng.standard_normal(pre.shape)).astype(np.float32)
        post = (post + sigma * rng.standard_normal(post.shape)).astype(np.float32)
    rows = np.arange(h, dtype=np.float64)[:, None] * np.ones((1, w))
    truth = np.stack([shift[0] + strain * (rows - z_mid / img.dz_m), np.full((h, w), shift[1])])
    return pre, post, truth


@pytest.fixture(scope="module")
def translation():
    return known_pair(shift=(3.3, 0.4), seed=1)


@pytest.fixture(scope="module")
def big_shift():
    return known_pair(shift=(20.0, 0.0), seed=2)


@pytest.fixture(scope="module")
def compression():
    return known_pair(strain=-0.01, seed=3, snr_db=30.0)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


TRACKERS = {"ncc": ncc_block_matching, "glue": glue}


@pytest.mark.parametrize("name", sorted(TRACKERS))
def test_recovers_translation(name, translation):
    pre, post, truth = translation
    disp = TRACKERS[name](pre, post)
    assert disp.shape == (2, *SHAPE) and isinstance(disp, np.ndarray)
    err = disp - truth
    assert _rms(err[0][INTERIOR]) < 0.05, f"axial RMS error {_rms(err[0][INTERIOR]):.4f} samples"
    assert abs(float(err[0][INTERIOR].mean())) < 0.02
    assert _rms(err[1][INTERIOR]) < 0.2, f"lateral RMS error {_rms(err[1][INTERIOR]):.4f} lines"


def test_mirror_averaged_tracker_keeps_the_lateral_sign(translation):
    """Averaged with the laterally mirrored pair (``cdpkd.estimators.mirror_averaged``), block matching
    still recovers a translation of +0.4 lines: the mirrored estimate's lateral sign is turned back."""
    pre, post, truth = translation
    err = mirror_averaged(ncc_block_matching)(pre, post) - truth
    assert _rms(err[0][INTERIOR]) < 0.05 and abs(float(err[1][INTERIOR].mean())) < 0.05
    assert _rms(err[1][INTERIOR]) < 0.2, f"lateral RMS error {_rms(err[1][INTERIOR]):.4f} lines"


@pytest.mark.parametrize("name", sorted(TRACKERS))
def test_recovers_large_shift(name, big_shift):
    """20 samples: far outside the full-resolution search (NCC) / a wide DP range (GLUE).

    The tissue of the last 20 rows leaves the field of view; those rows and the
    reach of the windows and smoothing above them (60 rows) are not scored.
    """
    pre, post, truth = big_shift
    err = TRACKERS[name](pre, post) - truth
    in_view = (slice(40, SHAPE[0] - 20 - 60), INTERIOR[1])
    assert np.abs(err[0][in_view]).max() < 0.5  # no carrier-period (8-sample) jumps anywhere
    assert _rms(err[0][in_view]) < 0.05
    assert _rms(err[1][in_view]) < 0.2


def test_ncc_coarse_to_fine_is_needed_for_large_shift(big_shift):
    """A single full-resolution level with a small radius cannot reach 20 samples; the pyramid can."""
    pre, post, truth = big_shift
    single = ncc_block_matching(pre, post, levels=1, search=(4, 1))
    assert np.median(np.abs(single[0] - truth[0])[INTERIOR]) > 5
    pyramid = ncc_block_matching(pre, post, levels=2, search=(24, 1))
    assert np.median(np.abs(pyramid[0] - truth[0])[INTERIOR]) < 0.05
    # A plain full-resolution search with a radius that covers the shift works too, at a higher cost.
    wide = ncc_block_matching(pre, post, levels=1, search=(23, 1), fine_iterations=1)
    assert np.median(np.abs(wide[0] - truth[0])[INTERIOR]) < 0.05


@pytest.mark.parametrize("name", sorted(TRACKERS))
def test_recovers_uniform_strain(name, compression):
    pre, post, truth = compression
    disp = TRACKERS[name](pre, post)
    strain = ls_strain(disp[0], 41)[INTERIOR]
    true_strain = -0.01
    assert abs(float(strain.mean()) - true_strain) < 0.05 * abs(true_strain)
    assert abs(float(np.median(strain)) - true_strain) < 0.05 * abs(true_strain)
    assert _rms(strain - true_strain) < 0.25 * abs(true_strain)  # pixelwise too, not only on average
    assert _rms((disp - truth)[0][INTERIOR]) < 0.05


def test_ncc_torch_batch_matches_numpy(translation, compression):
    pre = torch.from_numpy(np.stack([translation[0], compression[0]]))[:, None]
    post = torch.from_numpy(np.stack([translation[1], compression[1]]))[:, None]
    batch = ncc_block_matching(pre, post)
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 2, *SHAPE)
    for i, pair in enumerate((translation, compression)):
        single = ncc_block_matching(pair[0], pair[1])
        np.testing.assert_allclose(batch[i].numpy(), single, atol=1e-3)


def test_ncc_strips_and_step(translation):
    """Strip processing is exact; a coarser grid of window centres stays close."""
    pre, post, truth = translation
    full = ncc_block_matching(pre, post, levels=1, search=(5, 1), fine_iterations=1)
    strips = ncc_block_matching(
        pre, post, levels=1, search=(5, 1), fine_iterations=1, max_volume_elements=200_000
    )
    np.testing.assert_allclose(strips, full, atol=1e-5)
    coarse = ncc_block_matching(pre, post, step=(4, 2))
    assert _rms((coarse - truth)[0][INTERIOR]) < 0.05


def test_ncc_result_and_options(translation):
    pre, post, truth = translation
    res = ncc_block_matching(
        pre, post, return_result=True, subsample=("parabolic", "cosine"), levels=(8, 2, 1)
    )
    assert isinstance(res, TrackerResult)
    assert res.quality.shape == SHAPE and res.seconds > 0
    assert float(res.quality[INTERIOR].min()) > 0.9 and float(res.quality.max()) <= 1.0
    assert [lv["factor"] for lv in res.info["levels"]] == [8, 2, 1]
    assert _rms((res.displacement - truth)[0][INTERIOR]) < 0.05
    integer = ncc_block_matching(pre, post, subsample="none", fine_iterations=1)
    assert np.allclose(integer[0][INTERIOR] - np.round(integer[0][INTERIOR]), 0, atol=0.5)


def test_glue_result_and_seed(translation):
    pre, post, truth = translation
    res = glue(pre, post, return_result=True, seed_line=10, iterations=3)
    assert isinstance(res, TrackerResult) and res.quality is None
    assert res.info["seed_line"] == 10 and len(res.info["cg_iterations"]) == 3
    assert max(res.info["cg_iterations"]) < 500
    seed_a, seed_l = res.info["seed"]
    assert np.all(np.abs(seed_a[INTERIOR] - 3.3) < 1)  # integer seed within the linearisation range
    # The lateral seed is weaker (the beam spans ~5 lines) but stays within the lateral
    # linearisation range (the beam's ~2-line standard deviation).
    assert np.all(np.abs(seed_l[INTERIOR] - 0.4) < 2)
    as_torch = glue(torch.from_numpy(pre), torch.from_numpy(post))
    assert isinstance(as_torch, torch.Tensor) and as_torch.shape == (2, *SHAPE)


def test_dp_seed_line_integer_path(translation):
    pre, post, _ = translation
    scale = float(np.sqrt(np.mean(pre.astype(np.float64) ** 2)))
    a, lat = dp_seed_line(pre.astype(np.float64) / scale, post.astype(np.float64) / scale, 24, (-10, 10), 2)
    assert a.shape == lat.shape == (SHAPE[0],)
    assert np.all(a[40:-40] == 3)  # 3.3 samples -> the integer label within half a sample
    assert np.mean(np.isin(lat[40:-40], (0, 1))) > 0.95  # 0.4 lines; laterally a single line says little


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TRACKERS))
def test_bad_input(name, translation):
    track = TRACKERS[name]
    pre, post, _ = translation
    with pytest.raises(ValueError, match="shape mismatch"):
        track(pre, post[:-1])
    bad = post.copy()
    bad[10, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        track(pre, bad)
    with pytest.raises(ValueError, match="constant"):
        track(np.zeros_like(pre), post)
    with pytest.raises(ValueError, match="H x W"):
        track(pre[None], post[None])
    with pytest.raises(ValueError, match="numpy array or torch tensor"):
        track(pre.tolist(), post.tolist())


def test_ncc_bad_parameters(translation):
    pre, post, _ = translation
    with pytest.raises(ValueError, match="larger than the frame"):
        ncc_block_matching(pre, post, window=(601, 5))
    with pytest.raises(ValueError, match="larger than the frame"):
        ncc_block_matching(pre[:, :4], post[:, :4], window=(41, 9))
    with pytest.raises(ValueError, match="odd"):
        ncc_block_matching(pre, post, window=(40, 5))
    with pytest.raises(ValueError, match="subsample"):
        ncc_block_matching(pre, post, subsample="gaussian")
    with pytest.raises(ValueError, match="levels"):
        ncc_block_matching(pre, post, levels=(4, 2))
    with pytest.raises(ValueError, match="coarsest level"):
        ncc_block_matching(pre, post, levels=6)


def test_glue_bad_parameters(translation):
    pre, post, _ = translation
    with pytest.raises(ValueError, match="alpha1"):
        glue(pre, post, alpha1=-1.0)
    with pytest.raises(ValueError, match="seed_line"):
        glue(pre, post, seed_line=48)
    with pytest.raises(ValueError, match="dp_range"):
        glue(pre, post, dp_range=(5, -5, 1))
    with pytest.raises(ValueError, match="dp_window"):
        glue(pre[:8], post[:8], dp_window=9)
    with pytest.raises(ValueError, match="batch"):
        glue(torch.zeros(2, 1, 64, 8) + torch.randn(2, 1, 64, 8), torch.randn(2, 1, 64, 8))


def test_ncc_seeded_by_a_prior_removes_its_jitter_and_skips_the_coarse_levels(big_shift, compression):
    """A prior 20 samples off the origin needs no pyramid; a prior with sub-window jitter (as a
    network's) comes back as block matching's answer, the jitter gone."""
    pre, post, truth = big_shift
    seeded = ncc_block_matching(pre, post, prior=truth + 0.5, levels=1, search=(1, 1))
    assert np.median(np.abs(seeded[0] - truth[0])[INTERIOR]) < 0.05
    pre, post, truth = compression
    rng = np.random.default_rng(0)
    jitter = np.zeros_like(truth)
    jitter[0] = np.repeat(rng.normal(0, 0.3, (truth.shape[1] // 8 + 1, truth.shape[2])), 8, axis=0)[: truth.shape[1]]
    rough = truth + jitter
    one_pass = ncc_block_matching(pre, post, prior=rough, fine_iterations=1)
    assert _rms((one_pass - truth)[0][INTERIOR]) < 0.1 * _rms(jitter[0][INTERIOR])
    refined = ncc_block_matching(pre, post, prior=rough)  # three passes, as the tracker's own
    plain = ncc_block_matching(pre, post)
    assert _rms((refined - truth)[0][INTERIOR]) < 1.3 * _rms((plain - truth)[0][INTERIOR])
    with pytest.raises(ValueError, match="prior must be"):
        ncc_block_matching(pre, post, prior=truth[:, :-1])
    with pytest.raises(ValueError, match="NaN"):
        ncc_block_matching(pre, post, prior=np.full_like(truth, np.nan))
