"""Imaging geometry: the RF grid shared by every simulator and by the datasets.

Sample ``i`` of line ``j`` sits at depth ``z_i = i * dz`` with
``dz = c / (2 fs)`` (pulse-echo: one sample is half the distance sound travels
in one sampling period) and at lateral position ``x_j = j * pitch``. All
lengths are in metres, frequencies in Hz.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class ImagingConfig:
    """Transducer, pulse and RF grid.

    Attributes:
        n_samples: axial RF samples per line (image height H).
        n_lines: A-lines (image width W).
        fs_hz: RF sampling frequency.
        fc_hz: pulse centre frequency.
        fractional_bandwidth: -6 dB bandwidth of the pulse spectrum over ``fc_hz``.
        c_m_s: speed of sound.
        pitch_m: lateral distance between A-lines.
        beam_width_m: lateral -6 dB (FWHM) width of the two-way beam profile.
        scatterers_per_cell: mean number of scatterers per resolution cell
            (axial FWHM x lateral FWHM); about 10 gives fully developed speckle.
        snr_db: additive white noise level relative to the mean RF power, or
            ``None`` for noiseless frames.
    """

    n_samples: int = 2000
    n_lines: int = 128
    fs_hz: float = 40e6
    fc_hz: float = 5e6
    fractional_bandwidth: float = 0.6
    c_m_s: float = 1540.0
    pitch_m: float = 0.2e-3
    beam_width_m: float = 1.0e-3
    scatterers_per_cell: float = 10.0
    snr_db: float | None = 30.0

    def __post_init__(self) -> None:
        for name in ("fs_hz", "fc_hz", "fractional_bandwidth", "c_m_s", "pitch_m", "beam_width_m"):
            value = getattr(self, name)
            _require(
                isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
                f"ImagingConfig.{name} must be a finite positive number, got {value!r}",
            )
        for name in ("n_samples", "n_lines"):
            value = getattr(self, name)
            _require(
                isinstance(value, (int, np.integer)) and value >= 8,
                f"ImagingConfig.{name} must be an integer >= 8, got {value!r}",
            )
        _require(
            math.isfinite(self.scatterers_per_cell) and self.scatterers_per_cell > 0,
            f"ImagingConfig.scatterers_per_cell must be > 0 (zero scatterers give no echo), "
            f"got {self.scatterers_per_cell!r}",
        )
        _require(
            self.snr_db is None or math.isfinite(self.snr_db),
            f"ImagingConfig.snr_db must be finite or None, got {self.snr_db!r}",
        )
        _require(self.fc_hz < self.fs_hz / 2, f"fc_hz={self.fc_hz} must be below Nyquist fs/2={self.fs_hz / 2}")
        _require(self.fractional_bandwidth <= 2.0, "fractional_bandwidth must be <= 2")

    # --- derived geometry -------------------------------------------------
    @property
    def dz_m(self) -> float:
        """Axial distance between RF samples (m)."""
        return self.c_m_s / (2.0 * self.fs_hz)

    @property
    def depth_m(self) -> float:
        """Axial extent of the grid, ``n_samples * dz`` (m)."""
        return self.n_samples * self.dz_m

    @property
    def width_m(self) -> float:
        """Lateral extent of the grid, ``n_lines * pitch`` (m)."""
        return self.n_lines * self.pitch_m

    @property
    def pulse_sigma_m(self) -> float:
        """Axial standard deviation of the pulse-echo envelope (m).

        A Gaussian envelope exp(-t^2 / 2 s_t^2) has a Gaussian spectrum whose
        -6 dB full width is 2 sqrt(2 ln 2) / (2 pi s_t); solving for s_t at the
        requested bandwidth and converting two-way time to depth (c / 2).
        """
        bandwidth_hz = self.fractional_bandwidth * self.fc_hz
        sigma_t = math.sqrt(2.0 * math.log(2.0)) / (math.pi * bandwidth_hz)
        return sigma_t * self.c_m_s / 2.0

    @property
    def beam_sigma_m(self) -> float:
        """Lateral standard deviation of the Gaussian beam profile (m)."""
        return self.beam_width_m / (2.0 * math.sqrt(2.0 * math.log(2.0)))

    @property
    def resolution_cell_m2(self) -> float:
        """Axial FWHM x lateral FWHM of the point-spread function (m^2)."""
        fwhm = 2.0 * math.sqrt(2.0 * math.log(2.0))
        return fwhm * self.pulse_sigma_m * self.beam_width_m

    def sample_depths_m(self) -> np.ndarray:
        """Depth of every RF sample, shape (n_samples,)."""
        return np.arange(self.n_samples) * self.dz_m

    def line_positions_m(self) -> np.ndarray:
        """Lateral position of every A-line, shape (n_lines,)."""
        return np.arange(self.n_lines) * self.pitch_m

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Scatterers:
    """Point scatterers: positions in metres, dimensionless reflectivity.

    Attributes:
        z_m: depth of each scatterer, shape (S,).
        x_m: lateral position, shape (S,).
        amplitude: reflection coefficient, shape (S,).
    """

    z_m: np.ndarray
    x_m: np.ndarray
    amplitude: np.ndarray

    def __post_init__(self) -> None:
        shapes = {self.z_m.shape, self.x_m.shape, self.amplitude.shape}
        _require(len(shapes) == 1 and self.z_m.ndim == 1, f"scatterer arrays must be 1-D of equal length, got {shapes}")
        _require(self.z_m.size > 0, "no scatterers: a speckle image needs at least one scatterer")
        for name in ("z_m", "x_m", "amplitude"):
            _require(bool(np.isfinite(getattr(self, name)).all()), f"scatterer {name} contains NaN or Inf")

    def __len__(self) -> int:
        return int(self.z_m.size)

    def displaced(self, dz_m: np.ndarray, dx_m: np.ndarray) -> Scatterers:
        """The same scatterers moved by ``(dz_m, dx_m)`` (metres, shape (S,))."""
        return Scatterers(self.z_m + dz_m, self.x_m + dx_m, self.amplitude)
