"""Realistic RF backend: pymust's SIMUS (Python port of MUST, D. Garcia) + delay-and-sum.

``simulate_rf_simus`` has the same contract as the default convolution model
(``cdpkd.sim.rf_convolution.simulate_rf``): scatterers in, a noiseless
``(n_samples, n_lines)`` float32 RF frame on the project's grid out (sample
``i`` at depth ``i * dz``, line ``j`` at lateral ``j * pitch``; see
``cdpkd.sim.imaging``). The steps:

1. a linear array is built to match the config (fc, bandwidth, pitch, c) and
   centred over the grid, so that by default element ``j`` sits above line ``j``;
2. one (or a few, coherently compounded) plane waves are transmitted and
   ``pymust.simus`` returns the per-element RF echoes of the scatterers
   (2-D model: scatterers lie in the imaging plane, no elevation);
3. the element signals are beamformed by our own delay-and-sum onto the grid
   points (x_j, z_i): interpolation of the complex baseband (phase-exact),
   Hann receive apodisation at a fixed f-number, real part kept as RF.

Gain and carrier phase are calibrated so that a unit-amplitude point
scatterer at the centre of the grid gives RF = +1 at its pixel with envelope
peak 1, the convention of the convolution model (a unit cosine pulse per unit
scatterer). There is no time-gain compensation: brightness falls off with
depth as in 2-D physics (speckle roughly as 1/sqrt(z)).

SIMUS is slow in pure Python (a loop over ~10^3 frequencies of dense
scatterer x element products); use this backend for small, realistic sets.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.fft

from cdpkd.sim.imaging import ImagingConfig, Scatterers

__all__ = ["simulate_rf_simus", "simus_param"]

# Elevation geometry of a typical linear probe (pymust's L11-5v). The 2-D model
# used here ignores it; it is kept in the parameters for callers that reuse them.
_ELEMENT_HEIGHT_M = 5e-3
_ELEVATION_FOCUS_M = 18e-3
_WIDTH_OVER_PITCH = 0.9  # element width / pitch (kerf = 10 % of the pitch)


def _import_pymust() -> Any:
    """Import pymust lazily (it pulls in matplotlib) with an actionable error."""
    try:
        import pymust
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "simulate_rf_simus needs the optional dependency 'pymust' (>=0.1.9, the Python port "
            "of MUST): `pip install pymust`. The default convolution backend "
            "(cdpkd.sim.rf_convolution.simulate_rf) does not need it."
        ) from err
    return pymust


# --------------------------------------------------------------------------
# Transducer parameters
# --------------------------------------------------------------------------
def simus_param(config: ImagingConfig, *, probe: str | None = None, n_elements: int | None = None) -> Any:
    """pymust ``Param`` structure of a linear array matching ``config``.

    Args:
        config: imaging configuration (fc, fractional bandwidth, pitch, c, fs).
        probe: optional pymust probe name (e.g. ``"L11-5v"``); its fc, pitch,
            element width, bandwidth and elevation geometry replace those derived
            from ``config``. Only linear arrays are accepted. The RF grid (fs, c,
            dz, line positions) always comes from ``config``.
        n_elements: number of elements; default ``config.n_lines`` (element j
            above line j) or the probe's own count.

    Returns:
        ``pymust.utils.Param`` with fc (Hz), pitch, width, kerf, height, focus (m),
        bandwidth (pulse-echo -6 dB, % of fc), Nelements, c (m/s), radius (inf)
        and fs (Hz; raised to a multiple of ``config.fs_hz`` >= 4 fc if needed,
        as SIMUS requires ``fs >= 4 fc``; the beamformer resamples anyway).
    """
    pymust = _import_pymust()
    if probe is None:
        param = pymust.utils.Param()
        param.fc = float(config.fc_hz)
        param.pitch = float(config.pitch_m)
        param.width = _WIDTH_OVER_PITCH * param.pitch
        param.kerf = param.pitch - param.width
        param.height = _ELEMENT_HEIGHT_M
        param.focus = _ELEVATION_FOCUS_M
        if not config.fractional_bandwidth < 2.0:
            raise ValueError(
                f"pymust needs a fractional bandwidth below 200 %, got "
                f"config.fractional_bandwidth={config.fractional_bandwidth}"
            )
        param.bandwidth = 100.0 * float(config.fractional_bandwidth)
        param.Nelements = int(config.n_lines)
    else:
        if not isinstance(probe, str):
            raise ValueError(f"probe must be a pymust probe name (str) or None, got {probe!r}")
        try:
            param = pymust.getparam(probe)
        except Exception as err:  # pymust raises various errors for unknown names
            raise ValueError(f"pymust does not know the probe {probe!r} (see pymust.getparam)") from err
        if not param or "fc" not in param or "pitch" not in param:
            raise ValueError(f"pymust does not know the probe {probe!r}")
        if math.isfinite(float(param.get("radius", math.inf))):
            raise ValueError(f"probe {probe!r} is a convex array; only linear arrays map onto the RF grid")
        if "width" not in param:
            param.width = param.pitch - param.kerf
        if "bandwidth" not in param:
            param.bandwidth = 75.0  # pymust's own default
        param.setdefault("height", _ELEMENT_HEIGHT_M)
        param.setdefault("focus", _ELEVATION_FOCUS_M)
        if not param.fc < config.fs_hz / 2:
            raise ValueError(f"probe {probe!r} fc={param.fc} Hz is above Nyquist of fs={config.fs_hz} Hz")
    if n_elements is not None:
        if not isinstance(n_elements, (int, np.integer)) or isinstance(n_elements, bool) or n_elements < 2:
            raise ValueError(f"n_elements must be an integer >= 2, got {n_elements!r}")
        param.Nelements = int(n_elements)
    param.radius = math.inf
    param.c = float(config.c_m_s)
    param.attenuation = 0.0
    param.baffle = "soft"
    # SIMUS asserts fs >= 4 fc; the element RF only feeds the beamformer, which
    # interpolates, so oversampling it by an integer factor changes nothing else.
    param.fs = float(config.fs_hz) * math.ceil(4.0 * param.fc / config.fs_hz - 1e-9)
    return param


def _plane_wave_delays(xe_m: np.ndarray, angle_rad: float, c_m_s: float) -> np.ndarray:
    """Transmit delays (s, shape (n_el,), >= 0) of a plane wave steered by ``angle_rad``."""
    delays = xe_m * math.sin(angle_rad) / c_m_s
    return delays - delays.min()


def _equalizer(param: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Gain H(f) that makes the image's pulse-echo spectrum pymust's probe response.

    SIMUS's element echoes carry pulse(f) * probe(f)^2, where probe^2 is the
    configured window (centre fc, -6 dB width = bandwidth) but pulse(f), the
    one-cycle transmit sine, tilts it low; and in 2-D a plane wave is the
    aperture integral of cylindrical waves, which adds a 1/sqrt(f) factor
    (stationary phase). Together they move the spectral peak ~13 % (centroid
    ~5 %) below fc. H = sqrt(f / fc) |pulse(fc)| / |pulse(f)| undoes both
    (H(fc) = 1), i.e. it acts as a pre-compensated transmit waveform: a point
    target's spectrum becomes probe^2 (measured: centroid 4.99 MHz, -6 dB
    fractional bandwidth 0.60 for fc = 5 MHz, 60 %). Speckle sits ~2 % lower,
    as it should: the lateral PSF width, hence the power collected from diffuse
    scatterers, scales as 1/f. Zero outside the band.
    """
    pulse = param.getPulseSpectrumFunction(None)
    probe = param.getProbeFunction()
    fc = float(param.fc)
    ref = abs(pulse(2.0 * np.pi * fc))

    def gain(f_hz: np.ndarray) -> np.ndarray:
        mag = np.abs(pulse(2.0 * np.pi * f_hz))
        # Only inside the band (probe^2 > -80 dB): outside it SIMUS's output holds
        # only its thresholding residue, which a division would amplify.
        ok = (f_hz > 0) & (probe(2.0 * np.pi * f_hz) ** 2 > 1e-4) & (mag > 1e-2 * ref)
        return np.where(ok, np.sqrt(np.maximum(f_hz, 0.0) / fc) * ref / np.where(ok, mag, 1.0), 0.0)

    return gain


