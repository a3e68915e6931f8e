"""One simulated pre/post-compression RF pair with its ground truth.

Pipeline: random phantom -> FEM displacement -> scatterers (positions drawn
uniformly, reflectivity scaled by the echogenicity) -> pre frame from the
scatterers, post frame from the same scatterers moved by the FEM field ->
independent noise on each frame.

Ground-truth displacement is Lagrangian, on the pre-frame grid: the tissue at
grid point (i, j) of the pre frame is found at (i + d_ax, j + d_lat) in the
post frame. That is the convention of ``cdpkd.ops.warp``: warping the post
frame by the true displacement reproduces the pre frame.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from .fem import Compression, solve_compression
from .imaging import ImagingConfig, Scatterers
from .phantom import Phantom, PhantomSpec, random_phantom
from .pulse_variation import PulseRanges
from .rf_convolution import add_noise, scatterer_margins_m, simulate_rf

Simulator = Literal["convolution", "simus"]


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines the distribution of simulated pairs.

    Attributes:
        imaging: RF grid, pulse, beam, scatterer density, noise.
        phantom: distribution of random phantoms.
        strain_range: range (fractions) of the applied compression magnitude,
            drawn uniformly; 0 < min <= max < 0.2.
        max_lateral_slip_m: lateral slip drawn uniformly in +/- this value.
        bonded_probability: chance that the probe contact is bonded (shear) rather
            than frictionless.
        element_size_m: FEM mesh size.
        poisson: Poisson's ratio of the tissue.
        simulator: ``"convolution"`` (fast, default) or ``"simus"`` (pymust).
        pulse_ranges: per-pair draws of the centre frequency, bandwidth and SNR
            (:class:`~cdpkd.sim.pulse_variation.PulseRanges`); None = ``imaging``'s values
            for every pair. Left out of :meth:`to_dict` when None, so existing sets keep
            their cache keys.
    """

    imaging: ImagingConfig = field(default_factory=ImagingConfig)
    phantom: PhantomSpec = field(default_factory=PhantomSpec)
    strain_range: tuple[float, float] = (0.005, 0.03)
    max_lateral_slip_m: float = 0.2e-3
    bonded_probability: float = 0.3
    element_size_m: float = 0.8e-3
    poisson: float = 0.495
    simulator: Simulator = "convolution"
    pulse_ranges: PulseRanges | None = None

    def __post_init__(self) -> None:
        lo, hi = self.strain_range
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi < 0.2):
            raise ValueError(
                f"strain_range must be compression magnitudes with 0 < min <= max < 0.2, got {self.strain_range}"
            )
        if not (math.isfinite(self.max_lateral_slip_m) and self.max_lateral_slip_m >= 0):
            raise ValueError(f"max_lateral_slip_m must be finite and >= 0, got {self.max_lateral_slip_m!r}")
        if not 0 <= self.bonded_probability <= 1:
            raise ValueError(f"bonded_probability must be in [0, 1], got {self.bonded_probability!r}")
        if self.simulator not in ("convolution", "simus"):
            raise ValueError(f"simulator must be 'convolution' or 'simus', got {self.simulator!r}")
        if self.pulse_ranges is not None:
            if not isinstance(self.pulse_ranges, PulseRanges):
                raise ValueError(f"pulse_ranges must be a PulseRanges or None, got {self.pulse_ranges!r}")
            self.pulse_ranges.check(self.imaging)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["pulse_ranges"] is None:
            del d["pulse_ranges"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SimulationConfig:
        d = dict(d)
        imaging = ImagingConfig(**d.pop("imaging", {}))
        pulse_ranges = PulseRanges.from_dict(d.pop("pulse_ranges", None))
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("phantom", {}).items()}
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(imaging=imaging, phantom=PhantomSpec(**spec), pulse_ranges=pulse_ranges, **d)


@dataclass
class SimulatedPair:
    """A pre/post RF pair with ground truth, all on the RF grid (H = n_samples, W = n_lines).

    Attributes:
        pre, post: RF frames, float32 (H, W).
        displacement: ground truth, float32 (2, H, W); channel 0 axial in samples,
            channel 1 lateral in lines.
        stiffness: relative Young's modulus, float32 (H, W).
        echogenicity: relative scatterer strength, float32 (H, W).
        labels: uint8 (H, W): 0 background, k inclusion k, 255 edge band (neither).
        meta: scalars describing the draw (seed, applied strain, slip, contact, inclusions).
    """

    pre: np.ndarray
    post: np.ndarray
    displacement: np.ndarray
    stiffness: np.ndarray
    echogenicity: np.ndarray
    labels: np.ndarray
    meta: dict


