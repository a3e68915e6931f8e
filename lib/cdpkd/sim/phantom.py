"""Random numerical phantoms: stiffness, echogenicity and inclusion labels.

A phantom is a rectangle ``depth_m x width_m`` (depth axis z pointing away
from the probe, lateral axis x) with

* a smooth, log-normal background stiffness heterogeneity (a Gaussian random
  field with a chosen correlation length),
* zero or more elliptical inclusions, each with its own stiffness ratio to
  the background (``< 1`` soft, ``> 1`` hard) and echogenicity ratio,
* a matching echogenicity (scatterer strength) map.

Young's modulus is relative (background median 1): with displacement boundary
conditions the displacement field depends only on stiffness ratios.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter

# Width (m) of the smooth stiffness transition at an inclusion boundary; a
# step would be under-resolved by the FEM mesh and by the RF point-spread function.
EDGE_WIDTH_M = 0.2e-3


def _finite_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")


@dataclass(frozen=True)
class Inclusion:
    """An elliptical inclusion.

    Attributes:
        center_z_m, center_x_m: centre (depth, lateral) in metres.
        semi_axis_z_m, semi_axis_x_m: semi-axes before rotation (m).
        angle_rad: rotation of the ellipse (counter-clockwise in the (x, z) plane).
        stiffness_ratio: Young's modulus relative to the surrounding background.
        echo_ratio: scatterer-strength (echogenicity) ratio to the background.
    """

    center_z_m: float
    center_x_m: float
    semi_axis_z_m: float
    semi_axis_x_m: float
    angle_rad: float = 0.0
    stiffness_ratio: float = 3.0
    echo_ratio: float = 1.0

    def __post_init__(self) -> None:
        for name in ("semi_axis_z_m", "semi_axis_x_m", "stiffness_ratio", "echo_ratio"):
            _finite_positive(f"Inclusion.{name}", getattr(self, name))
        for name in ("center_z_m", "center_x_m", "angle_rad"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"Inclusion.{name} must be finite, got {getattr(self, name)!r}")

    def normalized_radius(self, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Ellipse 'radius' of each point: < 1 inside, 1 on the boundary, > 1 outside."""
        dz, dx = z - self.center_z_m, x - self.center_x_m
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        u = c * dx + s * dz  # along the (rotated) lateral semi-axis
        v = -s * dx + c * dz  # along the (rotated) axial semi-axis
        return np.sqrt((u / self.semi_axis_x_m) ** 2 + (v / self.semi_axis_z_m) ** 2)

    def indicator(self, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Smooth membership in [0, 1] with an edge about ``EDGE_WIDTH_M`` wide."""
        r = self.normalized_radius(z, x)
        scale = min(self.semi_axis_z_m, self.semi_axis_x_m) / EDGE_WIDTH_M
        return 0.5 * (1.0 - np.tanh((r - 1.0) * scale))

    @property
    def max_semi_axis_m(self) -> float:
        return max(self.semi_axis_z_m, self.semi_axis_x_m)


@dataclass(frozen=True)
class Phantom:
    """A rectangular phantom; see the module docstring.

    Attributes:
        depth_m, width_m: extent of the phantom (m); it coincides with the RF grid.
        inclusions: the inclusions (each must lie inside the phantom).
        background_log_field: log-stiffness heterogeneity sampled on a regular
            grid spanning the phantom, shape (gz, gx); zeros for a homogeneous block.
        echo_log_field: log-echogenicity heterogeneity on the same grid.
    """

    depth_m: float
    width_m: float
    inclusions: tuple[Inclusion, ...] = ()
    background_log_field: np.ndarray = field(default_factory=lambda: np.zeros((2, 2)))
    echo_log_field: np.ndarray = field(default_factory=lambda: np.zeros((2, 2)))

    def __post_init__(self) -> None:
        _finite_positive("Phantom.depth_m", self.depth_m)
        _finite_positive("Phantom.width_m", self.width_m)
        for i, inc in enumerate(self.inclusions):
            if not (0.0 <= inc.center_z_m <= self.depth_m and 0.0 <= inc.center_x_m <= self.width_m):
                raise ValueError(
                    f"inclusion {i} centre (z={inc.center_z_m * 1e3:.2f} mm, x={inc.center_x_m * 1e3:.2f} mm) "
                    f"lies outside the phantom [0, {self.depth_m * 1e3:.2f}] x [0, {self.width_m * 1e3:.2f}] mm"
                )
        for name in ("background_log_field", "echo_log_field"):
            arr = getattr(self, name)
            if arr.ndim != 2 or min(arr.shape) < 2:
                raise ValueError(f"Phantom.{name} must be a 2-D grid of at least 2 x 2, got {arr.shape}")
            if not np.isfinite(arr).all():
                raise ValueError(f"Phantom.{name} contains NaN or Inf")

    def _grid_interpolator(self, values: np.ndarray) -> RegularGridInterpolator:
        gz = np.linspace(0.0, self.depth_m, values.shape[0])
        gx = np.linspace(0.0, self.width_m, values.shape[1])
        return RegularGridInterpolator((gz, gx), values, bounds_error=False, fill_value=None)

    def _field(self, values: np.ndarray, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        if not values.any():
            return np.zeros(np.broadcast(z, x).shape)
        z, x = np.broadcast_arrays(np.asarray(z, float), np.asarray(x, float))
        pts = np.stack([np.clip(z, 0, self.depth_m).ravel(), np.clip(x, 0, self.width_m).ravel()], -1)
        return self._grid_interpolator(values)(pts).reshape(z.shape)

    def stiffness(self, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Relative Young's modulus at depth ``z`` and lateral ``x`` (metres, broadcastable)."""
        young = np.exp(self._field(self.background_log_field, z, x))
        for inc in self.inclusions:
            young = young * (1.0 + (inc.stiffness_ratio - 1.0) * inc.indicator(z, x))
        return young

    def echogenicity(self, z: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Relative scatterer strength (variance of the reflectivity) at (z, x)."""
        echo = np.exp(self._field(self.echo_log_field, z, x))
        for inc in self.inclusions:
            echo = echo * (1.0 + (inc.echo_ratio - 1.0) * inc.indicator(z, x))
        return echo

    def labels(self, z: np.ndarray, x: np.ndarray, margin_m: float = 0.5e-3) -> np.ndarray:
        """Region labels for ROI statistics, dtype uint8.

        ``k`` (1-based) inside inclusion ``k`` farther than ``margin_m`` from its
        edge, 0 in background farther than ``margin_m`` from every inclusion, and
        255 in the band around edges, which belongs to neither region.
        """
        z, x = np.broadcast_arrays(np.asarray(z, float), np.asarray(x, float))
        out = np.zeros(z.shape, dtype=np.uint8)
        for k, inc in enumerate(self.inclusions, start=1):
            r = inc.normalized_radius(z, x)
            band = margin_m / min(inc.semi_axis_z_m, inc.semi_axis_x_m)
            out[np.abs(r - 1.0) <= band] = 255
            out[(r < 1.0 - band) & (out != 255)] = k
        return out


@dataclass(frozen=True)
class PhantomSpec:
    """Distribution of random phantoms.

    Attributes:
        n_inclusions: inclusive range of the number of inclusions.
        semi_axis_m: range of each semi-axis (m).
        stiffness_ratio: range of inclusion/background stiffness; each inclusion
            is soft or hard with equal probability, log-uniform on the part of the
            range below ``1 / min_contrast`` or above ``min_contrast``.
        min_contrast: smallest stiffness contrast (an inclusion of ratio ~1 is invisible).
        echo_ratio: log-uniform range of the echogenicity ratio.
        background_log_std: std of log-stiffness of the background heterogeneity.
        echo_log_std: std of log-echogenicity of the background.
        correlation_m: correlation length of both heterogeneity fields (m).
        edge_clearance_m: minimum distance between an inclusion and the phantom edge
            or another inclusion (m).
    """

    n_inclusions: tuple[int, int] = (0, 3)
    semi_axis_m: tuple[float, float] = (1.5e-3, 5e-3)
    stiffness_ratio: tuple[float, float] = (0.2, 5.0)
    min_contrast: float = 1.5
    echo_ratio: tuple[float, float] = (0.5, 2.0)
    background_log_std: float = 0.1
    echo_log_std: float = 0.1
    correlation_m: float = 3e-3
    edge_clearance_m: float = 1e-3

    def __post_init__(self) -> None:
        lo, hi = self.n_inclusions
        if not (0 <= lo <= hi <= 8):
            raise ValueError(f"n_inclusions must satisfy 0 <= min <= max <= 8, got {self.n_inclusions}")
        for name in ("semi_axis_m", "stiffness_ratio", "echo_ratio"):
            a, b = getattr(self, name)
            if not (math.isfinite(a) and math.isfinite(b) and 0 < a <= b):
                raise ValueError(f"PhantomSpec.{name} must be a range 0 < min <= max, got {(a, b)}")
        if not (self.stiffness_ratio[0] < 1 / self.min_contrast or self.stiffness_ratio[1] > self.min_contrast):
            raise ValueError("PhantomSpec.stiffness_ratio leaves no contrast beyond min_contrast")
        for name in ("background_log_std", "echo_log_std", "correlation_m", "edge_clearance_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"PhantomSpec.{name} must be finite and >= 0, got {value!r}")


def _random_log_field(rng: np.random.Generator, depth_m: float, width_m: float, corr_m: float, std: float) -> np.ndarray:
    """Gaussian random field with unit-normalised std ``std``, on a grid of ~corr/3 spacing."""
    if std == 0 or corr_m == 0:
        return np.zeros((2, 2))
    spacing = corr_m / 3.0
    shape = (max(int(math.ceil(depth_m / spacing)) + 1, 4), max(int(math.ceil(width_m / spacing)) + 1, 4))
    noise = gaussian_filter(rng.standard_normal(shape), sigma=3.0, mode="wrap")
    return std * (noise - noise.mean()) / (noise.std() + 1e-12)


def _random_ratio(rng: np.random.Generator, spec: PhantomSpec) -> float:
    lo, hi = spec.stiffness_ratio
    soft = (lo, min(hi, 1.0 / spec.min_contrast))
    hard = (max(lo, spec.min_contrast), hi)
    options = [r for r in (soft, hard) if r[0] < r[1]]
    a, b = options[rng.integers(len(options))]
    return float(np.exp(rng.uniform(np.log(a), np.log(b))))


def random_phantom(rng: np.random.Generator, depth_m: float, width_m: float, spec: PhantomSpec = PhantomSpec()) -> Phantom:
    """Draw a phantom from ``spec`` using ``rng`` (same generator state, same phantom)."""
    _finite_positive("depth_m", depth_m)
    _finite_positive("width_m", width_m)
    n_wanted = int(rng.integers(spec.n_inclusions[0], spec.n_inclusions[1] + 1))
    inclusions: list[Inclusion] = []
    for _ in range(200 * max(n_wanted, 1)):
        if len(inclusions) == n_wanted:
            break
        a_z, a_x = rng.uniform(*spec.semi_axis_m, size=2)
        reach = max(a_z, a_x) + spec.edge_clearance_m
        if 2 * reach >= min(depth_m, width_m):
            continue
        cz = rng.uniform(reach, depth_m - reach)
        cx = rng.uniform(reach, width_m - reach)
        if any(
            math.hypot(cz - o.center_z_m, cx - o.center_x_m) < reach + o.max_semi_axis_m + spec.edge_clearance_m
            for o in inclusions
        ):
            continue
        echo = float(np.exp(rng.uniform(*np.log(spec.echo_ratio))))
        inclusions.append(
            Inclusion(cz, cx, a_z, a_x, float(rng.uniform(0, math.pi)), _random_ratio(rng, spec), echo)
        )
    return Phantom(
        depth_m,
        width_m,
        tuple(inclusions),
        _random_log_field(rng, depth_m, width_m, spec.correlation_m, spec.background_log_std),
        _random_log_field(rng, depth_m, width_m, spec.correlation_m, spec.echo_log_std),
    )
