"""Pacing functions: which fraction of the pairs, easiest first, training may draw from at a step.

With ``t = step / T`` and ``T = end_step_fraction * total_steps`` (the step
from which every pair is available), ``s0 = start_fraction``:

============  ==========================================  ==================================
name          fraction for ``step < T``                   shape
============  ==========================================  ==================================
``linear``    ``s0 + (1 - s0) t``                         constant rate of new pairs
``root``      ``(s0^p + (1 - s0^p) t)^(1/p)``, ``p = 2``  fast at first, then slower
``geometric`` ``s0 * (1 / s0)^t``                         slow at first, then faster
============  ==========================================  ==================================

and 1 from ``T`` on. These are the competence functions of Platanios et al.
(NAACL 2019), as tabulated in Wang, Chen & Zhu's curriculum learning survey
(TPAMI 2021); Hacohen & Weinshall (ICML 2019) call the same idea a pacing
function. Each is monotone non-decreasing, equals ``s0`` at step 0 and 1.0
from ``T`` on.
"""

from __future__ import annotations

import math

import numpy as np

#: Names accepted by :func:`pacing`.
PACINGS = ("linear", "root", "geometric")


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def check_pacing(
    name: str, total_steps: int, start_fraction: float, end_step_fraction: float, power: float = 2.0
) -> None:
    """Raise ValueError naming the bad setting (shared by :func:`pacing` and ``CurriculumBatches``)."""
    if name not in PACINGS:
        raise ValueError(f"pacing must be one of {PACINGS}, got {name!r}")
    if not _is_int(total_steps) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    if not (isinstance(start_fraction, (int, float, np.floating)) and 0 < start_fraction <= 1):
        raise ValueError(f"start_fraction must be in (0, 1], got {start_fraction!r}")
    if not (isinstance(end_step_fraction, (int, float, np.floating)) and 0 <= end_step_fraction <= 1):
        raise ValueError(f"end_step_fraction must be in [0, 1], got {end_step_fraction!r}")
    if not (isinstance(power, (int, float, np.floating)) and math.isfinite(power) and power > 0):
        raise ValueError(f"power of the root pacing must be a positive number, got {power!r}")


def pacing(
    name: str,
    step: int,
    total_steps: int,
    start_fraction: float = 0.2,
    end_step_fraction: float = 0.5,
    *,
    power: float = 2.0,
) -> float:
    """Fraction of the pairs (easiest first) available at ``step`` (0-based optimizer step).

    Args:
        name: ``"linear"``, ``"root"`` or ``"geometric"`` (see the module docstring).
        step: 0-based optimizer step (as passed to ``loss_fn`` and hooks); steps past
            ``total_steps`` give 1.0.
        total_steps: length of the run (``FitConfig.steps``).
        start_fraction: fraction available at step 0, in (0, 1].
        end_step_fraction: every pair is available from step ``end_step_fraction *
            total_steps`` on, in [0, 1] (0 = no curriculum).
        power: ``p`` of the root pacing (2 = square root).

    Returns:
        A float in ``[start_fraction, 1]``.
    """
    check_pacing(name, total_steps, start_fraction, end_step_fraction, power)
    if not _is_int(step) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    s0 = float(start_fraction)
    end = end_step_fraction * total_steps
    if step >= end:
        return 1.0
    if step == 0:
        return s0
    t = step / end
    if name == "linear":
        f = s0 + (1.0 - s0) * t
    elif name == "root":
        a = s0**power
        f = (a + (1.0 - a) * t) ** (1.0 / power)
    else:  # geometric
        f = math.exp(math.log(s0) * (1.0 - t))
    return min(1.0, max(s0, f))


def pacing_curve(
    name: str,
    total_steps: int,
    start_fraction: float = 0.2,
    end_step_fraction: float = 0.5,
    *,
    power: float = 2.0,
) -> np.ndarray:
    """:func:`pacing` at every step ``0 .. total_steps - 1`` (for plots and tables)."""
    check_pacing(name, total_steps, start_fraction, end_step_fraction, power)
    return np.array(
        [
            pacing(name, s, total_steps, start_fraction, end_step_fraction, power=power)
            for s in range(total_steps)
        ]
    )


__all__ = ["PACINGS", "check_pacing", "pacing", "pacing_curve"]