def random_scatterers(rng: np.random.Generator, phantom: Phantom, imaging: ImagingConfig) -> Scatterers:
    """Uniform positions over the grid plus the PSF margins; reflectivity +/- sqrt(echogenicity).

    Constant-magnitude reflectors with random sign give fully developed speckle
    at ~10 per resolution cell (Gaussian amplitudes need more: their power
    fluctuates from cell to cell).
    """
    mz, mx = scatterer_margins_m(imaging)
    area = (imaging.depth_m + 2 * mz) * (imaging.width_m + 2 * mx)
    n = int(round(area / imaging.resolution_cell_m2 * imaging.scatterers_per_cell))
    if n < 1:
        raise ValueError("scatterer density gives zero scatterers")
    z = rng.uniform(-mz, imaging.depth_m + mz, n)
    x = rng.uniform(-mx, imaging.width_m + mx, n)
    sign = rng.choice(np.array([-1.0, 1.0]), n)
    return Scatterers(z, x, sign * np.sqrt(phantom.echogenicity(z, x)))


def _render(scatterers: Scatterers, config: SimulationConfig, imaging: ImagingConfig) -> np.ndarray:
    if config.simulator == "simus":
        from .rf_simus import simulate_rf_simus

        return simulate_rf_simus(scatterers, imaging)
    return simulate_rf(scatterers, imaging)


def simulate_pair(config: SimulationConfig, seed: int) -> SimulatedPair:
    """Simulate one pair; the same ``(config, seed)`` gives the same bytes."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    img, pulse = config.imaging, {}
    if config.pulse_ranges is not None:  # drawn from a generator of their own: the rest stays as without
        img, pulse = config.pulse_ranges.draw(img, int(seed))
    rng = np.random.default_rng(int(seed))
    phantom = random_phantom(rng, img.depth_m, img.width_m, config.phantom)
    compression = Compression(
        applied_strain=float(rng.uniform(*config.strain_range)),
        lateral_slip_m=float(rng.uniform(-1, 1) * config.max_lateral_slip_m),
        contact="bonded" if rng.uniform() < config.bonded_probability else "frictionless",
    )
    solution = solve_compression(phantom, compression, element_size_m=config.element_size_m, poisson=config.poisson)

    scatterers = random_scatterers(rng, phantom, img)
    if config.simulator == "simus":
        # SIMUS models a probe in contact with the tissue: nothing lies in front of it
        front = scatterers.z_m > 0
        scatterers = Scatterers(scatterers.z_m[front], scatterers.x_m[front], scatterers.amplitude[front])
    uz_s, ux_s = solution.displacement_at(scatterers.z_m, scatterers.x_m)
    pre_clean = _render(scatterers, config, img)
    post_clean = _render(scatterers.displaced(uz_s, ux_s), config, img)
    power = float(np.mean(pre_clean.astype(np.float64) ** 2))
    pre = add_noise(pre_clean, img.snr_db, rng, power)
    post = add_noise(post_clean, img.snr_db, rng, power)

    zz, xx = np.meshgrid(img.sample_depths_m(), img.line_positions_m(), indexing="ij")
    uz, ux = solution.displacement_at(zz, xx)
    displacement = np.stack([uz / img.dz_m, ux / img.pitch_m]).astype(np.float32)
    meta = {
        "seed": int(seed),
        "applied_strain": compression.applied_strain,
        "lateral_slip_m": compression.lateral_slip_m,
        "contact": compression.contact,
        "n_inclusions": len(phantom.inclusions),
        "inclusions": [asdict(inc) for inc in phantom.inclusions],
        "n_scatterers": len(scatterers),
        **pulse,
    }
    return SimulatedPair(
        pre=pre,
        post=post,
        displacement=displacement,
        stiffness=phantom.stiffness(zz, xx).astype(np.float32),
        echogenicity=phantom.echogenicity(zz, xx).astype(np.float32),
        labels=phantom.labels(zz, xx),
        meta=meta,
    )
