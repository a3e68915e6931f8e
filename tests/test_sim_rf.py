"""RF simulator known answers: spectrum, exact sub-sample motion, speckle statistics."""

import numpy as np
import pytest

from cdpkd.signal import envelope_snr, spectral_peak_hz
from cdpkd.sim import ImagingConfig, Phantom, Scatterers, add_noise, random_scatterers, simulate_rf

CFG = ImagingConfig(n_samples=1024, n_lines=96, snr_db=None)


def speckle(seed, cfg=CFG):
    return random_scatterers(np.random.default_rng(seed), Phantom(cfg.depth_m, cfg.width_m), cfg)


def xcorr_peak(a, b, upsample=64):
    """Lag (samples) maximising the cross-correlation of b against a, per column, averaged.

    The correlation is computed by FFT and interpolated by zero-padding its
    spectrum ``upsample`` times, so the peak is located to 1/upsample sample.
    """
    n = a.shape[0]
    fa, fb = np.fft.rfft(a, 2 * n, axis=0), np.fft.rfft(b, 2 * n, axis=0)
    cross = (fb * np.conj(fa)).sum(axis=1)
    fine = np.fft.irfft(cross, 2 * n * upsample)
    lag = int(np.argmax(fine))
    if lag > n * upsample:
        lag -= 2 * n * upsample
    return lag / upsample


def test_spectral_peak_at_centre_frequency():
    peaks = [spectral_peak_hz(simulate_rf(speckle(s), CFG), CFG.fs_hz) for s in range(3)]
    assert np.mean(peaks) == pytest.approx(CFG.fc_hz, rel=0.05)


@pytest.mark.parametrize("fc_mhz", [3.5, 7.5])
def test_spectral_peak_follows_fc(fc_mhz):
    cfg = ImagingConfig(n_samples=768, n_lines=64, fc_hz=fc_mhz * 1e6, snr_db=None)
    assert spectral_peak_hz(simulate_rf(speckle(0, cfg), cfg), cfg.fs_hz) == pytest.approx(fc_mhz * 1e6, rel=0.05)


@pytest.mark.parametrize("shift", [2.5, 3.0, 0.37])
def test_axial_translation_moves_rf_by_the_same_amount(shift):
    # scatterers only in the interior, so no echo enters or leaves the frame
    rng = np.random.default_rng(1)
    n = 4000
    z = rng.uniform(0.2, 0.8, n) * CFG.depth_m
    x = rng.uniform(0.2, 0.8, n) * CFG.width_m
    scat = Scatterers(z, x, rng.choice([-1.0, 1.0], n))
    pre = simulate_rf(scat, CFG)
    post = simulate_rf(scat.displaced(np.full(n, shift * CFG.dz_m), np.zeros(n)), CFG)
    assert xcorr_peak(pre, post) == pytest.approx(shift, abs=0.05)


def test_fully_developed_speckle_envelope_snr():
    # Rayleigh-distributed envelope: mean / std = 1.91
    snrs = [envelope_snr(simulate_rf(speckle(s), CFG)[40:-40, 8:-8]) for s in range(3)]
    assert np.mean(snrs) == pytest.approx(1.91, rel=0.05)


def test_noise_reaches_requested_snr():
    rf = simulate_rf(speckle(3), CFG)
    noisy = add_noise(rf, 20.0, np.random.default_rng(0))
    noise_power = np.mean((noisy.astype(np.float64) - rf) ** 2)
    measured = 10 * np.log10(np.mean(rf.astype(np.float64) ** 2) / noise_power)
    assert measured == pytest.approx(20.0, abs=0.2)
    assert np.array_equal(add_noise(rf, None, np.random.default_rng(0)), rf)


def test_same_scatterers_same_bytes():
    a, b = simulate_rf(speckle(5), CFG), simulate_rf(speckle(5), CFG)
    assert a.dtype == np.float32 and a.shape == (CFG.n_samples, CFG.n_lines)
    assert a.tobytes() == b.tobytes()


def test_zero_scatterers_rejected():
    with pytest.raises(ValueError, match="scatterer"):
        Scatterers(np.zeros(0), np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="zero scatterers"):
        ImagingConfig(scatterers_per_cell=0)


@pytest.mark.parametrize("field", ["z_m", "x_m", "amplitude"])
def test_non_finite_scatterers_rejected(field):
    arrays = {"z_m": np.ones(3) * 1e-3, "x_m": np.ones(3) * 1e-3, "amplitude": np.ones(3)}
    arrays[field][1] = np.nan
    with pytest.raises(ValueError, match=f"{field} contains NaN"):
        Scatterers(**arrays)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fc_hz": float("inf")}, "fc_hz"),
        ({"fs_hz": -1.0}, "fs_hz"),
        ({"fc_hz": 30e6}, "Nyquist"),
        ({"n_samples": 4}, "n_samples"),
        ({"snr_db": float("nan")}, "snr_db"),
    ],
)
def test_bad_imaging_config_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImagingConfig(**kwargs)
