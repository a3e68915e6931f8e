"""Tests of the SIMUS RF backend (cdpkd.sim.rf_simus): grid alignment, spectrum,
determinism, displacement fidelity and input checks. Small frames: < 30 s total."""

from __future__ import annotations

import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.signal
from scipy.ndimage import gaussian_filter1d

pytest.importorskip("pymust")

from cdpkd.sim.imaging import ImagingConfig, Scatterers  # noqa: E402
from cdpkd.sim.rf_simus import simulate_rf_simus  # noqa: E402

CFG = ImagingConfig(n_samples=256, n_lines=32, snr_db=None)


def speckle_scatterers(config: ImagingConfig, seed: int, pad_m: float = 0.5e-3) -> Scatterers:
    """Uniform random scatterers at ``config.scatterers_per_cell``, padded around the grid."""
    rng = np.random.default_rng(seed)
    z_lo, z_hi = 0.3e-3, config.depth_m + pad_m
    x_lo, x_hi = -pad_m, (config.n_lines - 1) * config.pitch_m + pad_m
    n = int(round(config.scatterers_per_cell * (z_hi - z_lo) * (x_hi - x_lo) / config.resolution_cell_m2))
    return Scatterers(rng.uniform(z_lo, z_hi, n), rng.uniform(x_lo, x_hi, n), rng.standard_normal(n))


def point(config: ImagingConfig, z_samples: float, line: float, amplitude: float = 1.0) -> Scatterers:
    return Scatterers(
        np.array([z_samples * config.dz_m]), np.array([line * config.pitch_m]), np.array([amplitude])
    )


def envelope(rf: np.ndarray) -> np.ndarray:
    return np.abs(scipy.signal.hilbert(rf.astype(np.float64), axis=0))


def subsample_peak(values: np.ndarray) -> float:
    """Argmax of a 1-D array refined by a parabola through its 3 neighbours."""
    i = int(np.argmax(values))
    a, b, c = values[i - 1], values[i], values[i + 1]
    return i + 0.5 * (a - c) / (a - 2 * b + c)


@pytest.fixture(scope="module")
def speckle() -> tuple[Scatterers, np.ndarray]:
    scat = speckle_scatterers(CFG, seed=0)
    return scat, simulate_rf_simus(scat, CFG)


def test_shape_dtype_finite(speckle):
    scat, rf = speckle
    assert 1500 < len(scat) < 2500
    assert rf.shape == (CFG.n_samples, CFG.n_lines)
    assert rf.dtype == np.float32
    assert np.isfinite(rf).all()
    assert rf[50:].std() > 0.1  # calibrated units: speckle is O(1), not 1e-6


@pytest.mark.parametrize(("z_samples", "line"), [(60.3, 16), (150.4, 11), (212.0, 20), (120.7, 15.5)])
def test_point_target_depth_and_line(z_samples, line):
    rf = simulate_rf_simus(point(CFG, z_samples, line), CFG)
    env = envelope(rf)
    i, j = np.unravel_index(np.argmax(env), env.shape)
    # between two lines the peak may be on either neighbour; otherwise on the line itself
    assert abs(j - line) <= 0.5
    assert abs(subsample_peak(env[:, j]) - z_samples) < 0.5
    if line == int(line):  # lateral symmetry of the beam around its line
        assert env[i, j - 2] == pytest.approx(env[i, j + 2], rel=0.15)


def test_unit_point_at_centre_is_calibrated_and_response_is_linear():
    i0, j0 = CFG.n_samples // 2, (CFG.n_lines - 1) // 2
    centre = point(CFG, i0, j0)
    rf1 = simulate_rf_simus(centre, CFG)
    # convolution-model convention: a unit cosine pulse peaking (+1) at the scatterer
    assert rf1[i0, j0] == pytest.approx(1.0, abs=0.01)
    assert envelope(rf1).max() == pytest.approx(1.0, abs=0.02)
    doubled = Scatterers(centre.z_m, centre.x_m, 2.0 * centre.amplitude)
    np.testing.assert_allclose(simulate_rf_simus(doubled, CFG), 2.0 * rf1, rtol=1e-5, atol=1e-6)


def test_lateral_resolution_matches_configured_beam_width():
    rf = simulate_rf_simus(point(CFG, 180.0, 16), CFG)
    profile = envelope(rf)[180]
    fine = np.linspace(0, CFG.n_lines - 1, 100 * (CFG.n_lines - 1) + 1)
    above = fine[np.interp(fine, np.arange(CFG.n_lines), profile / profile.max()) >= 0.5]
    assert (above.max() - above.min()) * CFG.pitch_m == pytest.approx(CFG.beam_width_m, rel=0.15)


def test_speckle_spectrum_centred_on_fc(speckle):
    _, rf = speckle
    seg = rf[40:].astype(np.float64)  # skip the near field
    power = (np.abs(np.fft.rfft(seg * np.hanning(seg.shape[0])[:, None], axis=0)) ** 2).mean(axis=1)
    freq = np.fft.rfftfreq(seg.shape[0], 1.0 / CFG.fs_hz)
    # The configured spectrum has a flat top (pymust's generalised-normal window),
    # so the raw argmax is ill-defined; smooth over ~0.5 MHz before taking it.
    smooth = gaussian_filter1d(power, sigma=0.5e6 / (freq[1] - freq[0]))
    peak = freq[np.argmax(smooth)]
    band = freq[smooth >= smooth.max() / 4]  # -6 dB in amplitude
    centroid = (freq * power).sum() / power.sum()
    assert abs(peak - CFG.fc_hz) < 0.10 * CFG.fc_hz
    assert abs(centroid - CFG.fc_hz) < 0.10 * CFG.fc_hz
    assert abs(0.5 * (band.min() + band.max()) - CFG.fc_hz) < 0.10 * CFG.fc_hz
    assert (band.max() - band.min()) / CFG.fc_hz == pytest.approx(CFG.fractional_bandwidth, rel=0.25)


