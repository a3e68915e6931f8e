"""Read RF frames from MATLAB ``.mat`` files: v4/v5/v7 via scipy, v7.3 (HDF5) via h5py.

Orientation: the array is taken as MATLAB stores it, rows = axial samples,
columns = lines, so a 2-D ``rf`` gives one ``(H, W)`` frame. A 3-D array is
MATLAB's ``rf(:, :, k)`` stack (frames on the third axis) unless
``frame_axis`` says otherwise; the frame axis is moved to the front and the
other two keep their order. Nothing is transposed to "fix" orientation.

v7.3 files are HDF5, and MATLAB writes them column-major, so h5py sees every
dataset with its dimensions reversed (an ``H x W`` variable reads as
``(W, H)``); this reader reverses them back, so both versions give the same
frames.

Many acquisition systems pad each line to an aligned length and store the
valid length separately (the Alpinion files: ``BfData`` 2304 rows,
``SampleNum`` = 2195). By default a ``SampleNum`` variable, when present,
crops the frames to its first ``SampleNum`` axial samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .sequence import SPEED_OF_SOUND_M_S, RFSequence, as_frames, resolve_axial_sampling

KNOWN_RF_NAMES: tuple[str, ...] = ("BfData", "rf", "RF", "rfdata", "RFdata", "RFData", "rf_data")
"""Variable names tried, in order, when ``variable`` is not given."""

NUMERIC_CLASSES = frozenset(
    {"double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"}
)
_SMALL = 16  # numeric variables up to this many elements are copied into meta (settings, counts)


@dataclass(frozen=True)
class _MatVariable:
    name: str
    shape: tuple[int, ...]  # MATLAB order (rows first)
    matlab_class: str


def _describe(variables: list[_MatVariable]) -> str:
    if not variables:
        return "(none)"
    return ", ".join(f"{v.name} {'x'.join(map(str, v.shape))} {v.matlab_class}" for v in variables)


def _choose(variables: list[_MatVariable], requested: str | None, path: Path) -> _MatVariable:
    """The RF variable: ``requested``, else the one known name, else the one 2-D/3-D numeric array."""
    by_name = {v.name: v for v in variables}
    if requested is not None:
        if requested not in by_name:
            raise ValueError(
                f"{path}: variable {requested!r} not found; variables found: {_describe(variables)}"
            )
        chosen = by_name[requested]
    else:
        known = [by_name[n] for n in KNOWN_RF_NAMES if n in by_name]
        arrays = [
            v
            for v in variables
            if v.matlab_class in NUMERIC_CLASSES
            and len(v.shape) in (2, 3)
            and sum(d > 1 for d in v.shape) >= 2
        ]
        if len(known) == 1:
            chosen = known[0]
        elif len(known) == 0 and len(arrays) == 1:
            chosen = arrays[0]
        else:
            raise ValueError(
                f"{path}: cannot tell which variable holds the RF data; pass variable=...; "
                f"variables found: {_describe(variables)}"
            )
    if chosen.matlab_class not in NUMERIC_CLASSES:
        raise ValueError(
            f"{path}: variable {chosen.name!r} is a MATLAB {chosen.matlab_class}, not a numeric array"
        )
    return chosen


def _small_numeric(variables: list[_MatVariable], exclude: str) -> list[str]:
    return [
        v.name
        for v in variables
        if v.name != exclude and v.matlab_class in NUMERIC_CLASSES and int(np.prod(v.shape)) <= _SMALL
    ]


def _read_v5(
    path: Path, variable: str | None
) -> tuple[_MatVariable, np.ndarray, dict[str, np.ndarray], dict]:
    import scipy.io

    try:
        major, _ = scipy.io.matlab.matfile_version(path)
        variables = [_MatVariable(n, tuple(s), c) for n, s, c in scipy.io.whosmat(path)]
    except (ValueError, TypeError, OSError, NotImplementedError, scipy.io.matlab.MatReadError) as exc:
        raise ValueError(f"{path}: not a readable MATLAB file: {exc}") from exc
    chosen = _choose(variables, variable, path)
    names = [chosen.name, *_small_numeric(variables, chosen.name)]
    data = scipy.io.loadmat(path, variable_names=names, squeeze_me=False)
    header = data.get("__header__", b"")
    info = {
        "format": "mat-v4" if major == 0 else "mat-v5",  # v6 / v7 files are v5-format too
        "header": header.decode("latin-1") if isinstance(header, bytes) else str(header),
        "variables": {v.name: {"shape": list(v.shape), "class": v.matlab_class} for v in variables},
    }
    small = {n: np.asarray(data[n]) for n in names[1:] if n in data}
    return chosen, np.asarray(data[chosen.name]), small, info


def _read_v73(
    path: Path, variable: str | None
) -> tuple[_MatVariable, np.ndarray, dict[str, np.ndarray], dict]:
    import h5py

    def matlab_class(obj: Any) -> str:
        if isinstance(obj, h5py.Group):
            return "struct"
        value = obj.attrs.get("MATLAB_class", b"unknown")
        return value.decode() if isinstance(value, bytes) else str(value)

    def load(ds: Any) -> np.ndarray:
        if ds.dtype.names is not None:  # complex is stored as a {real, imag} compound
            raise ValueError(f"{path}: variable {ds.name.lstrip('/')!r} is complex; RF must be real")
        return np.asarray(ds[()]).T  # undo MATLAB's column-major dimension reversal

    with h5py.File(path, "r") as fh:
        # '#refs#' / '#subsystem#' hold MATLAB internals, not user variables
        items = [(name, obj) for name, obj in fh.items() if not name.startswith("#")]
        variables = [
            _MatVariable(
                name, tuple(reversed(obj.shape)) if isinstance(obj, h5py.Dataset) else (), matlab_class(obj)
            )
            for name, obj in items
        ]
        chosen = _choose(variables, variable, path)
        array = load(fh[chosen.name])
        small = {n: load(fh[n]) for n in _small_numeric(variables, chosen.name)}
    info = {
        "format": "mat-v7.3",
        "variables": {v.name: {"shape": list(v.shape), "class": v.matlab_class} for v in variables},
    }
    return chosen, array, small, info


def _sample_count(sample_count: int | str | None, small: dict[str, np.ndarray], n_rows: int, path: Path):
    """``(count, source)`` of valid axial samples, or ``(None, None)`` when nothing says to crop."""
    if sample_count is None:
        return None, None
    if isinstance(sample_count, str):
        if sample_count not in small:
            return None, None
        value = small[sample_count].ravel()
        if value.size != 1:
            raise ValueError(f"{path}: {sample_count} must be a scalar, got {value.size} values")
        source, count = sample_count, value[0]
    else:
        source, count = "argument", sample_count
    if float(count) != int(count) or not 1 <= int(count) <= n_rows:
        raise ValueError(
            f"{path}: valid sample count {source} = {count} must be an integer in 1..{n_rows} (rows)"
        )
    return int(count), source


def read_mat(
    path: str | Path,
    variable: str | None = None,
    *,
    fs_hz: float | None = None,
    fc_hz: float | None = None,
    pitch_m: float | None = None,
    sample_count: int | str | None = "SampleNum",
    frame_axis: int = 2,
    c_m_s: float = SPEED_OF_SOUND_M_S,
) -> RFSequence:
    """Read RF frames from a MATLAB ``.mat`` file (v4/v5/v7 or v7.3).

    Args:
        path: the ``.mat`` file.
        variable: variable holding the RF array; by default the one of
            :data:`KNOWN_RF_NAMES` present, else the only 2-D/3-D numeric array.
        fs_hz: axial sampling frequency (Hz); ``.mat`` files rarely say, so it is
            ``None`` unless given (``dz_m`` is then derived as ``c / (2 fs)``).
        fc_hz: centre frequency (Hz), ``None`` unless given.
        pitch_m: line pitch (m), ``None`` unless given.
        sample_count: valid axial samples: a variable name (used when present,
            default ``"SampleNum"``), an explicit int, or ``None`` to keep all rows.
            Frames are cropped to rows ``[0, count)``.
        frame_axis: axis of a 3-D array (MATLAB order) that indexes frames; default 2.
        c_m_s: speed of sound (m/s) for the fs <-> dz conversion.

    Returns:
        RFSequence with float32 frames ``(F, H, W)``; ``meta`` lists the file's
        variables, small numeric variables (``meta["scalars"]``) and the crop.

    Raises:
        FileNotFoundError: missing file.
        ValueError: unreadable file, variable not found / ambiguous (the message
            lists the variables found), non-numeric or complex data, bad sample
            count, non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MATLAB file not found: {path}")
    import h5py

    reader = _read_v73 if h5py.is_hdf5(path) else _read_v5
    chosen, array, small, info = reader(path, variable)

    if array.ndim == 3:
        if not -3 <= frame_axis <= 2:
            raise ValueError(f"frame_axis must be in -3..2 for a 3-D array, got {frame_axis}")
        array = np.moveaxis(array, frame_axis, 0)
    elif array.ndim != 2:
        raise ValueError(f"{path}: variable {chosen.name!r} has shape {array.shape}; expected 2-D or 3-D")
    n_rows = array.shape[-2]
    count, count_source = _sample_count(sample_count, small, n_rows, path)
    if count is not None:
        array = array[..., :count, :]
    frames = as_frames(array, f"{path}:{chosen.name}")

    fs, fs_source, dz, dz_source = resolve_axial_sampling(fs_hz, None, c_m_s)
    meta: dict[str, Any] = {
        **info,
        "variable": chosen.name,
        "stored_shape": list(chosen.shape),
        "scalars": {n: v.ravel()[0].item() if v.size == 1 else v.ravel().tolist() for n, v in small.items()},
        "sample_count": count,
        "sample_count_source": count_source,
        "cropped_samples": n_rows - count if count is not None else 0,
        "frame_axis": frame_axis if array.ndim == 3 else None,
        "pitch_source": "argument" if pitch_m is not None else "unknown",
    }
    return RFSequence(
        frames=frames,
        fs_hz=fs,
        dz_m=dz,
        pitch_m=None if pitch_m is None else float(pitch_m),
        fc_hz=None if fc_hz is None else float(fc_hz),
        source=path,
        meta=meta,
        fs_source=fs_source,
        dz_source=dz_source,
        c_m_s=float(c_m_s),
    )
