"""RF signal helpers: envelope, B-mode, spectrum. Arrays are (..., H, W), H axial."""

from __future__ import annotations

import numpy as np
from scipy.signal import hilbert, welch


def envelope(rf: np.ndarray) -> np.ndarray:
    """Envelope |analytic signal| along the axial axis (-2); same shape as ``rf``."""
    return np.abs(hilbert(np.asarray(rf, dtype=np.float64), axis=-2))


def bmode_db(rf: np.ndarray, dynamic_range_db: float = 50.0) -> np.ndarray:
    """Log-compressed envelope in dB relative to its maximum, clipped at ``-dynamic_range_db``."""
    env = envelope(rf)
    db = 20.0 * np.log10(env / (env.max() + 1e-30) + 1e-30)
    return np.clip(db, -dynamic_range_db, 0.0)


def mean_spectrum(rf: np.ndarray, fs_hz: float, segment: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectrum along depth averaged over lines: (frequencies Hz, power)."""
    rf = np.asarray(rf, dtype=np.float64)
    freqs, power = welch(rf, fs=fs_hz, nperseg=min(segment, rf.shape[-2]), axis=-2)
    return freqs, power.reshape(power.shape[0], -1).mean(axis=1) if power.ndim > 1 else power


def spectral_peak_hz(rf: np.ndarray, fs_hz: float) -> float:
    """Peak frequency of :func:`mean_spectrum` (Hz).

    A speckle spectrum is flat near its top and noisy, so the raw argmax
    wanders by several bins; instead a parabola is fitted to the log power
    over the band above half the maximum, and its vertex is returned.
    """
    freqs, power = mean_spectrum(rf, fs_hz)
    band = power >= 0.5 * power.max()
    if band.sum() < 3:
        return float(freqs[int(np.argmax(power))])
    a, b, _ = np.polyfit(freqs[band], np.log(power[band]), 2)
    return float(-b / (2.0 * a)) if a < 0 else float(freqs[int(np.argmax(power))])


def envelope_snr(rf: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean / std of the envelope (1.91 for fully developed speckle, Rayleigh statistics)."""
    env = envelope(rf)
    values = env[mask] if mask is not None else env
    return float(values.mean() / values.std())