def test_deterministic_and_inputs_untouched(speckle):
    scat, rf = speckle
    z0, x0, a0 = scat.z_m.copy(), scat.x_m.copy(), scat.amplitude.copy()
    again = simulate_rf_simus(scat, CFG)
    assert again.tobytes() == rf.tobytes()
    np.testing.assert_array_equal(scat.z_m, z0)
    np.testing.assert_array_equal(scat.x_m, x0)
    np.testing.assert_array_equal(scat.amplitude, a0)


def axial_shift(rf0: np.ndarray, rf1: np.ndarray, rows: slice, upsample: int = 32) -> float:
    """Global axial shift (samples) of rf1 relative to rf0 from the upsampled cross-correlation."""
    a = scipy.signal.resample(rf0[rows].astype(np.float64), rf0[rows].shape[0] * upsample, axis=0)
    b = scipy.signal.resample(rf1[rows].astype(np.float64), rf1[rows].shape[0] * upsample, axis=0)
    max_lag = 6 * upsample
    lags = np.arange(-max_lag, max_lag + 1)
    n = a.shape[0]
    # sum_n a[n] b[n + k] over the overlap: peaks at k = shift * upsample
    xc = [np.sum(a[max(0, -k) : n - max(0, k)] * b[max(0, k) : n - max(0, -k)]) for k in lags]
    return lags[int(np.argmax(xc))] / upsample


@pytest.mark.parametrize("shift", [3.0, 1.3])
def test_axial_shift_of_scatterers_shifts_rf(speckle, shift):
    scat, rf0 = speckle
    moved = scat.displaced(np.full(len(scat), shift * CFG.dz_m), np.zeros(len(scat)))
    rf1 = simulate_rf_simus(moved, CFG)
    assert axial_shift(rf0, rf1, slice(40, 230)) == pytest.approx(shift, abs=0.2)


def test_thread_pool_matches_serial_and_is_closed(speckle):
    scat, rf = speckle
    before = threading.active_count()
    pooled = simulate_rf_simus(scat, CFG, n_workers=2)
    assert threading.active_count() == before
    np.testing.assert_allclose(pooled, rf, atol=1e-4 * np.abs(rf).max())


def test_compounding_and_probe_options_keep_alignment():
    for kwargs in ({"angles_deg": (-8.0, 0.0, 8.0)}, {"probe": "L11-5v"}, {"n_elements": 48}):
        env = envelope(simulate_rf_simus(point(CFG, 140.0, 16), CFG, **kwargs))
        i, j = np.unravel_index(np.argmax(env), env.shape)
        assert j == 16, kwargs
        assert abs(subsample_peak(env[:, j]) - 140.0) < 0.5, kwargs


def _mutated(name: str, value: float) -> Scatterers:
    scat = point(CFG, 100.0, 16)
    getattr(scat, name)[0] = value  # arrays are mutable after validation
    return scat


@pytest.mark.parametrize(
    ("scatterers", "kwargs", "match"),
    [
        (SimpleNamespace(z_m=np.array([]), x_m=np.array([]), amplitude=np.array([])), {}, "no scatterers"),
        (SimpleNamespace(z_m=np.ones(2), x_m=np.ones(3), amplitude=np.ones(2)), {}, "equal length"),
        (_mutated("z_m", np.nan), {}, "NaN or Inf"),
        (_mutated("x_m", np.inf), {}, "NaN or Inf"),
        (_mutated("amplitude", np.nan), {}, "NaN or Inf"),
        (_mutated("z_m", -1e-3), {}, "in front of the probe"),
        (_mutated("z_m", 2.0), {}, "outside the grid"),  # a depth in mm passed as metres
        (_mutated("x_m", -0.01), {}, "outside the grid"),
        (point(CFG, 100.0, 16), {"transmit": "focused"}, "transmit"),
        (point(CFG, 100.0, 16), {"angles_deg": ()}, "angles_deg"),
        (point(CFG, 100.0, 16), {"angles_deg": (60.0,)}, "angles_deg"),
        (point(CFG, 100.0, 16), {"f_number": -1.0}, "f_number"),
        (point(CFG, 100.0, 16), {"n_workers": 0}, "n_workers"),
        (point(CFG, 100.0, 16), {"n_elements": 1}, "n_elements"),
        (point(CFG, 100.0, 16), {"probe": "C5-2v"}, "convex"),
        (point(CFG, 100.0, 16), {"probe": "no-such-probe"}, "does not know"),
    ],
)
def test_bad_inputs_raise_value_error(scatterers, kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_rf_simus(scatterers, CFG, **kwargs)


def test_missing_pymust_gives_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymust", None)  # makes `import pymust` fail
    with pytest.raises(ImportError, match="pip install pymust"):
        simulate_rf_simus(point(CFG, 100.0, 16), CFG)
