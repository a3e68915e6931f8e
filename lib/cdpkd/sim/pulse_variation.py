"""Per-pair draws of the pulse and noise, so a training set is not one transducer's speckle.

Real echoes differ from the default simulation: the forearm data's spectral peak is ~4.2 MHz
against the simulation's 5 MHz (and, plausibly, lower with depth through attenuation). A network
trained on one centre frequency has seen one speckle size. :class:`PulseRanges` draws the
centre frequency, the fractional bandwidth and the SNR of each pair uniformly in ranges,
from a generator of its own (seeded by the pair's seed), so sets without ranges keep their
bytes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .imaging import ImagingConfig

FIELDS = ("fc_hz", "fractional_bandwidth", "snr_db")
_STREAM = 0x5E1F  # second entropy word of the pulse draws' generator: independent of the pair's own


@dataclass(frozen=True)
class PulseRanges:
    """Ranges (low, high) drawn uniformly per pair; None keeps the imaging config's value.

    Attributes:
        fc_hz: pulse centre frequency (Hz); high below fs / 2.
        fractional_bandwidth: -6 dB bandwidth over the centre frequency, in (0, 2].
        snr_db: additive noise level (dB relative to the mean RF power).
    """

    fc_hz: tuple[float, float] | None = None
    fractional_bandwidth: tuple[float, float] | None = None
    snr_db: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if len(value) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value):
                raise ValueError(f"PulseRanges.{name} must be (low, high) finite numbers, got {value!r}")
            if value[0] > value[1]:
                raise ValueError(f"PulseRanges.{name}: low {value[0]} above high {value[1]}")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        if all(getattr(self, name) is None for name in FIELDS):
            raise ValueError("PulseRanges needs at least one range (use None for no variation)")

    def check(self, imaging: ImagingConfig) -> None:
        """Raise ValueError if a draw could make an invalid ``imaging`` (e.g. fc above Nyquist)."""
        for corner in (0, 1):  # ImagingConfig validates both ends of every range
            changes = {name: getattr(self, name)[corner] for name in FIELDS if getattr(self, name) is not None}
            try:
                dataclasses.replace(imaging, **changes)
            except ValueError as err:
                raise ValueError(f"PulseRanges {changes} do not fit the imaging config: {err}") from err

    def draw(self, imaging: ImagingConfig, seed: int) -> tuple[ImagingConfig, dict[str, float]]:
        """``imaging`` with this pair's draws, and the draws (for the pair's metadata)."""
        rng = np.random.default_rng([int(seed), _STREAM])
        draws = {name: float(rng.uniform(*getattr(self, name))) for name in FIELDS if getattr(self, name) is not None}
        return dataclasses.replace(imaging, **draws), draws

    @classmethod
    def from_dict(cls, d: dict | None) -> PulseRanges | None:
        """The inverse of ``dataclasses.asdict`` (lists from JSON back to tuples); None stays None."""
        if d is None:
            return None
        return cls(**{k: (tuple(v) if v is not None else None) for k, v in d.items()})
