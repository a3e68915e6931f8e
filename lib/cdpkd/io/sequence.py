"""The in-memory RF sequence every reader returns, and the checks it guarantees.

Arrays are frames x axial samples x lines, ``(F, H, W)``, float32, C-contiguous
and finite. Axial sampling can be known as a frequency (``fs_hz``) or as a
spacing (``dz_m``); one gives the other through the pulse-echo relation
``dz = c / (2 fs)``, and ``fs_source`` / ``dz_source`` record which one was
measured and which was derived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPEED_OF_SOUND_M_S = 1540.0
"""Soft-tissue speed of sound assumed when converting axial spacing <-> sampling rate."""


def as_frames(array: np.ndarray, source: str | Path) -> np.ndarray:
    """Return ``array`` as float32, C-contiguous ``(F, H, W)`` frames, refusing non-finite values.

    ``array`` must already be ``(H, W)`` (one frame) or ``(F, H, W)``; it is
    never transposed here, so orientation stays the caller's documented choice.
    """
    arr = np.asarray(array)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{source}: RF data must be real numeric, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3:
        raise ValueError(f"{source}: RF data must be 2-D (H, W) or 3-D (F, H, W), got shape {arr.shape}")
    if min(arr.shape) == 0:
        raise ValueError(f"{source}: RF data is empty, shape {arr.shape}")
    frames = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(frames)
    if not finite.all():
        bad = np.argwhere(~finite)
        f, h, w = (int(v) for v in bad[0])
        raise ValueError(
            f"{source}: {len(bad)} non-finite value(s) (NaN/inf) in the RF data, "
            f"first at frame {f}, axial sample {h}, line {w}"
        )
    return frames


def resolve_axial_sampling(
    fs_hz: float | None,
    dz_m: float | None,
    c_m_s: float = SPEED_OF_SOUND_M_S,
    fs_from: str = "argument",
    dz_from: str = "header",
) -> tuple[float | None, str, float | None, str]:
    """Complete ``(fs_hz, fs_source, dz_m, dz_source)`` from whichever of fs / dz is known.

    ``fs_from`` / ``dz_from`` label a value that was given; a missing one is
    derived with ``dz = c / (2 fs)`` and labelled ``"derived (c = ... m/s)"``;
    when neither is known both are ``None`` with source ``"unknown"``.
    """
    for name, value in (("fs_hz", fs_hz), ("dz_m", dz_m)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    derived = f"derived (c = {c_m_s:g} m/s)"
    fs_src = fs_from if fs_hz is not None else "unknown"
    dz_src = dz_from if dz_m is not None else "unknown"
    if fs_hz is None and dz_m is not None:
        fs_hz, fs_src = c_m_s / (2.0 * dz_m), derived
    elif dz_m is None and fs_hz is not None:
        dz_m, dz_src = c_m_s / (2.0 * fs_hz), derived
    return (
        None if fs_hz is None else float(fs_hz),
        fs_src,
        None if dz_m is None else float(dz_m),
        dz_src,
    )


@dataclass(frozen=True, eq=False)
class RFSequence:
    """RF frames with their sampling metadata.

    Attributes:
        frames: float32 ``(F, H, W)``: F frames, H axial samples (depth), W lines.
        fs_hz: axial sampling frequency (Hz), or ``None`` when unknown.
        dz_m: axial sample spacing (m), or ``None`` when unknown.
        pitch_m: lateral distance between lines (m), or ``None`` when unknown.
        fc_hz: transmit centre frequency (Hz), or ``None`` when unknown.
        source: file the frames were read from.
        meta: raw header fields / file variables plus reader notes (JSON-friendly).
        fs_source: where ``fs_hz`` came from: ``"argument"``, ``"derived (c = 1540 m/s)"``
            (from ``dz_m``) or ``"unknown"``.
        dz_source: where ``dz_m`` came from: ``"header"``, ``"derived (c = 1540 m/s)"``
            (from ``fs_hz``) or ``"unknown"``.
        c_m_s: speed of sound (m/s) used for any fs <-> dz derivation.
    """

    frames: np.ndarray
    fs_hz: float | None
    dz_m: float | None
    pitch_m: float | None
    fc_hz: float | None
    source: Path
    meta: dict[str, Any] = field(default_factory=dict)
    fs_source: str = "unknown"
    dz_source: str = "unknown"
    c_m_s: float = SPEED_OF_SOUND_M_S

    def __post_init__(self) -> None:
        f = self.frames
        if not isinstance(f, np.ndarray) or f.ndim != 3 or f.dtype != np.float32:
            raise ValueError("RFSequence.frames must be a float32 (F, H, W) numpy array; use as_frames()")
        if not f.flags.c_contiguous:
            raise ValueError("RFSequence.frames must be C-contiguous; use as_frames()")

    @property
    def n_frames(self) -> int:
        """Number of frames F."""
        return int(self.frames.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(H, W)``: axial samples x lines of one frame."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    def __len__(self) -> int:
        return self.n_frames

    def pair(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Return copies of frames ``i`` (pre) and ``j`` (post), each float32 ``(H, W)``.

        Indices must lie in ``[0, F)``; negative indices are refused rather than
        wrapped, because a wrapped index silently picks a different pair.
        ``i == j`` is allowed (a zero-motion sanity pair). Copies, so editing a
        pair never changes the sequence.
        """
        for name, idx in (("i", i), ("j", j)):
            if isinstance(idx, bool) or not isinstance(idx, int | np.integer):
                raise TypeError(f"pair index {name} must be an int, got {type(idx).__name__}")
            if not 0 <= idx < self.n_frames:
                raise ValueError(
                    f"pair index {name}={idx} out of range: {self.source} has {self.n_frames} frame(s) "
                    f"(valid 0..{self.n_frames - 1})"
                )
        return self.frames[i].copy(), self.frames[j].copy()