def _analytic(
    rf: np.ndarray, fs_hz: float, equalizer: Callable[[np.ndarray], np.ndarray] | None
) -> np.ndarray:
    """Analytic signal of each column of ``rf`` (n_t, n_ch), optionally equalised.

    Zero-padded FFT (so the filter does not wrap echoes around), negative
    frequencies removed, positive ones doubled and multiplied by ``equalizer``.
    """
    n_t = rf.shape[0]
    n_fft = scipy.fft.next_fast_len(n_t + 256)
    spec = scipy.fft.fft(rf.astype(np.float64), n=n_fft, axis=0)
    f = scipy.fft.fftfreq(n_fft, 1.0 / fs_hz)
    gain = np.where(f > 0, 2.0, 0.0)
    gain[0] = 1.0
    if n_fft % 2 == 0:
        gain[n_fft // 2] = 1.0  # Nyquist bin, as scipy.signal.hilbert
    if equalizer is not None:
        gain = gain * np.where(f > 0, equalizer(np.abs(f)), 0.0)
    return scipy.fft.ifft(spec * gain[:, None], axis=0)[:n_t]


# --------------------------------------------------------------------------
# Delay-and-sum
# --------------------------------------------------------------------------
def _transmit_distance(
    x_m: np.ndarray, z_m: np.ndarray, xe_m: np.ndarray, delays_s: np.ndarray, c_m_s: float
) -> np.ndarray:
    """First-arrival transmit path (m): ``min_e (c * delay_e + |p - e|)``.

    Same definition as pymust's dasmtx (elements refined 4x): inside the
    insonified zone it is the plane-wave distance, outside it the edge wave.
    ``x_m`` (n_lines,) and ``z_m`` (n_samples,) are probe coordinates; returns
    (n_samples, n_lines).
    """
    fine = np.linspace(0.0, xe_m.size - 1.0, 4 * xe_m.size)
    xt = np.interp(fine, np.arange(xe_m.size), xe_m)
    dt = np.interp(fine, np.arange(xe_m.size), delays_s) * c_m_s
    out = np.empty((z_m.size, x_m.size))
    for j, xj in enumerate(x_m):  # per line: (n_samples, 4 n_el) at a time
        out[:, j] = np.min(dt[None, :] + np.hypot(xt[None, :] - xj, z_m[:, None]), axis=1)
    return out


def _das(
    element_rf: np.ndarray,
    fs_hz: float,
    fc_hz: float,
    c_m_s: float,
    xe_m: np.ndarray,
    delays_s: np.ndarray,
    x_m: np.ndarray,
    z_m: np.ndarray,
    f_number: float,
    equalizer: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    """Delay-and-sum of element RF onto the grid, as a complex analytic signal.

    Args:
        element_rf: per-element RF, shape (n_t, n_el), time ``k / fs_hz``
            after the first transmit firing.
        fs_hz, fc_hz, c_m_s: sampling rate of ``element_rf``, carrier, speed of sound.
        xe_m: element lateral positions (probe coordinates, m), shape (n_el,).
        delays_s: transmit delays (s), shape (n_el,).
        x_m: grid line positions (probe coordinates, m), shape (n_lines,).
        z_m: grid depths (m), shape (n_samples,).
        f_number: receive f-number (aperture width = depth / f_number).
        equalizer: optional real gain H(f) (f in Hz, f > 0) applied to every channel.

    Returns:
        Analytic beamformed signal, shape (n_samples, n_lines), complex128;
        normalised by the sum of apodisation weights at each pixel.
    """
    n_t, n_el = element_rf.shape
    # Complex baseband of every channel: smooth (bandwidth ~fc/2 vs fs >= 4 fc),
    # so linear interpolation of it is accurate; re-modulating at the exact delay
    # restores the carrier phase (interpolating the RF itself would smear it).
    t = np.arange(n_t) / fs_hz
    baseband = _analytic(element_rf, fs_hz, equalizer) * np.exp(-2j * np.pi * fc_hz * t)[:, None]
    # Two zero rows past the end: out-of-range delays point at row n_t (and its
    # interpolation neighbour n_t + 1), so they contribute 0 without branching.
    baseband = np.concatenate([baseband, np.zeros((2, n_el))], axis=0)
    flat = baseband.ravel()  # (n_t + 2) * n_el, row-major: index k * n_el + e

    dtx = _transmit_distance(x_m, z_m, xe_m, delays_s, c_m_s)  # (n_samples, n_lines)
    half_aperture = np.maximum(z_m / (2.0 * f_number), 1.5 * abs(xe_m[1] - xe_m[0]))  # (n_samples,)
    cols = np.arange(n_el)[None, :]
    out = np.zeros((z_m.size, x_m.size), dtype=np.complex128)
    for j, xj in enumerate(x_m):
        dx = xj - xe_m[None, :]  # (1, n_el)
        tau = (dtx[:, j : j + 1] + np.hypot(dx, z_m[:, None])) / c_m_s  # (n_samples, n_el), s
        u = dx / half_aperture[:, None]  # -1..1 across the receive aperture
        w = np.where(np.abs(u) <= 1.0, 0.5 * (1.0 + np.cos(np.pi * u)), 0.0)  # Hann apodisation
        pos = tau * fs_hz
        k0 = np.floor(pos)
        frac = pos - k0
        valid = (k0 >= 0) & (k0 <= n_t - 2) & (w > 0)
        k0 = np.where(valid, k0, n_t).astype(np.int64)  # n_t -> the zero rows
        idx = k0 * n_el + cols
        sample = flat[idx] * (1.0 - frac) + flat[idx + n_el] * frac
        analytic = sample * np.exp(2j * np.pi * fc_hz * tau)
        wsum = w.sum(axis=1)
        out[:, j] = (analytic * w).sum(axis=1) / np.where(wsum > 0, wsum, 1.0)
    return out


# --------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------
def _validate(
    scatterers: Scatterers, config: ImagingConfig, margin_m: float | None
) -> tuple[np.ndarray, ...]:
    """Check scatterer arrays (they are mutable, so re-check here); return float64 copies."""
    if not isinstance(config, ImagingConfig):
        raise ValueError(f"config must be an ImagingConfig, got {type(config).__name__}")
    try:
        z, x, a = (np.asarray(getattr(scatterers, n), dtype=np.float64) for n in ("z_m", "x_m", "amplitude"))
    except (AttributeError, TypeError, ValueError) as err:
        raise ValueError(f"scatterers must have numeric z_m, x_m and amplitude arrays: {err}") from err
    if not (z.ndim == 1 and z.shape == x.shape == a.shape):
        raise ValueError(f"scatterer arrays must be 1-D of equal length, got {z.shape}, {x.shape}, {a.shape}")
    if z.size == 0:
        raise ValueError("no scatterers: SIMUS needs at least one scatterer")
    for name, arr in (("z_m", z), ("x_m", x), ("amplitude", a)):
        if not np.isfinite(arr).all():
            raise ValueError(f"scatterer {name} contains NaN or Inf")
    if margin_m is None:
        # Generous: catches unit mistakes (mm or pixels for metres), allows the
        # padding phantoms add around the grid to avoid edge effects.
        margin_m = max(2.0 * config.beam_width_m, 0.1 * max(config.depth_m, config.width_m))
    if not (math.isfinite(margin_m) and margin_m >= 0):
        raise ValueError(f"margin_m must be finite and >= 0, got {margin_m!r}")
    if z.min() <= 0.0:
        raise ValueError(f"scatterers must lie in front of the probe (z_m > 0), min z_m = {z.min():.3g} m")
    x_last = (config.n_lines - 1) * config.pitch_m
    if z.max() > config.depth_m + margin_m or x.min() < -margin_m or x.max() > x_last + margin_m:
        raise ValueError(
            f"scatterers outside the grid by more than margin_m={margin_m:.3g} m: z in "
            f"[{z.min():.3g}, {z.max():.3g}] m vs (0, {config.depth_m:.3g}], x in [{x.min():.3g}, "
            f"{x.max():.3g}] m vs [0, {x_last:.3g}] (metres expected)"
        )
    return z, x, a


def _beamformed(
    z_m: np.ndarray,
    x_m: np.ndarray,
    amplitude: np.ndarray,
    config: ImagingConfig,
    param: Any,
    angles_rad: Sequence[float],
    f_number: float,
    n_workers: int,
    equalize: bool,
) -> np.ndarray:
    """Analytic beamformed frame (n_samples, n_lines), complex, uncalibrated."""
    pymust = _import_pymust()
    xe = (np.arange(param.Nelements) - (param.Nelements - 1) / 2.0) * param.pitch  # pymust's element centres
    x_probe = x_m - (config.n_lines - 1) * config.pitch_m / 2.0  # probe-centred (grid centre = probe centre)
    x_lines = config.line_positions_m() - (config.n_lines - 1) * config.pitch_m / 2.0
    z_grid = config.sample_depths_m()

    options = pymust.utils.Options()
    options.WaitBar = False
    # Keep frequencies whose one-way transmit spectrum is above -50 dB (simus's
    # default: -100 dB). The rest lie where the equaliser is zero anyway; cost is
    # linear in their number: ~17 % faster, output changes by ~2e-6 relative.
    options.dBThresh = -50.0
    use_pool = n_workers > 1 and z_m.size >= 2 * n_workers  # pymust's splitter needs >= 1 per chunk
    options.ParPool = use_pool
    if use_pool:
        # Threads, not processes: numpy releases the GIL in the heavy products,
        # works in Jupyter/pytest, and the pool is closed when simus returns.
        options.setParPool(int(n_workers), "thread")

    # simus splits chunks along axis 1 in its pool path: pass (1, S) rows.
    xs, zs, rc = (v.astype(np.float32).reshape(1, -1) for v in (x_probe, z_m, amplitude))
    total = np.zeros((config.n_samples, config.n_lines), dtype=np.complex128)
    for angle in angles_rad:
        delays = _plane_wave_delays(xe, angle, param.c)
        p = param.copy()  # simus fills in fields; keep the caller's param clean
        # pymust underflows (harmless) in exp/irfft; a caller's np.seterr(all="raise")
        # would turn that into an error, so silence numpy and warnings locally
        # (the result is checked for finiteness at the end).
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            rf, spectrum = pymust.simus(xs, zs, rc, delays.reshape(1, -1), p, options.copy())
        # Effective sampling rate of simus's output: its frequency grid is
        # linspace(0, 2 fc, Nf) and it inverts with nf = ceil(fs/2/fc (Nf-1))
        # points, so the time step is exactly 1/fs only when fs/(2 fc) (Nf-1) is
        # an integer; use the true one in the beamformer.
        n_freq = spectrum.shape[0]
        df = 2.0 * p.fc / (n_freq - 1)
        nf = math.ceil(p.fs / 2.0 / p.fc * (n_freq - 1))
        fs_eff = nf * df
        if rf.shape[0] != (nf + 1) // 2:  # pragma: no cover - guards a pymust change
            raise RuntimeError("unexpected pymust.simus output length; cannot infer its time axis")
        eq = _equalizer(p) if equalize else None
        total += _das(rf, fs_eff, p.fc, p.c, xe, delays, x_lines, z_grid, f_number, eq)
    return total / len(angles_rad)


def _default_f_number(config: ImagingConfig, fc_hz: float) -> float:
    """Receive f-number giving a lateral -6 dB width close to ``config.beam_width_m``.

    With a single plane wave only the receive aperture focuses; a Hann-apodised
    aperture of width D has an amplitude -6 dB width ~2.0 lambda z / D =
    2.0 lambda F# (measured: 0.98-1.02 mm for a 1 mm target at 5 MHz). Clipped
    to [1, 4] (below 1 the element directivity limits the aperture anyway).
    """
    wavelength = config.c_m_s / fc_hz
    return float(np.clip(config.beam_width_m / (2.0 * wavelength), 1.0, 4.0))


@lru_cache(maxsize=32)
def _calibration(
    config: ImagingConfig,
    probe: str | None,
    n_elements: int | None,
    angles: tuple[float, ...],
    f_number: float,
    equalize: bool,
) -> complex:
    """Analytic beamformed value at a unit point scatterer placed on the grid centre pixel.

    Dividing by it sets both the gain (envelope peak 1) and the carrier phase
    (RF = +1 at the scatterer: a cosine pulse, as in the convolution model).
    """
    param = simus_param(config, probe=probe, n_elements=n_elements)
    i0, j0 = config.n_samples // 2, (config.n_lines - 1) // 2
    z0, x0 = np.array([i0 * config.dz_m]), np.array([j0 * config.pitch_m])
    value = complex(_beamformed(z0, x0, np.ones(1), config, param, angles, f_number, 1, equalize)[i0, j0])
    if not (math.isfinite(abs(value)) and abs(value) > 0):  # pragma: no cover - would be a pymust failure
        raise RuntimeError("SIMUS calibration produced no echo")
    return value


def simulate_rf_simus(
    scatterers: Scatterers,
    config: ImagingConfig,
    *,
    probe: str | None = None,
    n_elements: int | None = None,
    transmit: str = "plane",
    angles_deg: Sequence[float] = (0.0,),
    f_number: float | None = None,
    margin_m: float | None = None,
    n_workers: int = 1,
    equalize: bool = True,
) -> np.ndarray:
    """Noiseless beamformed RF frame of ``scatterers`` simulated with pymust's SIMUS.

    Same contract as ``cdpkd.sim.rf_convolution.simulate_rf``. Deterministic:
    no random numbers are drawn; identical inputs give identical bytes (for a
    fixed ``n_workers``: the pool splits the scatterer sum differently).

    Args:
        scatterers: positions ``z_m`` (depth, > 0), ``x_m`` (lateral, 0 at line 0),
            in metres, and dimensionless ``amplitude``; shape (S,) each. 2-D: the
            scatterers lie in the imaging plane.
        config: RF grid and transducer (fc, fractional bandwidth, pitch, c, fs).
        probe: optional pymust linear-probe name whose transducer properties
            replace those derived from ``config`` (see ``simus_param``).
        n_elements: array size; default ``config.n_lines`` (element j above
            line j), the array being centred over the grid.
        transmit: ``"plane"`` (the only scheme): unfocused plane wave(s).
        angles_deg: steering angles (degrees) of the plane waves, coherently
            compounded; each angle costs one more SIMUS run.
        f_number: receive f-number of the beamformer; default matches the
            lateral resolution to ``config.beam_width_m`` (clipped to [1, 4]).
        margin_m: how far (m) scatterers may lie outside the grid; default
            ``max(2 beam_width, 10 % of the larger grid extent)``.
        n_workers: >1 runs SIMUS on a thread pool of that size (closed on return).
        equalize: filter the element signals so that the image's pulse-echo
            spectrum is centred on fc with the configured -6 dB bandwidth (see
            ``_equalizer``); False keeps SIMUS's raw spectrum (peak ~13 % low).

    Returns:
        RF, shape (config.n_samples, config.n_lines), float32, sample i at depth
        ``i * dz`` and line j at ``j * pitch``. Units and phase: a unit-amplitude
        point scatterer at the grid centre gives RF = +1 at its own pixel, the
        peak of a cosine-like pulse with envelope peak 1 (the convolution
        model's convention); elsewhere the gain follows the physics (no TGC).

    Raises:
        ValueError: bad scatterers (empty, non-finite, behind the probe, outside
            the grid by more than ``margin_m``) or options.
        ImportError: pymust is not installed.
    """
    if transmit != "plane":
        raise ValueError(f"transmit must be 'plane' (unfocused plane-wave imaging), got {transmit!r}")
    try:
        angles = tuple(float(a) for a in angles_deg)
    except (TypeError, ValueError) as err:
        raise ValueError(f"angles_deg must be a sequence of numbers, got {angles_deg!r}") from err
    if not angles or not all(math.isfinite(a) and abs(a) < 45.0 for a in angles):
        raise ValueError(
            f"angles_deg must be non-empty with finite angles in (-45, 45) degrees, got {angles_deg!r}"
        )
    if not isinstance(n_workers, (int, np.integer)) or isinstance(n_workers, bool) or n_workers < 1:
        raise ValueError(f"n_workers must be an integer >= 1, got {n_workers!r}")
    z, x, a = _validate(scatterers, config, margin_m)
    param = simus_param(config, probe=probe, n_elements=n_elements)  # validates probe / n_elements
    if f_number is None:
        f_number = _default_f_number(config, param.fc)
    if not (isinstance(f_number, (int, float)) and math.isfinite(f_number) and f_number > 0):
        raise ValueError(f"f_number must be a finite positive number, got {f_number!r}")
    angles_rad = tuple(math.radians(v) for v in angles)
    n_el = None if n_elements is None else int(n_elements)

    frame = _beamformed(z, x, a, config, param, angles_rad, float(f_number), int(n_workers), bool(equalize))
    scale = _calibration(config, probe, n_el, angles_rad, float(f_number), bool(equalize))
    rf = (frame / scale).real.astype(np.float32)
    if not np.isfinite(rf).all():  # pragma: no cover - would be a pymust failure
        raise RuntimeError("SIMUS produced non-finite RF")
    return rf
