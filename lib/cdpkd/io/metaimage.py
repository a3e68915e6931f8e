"""Read MetaImage RF (``.mhd`` header + ``.raw`` data, or one-file ``.mha``) into an RFSequence.

Orientation: MetaImage lists ``DimSize`` fastest axis first (x, y[, z]). Read
in C order the array is ``(z, y, x)``; this reader takes x = lines, y = axial
samples, z = frames, i.e. ``DimSize = W H [F]`` gives frames ``(F, H, W)``.
This is the layout of the in vivo forearm sequences (``DimSize = 128 2000 6``,
``ElementSpacing = 0.2 0.02 1`` mm) and of ``SimpleITK.GetArrayFromImage``.
Nothing is ever transposed, and ``TransformMatrix`` / orientation fields are
kept in ``meta`` but not applied.

Pixels are read by SimpleITK when it is installed (``backend="auto"``), else
by a small numpy parser for the plain case: one uncompressed binary data file
(or ``LOCAL``), fixed-size element types, either byte order, ``HeaderSize``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .mhd_header import ELEMENT_DTYPES, MetaImageHeader, parse_header
from .sequence import SPEED_OF_SOUND_M_S, RFSequence, as_frames, resolve_axial_sampling

Backend = Literal["auto", "simpleitk", "numpy"]

_TIMESTAMP_KEY = re.compile(r"^Seq_Frame(\d+)_Timestamp$", re.IGNORECASE)


def _import_simpleitk() -> Any:
    try:
        import SimpleITK
    except ImportError as exc:
        raise ImportError(
            "backend='simpleitk' needs the SimpleITK package (pip install SimpleITK); "
            "backend='numpy' reads uncompressed .mhd/.raw without it"
        ) from exc
    return SimpleITK


def _simpleitk_available() -> bool:
    try:
        _import_simpleitk()
    except ImportError:
        return False
    return True


def _data_location(header: MetaImageHeader, expected_bytes: int) -> tuple[Path, int] | None:
    """``(data file, byte offset)`` for a single uncompressed data file, checked against its size.

    Returns ``None`` for forms only SimpleITK reads (compressed, LIST, patterns).
    Raises FileNotFoundError / ValueError naming expected and actual byte counts.
    """
    data_path = header.single_data_path()
    if header.compressed or data_path is None:
        return None
    if not data_path.is_file():
        raise FileNotFoundError(
            f"MetaImage data file not found: {data_path} (ElementDataFile of {header.path})"
        )
    size = data_path.stat().st_size
    if data_path == header.path:  # LOCAL: pixels follow the header text
        offset = header.data_offset
    else:
        header_size = int(float(header.get("HeaderSize", "0")))
        if header_size == -1:  # MetaIO: "the data are the last bytes of the file"
            offset = max(size - expected_bytes, 0)
        elif header_size < 0:
            raise ValueError(f"{header.path}: invalid HeaderSize {header_size}")
        else:
            offset = header_size
    actual = size - offset
    what = f"DimSize {header.get('DimSize')} of {header.element_type}"
    if actual < expected_bytes:
        raise ValueError(
            f"{data_path}: truncated MetaImage data: {what} gives expected {expected_bytes} bytes, "
            f"actual {actual} bytes after a {offset}-byte offset"
        )
    if actual > expected_bytes:
        raise ValueError(
            f"{data_path}: header/data size mismatch: {what} gives expected {expected_bytes} bytes, "
            f"actual {actual} bytes after a {offset}-byte offset (check DimSize, ElementType, HeaderSize)"
        )
    return data_path, offset


def _read_numpy(header: MetaImageHeader, shape: tuple[int, ...]) -> np.ndarray:
    if header.compressed:
        raise ValueError(
            f"{header.path}: CompressedData = True is not supported by the numpy reader; "
            "install SimpleITK and use backend='auto' or 'simpleitk'"
        )
    # MetaIO writers put BinaryData = True; an absent field is taken as binary (.raw files are)
    if not header.flag("BinaryData", default=True):
        raise ValueError(f"{header.path}: ASCII pixel data (BinaryData = False) is not supported")
    dtype = header.numpy_dtype()
    location = _data_location(header, int(np.prod(shape)) * dtype.itemsize)
    if location is None:
        raise ValueError(
            f"{header.path}: ElementDataFile = {header.data_file!r} (LIST / file pattern) is not "
            "supported by the numpy reader; install SimpleITK"
        )
    data_path, offset = location
    return np.fromfile(data_path, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)


def _read_simpleitk(header: MetaImageHeader, shape: tuple[int, ...]) -> np.ndarray:
    sitk = _import_simpleitk()
    code = ELEMENT_DTYPES.get(header.element_type)
    if code is not None:  # size-check what we can, for clearer errors than ITK's
        _data_location(header, int(np.prod(shape)) * np.dtype(code).itemsize)
    try:
        image = sitk.ReadImage(str(header.path))
    except RuntimeError as exc:
        raise ValueError(f"{header.path}: SimpleITK could not read the image: {exc}") from exc
    array = sitk.GetArrayFromImage(image)
    if array.shape != shape:
        raise ValueError(f"{header.path}: SimpleITK returned shape {array.shape}, header implies {shape}")
    return array


def _frame_timestamps(header: MetaImageHeader, n_frames: int) -> list[float] | None:
    """Per-frame ``Seq_FrameNNNN_Timestamp`` values (s), in frame-number order, if one per frame."""
    stamps = []
    for key, value in header.fields.items():
        match = _TIMESTAMP_KEY.match(key)
        if match:
            stamps.append((int(match.group(1)), float(value)))
    if len(stamps) != n_frames:
        return None
    return [t for _, t in sorted(stamps)]


def read_metaimage(
    path: str | Path,
    *,
    fs_hz: float | None = None,
    fc_hz: float | None = None,
    pitch_m: float | None = None,
    c_m_s: float = SPEED_OF_SOUND_M_S,
    spacing_unit_m: float = 1e-3,
    backend: Backend = "auto",
) -> RFSequence:
    """Read a 2-D (one frame) or 3-D (frames) MetaImage RF file.

    Args:
        path: the ``.mhd`` header (data file from its ``ElementDataFile``) or a ``.mha``.
        fs_hz: axial sampling frequency (Hz); by default derived from the axial
            ``ElementSpacing`` as ``c / (2 dz)`` (``fs_source`` says which).
        fc_hz: centre frequency (Hz); MetaImage has no field for it, so ``None`` unless given.
        pitch_m: line pitch (m); overrides the lateral ``ElementSpacing`` when given.
        c_m_s: speed of sound (m/s) for the fs <-> dz conversion.
        spacing_unit_m: metres per ``ElementSpacing`` unit (MetaImage / ITK use mm).
        backend: ``"auto"`` (SimpleITK if installed, else numpy), ``"simpleitk"`` or ``"numpy"``.

    Returns:
        RFSequence with float32 frames ``(F, H, W)`` (F = 1 for a 2-D file).

    Raises:
        FileNotFoundError: header or data file missing.
        ValueError: truncated data / header-data size mismatch (expected vs actual
            bytes), non-finite values, unsupported element type, compression
            (numpy backend), more than one channel, not 2-D/3-D.
        ImportError: ``backend="simpleitk"`` without SimpleITK installed.
    """
    if backend not in ("auto", "simpleitk", "numpy"):
        raise ValueError(f"backend must be 'auto', 'simpleitk' or 'numpy', got {backend!r}")
    header = parse_header(path)
    dims = header.dim_size
    if len(dims) not in (2, 3):
        raise ValueError(f"{header.path}: expected a 2-D or 3-D image, DimSize = {dims}")
    if header.channels != 1:
        raise ValueError(f"{header.path}: ElementNumberOfChannels = {header.channels}; RF must be scalar")
    shape = tuple(reversed(dims))  # C order: (frames,) axial, lines

    use_sitk = backend == "simpleitk" or (backend == "auto" and _simpleitk_available())
    array = _read_simpleitk(header, shape) if use_sitk else _read_numpy(header, shape)
    frames = as_frames(array, header.path)

    spacing = header.numbers("ElementSpacing") or header.numbers("ElementSize")
    if spacing is not None and len(spacing) != len(dims):
        raise ValueError(f"{header.path}: ElementSpacing has {len(spacing)} values for {len(dims)} dims")
    header_pitch = spacing[0] * spacing_unit_m if spacing else None
    header_dz = spacing[1] * spacing_unit_m if spacing else None
    fs, fs_source, dz, dz_source = resolve_axial_sampling(fs_hz, header_dz, c_m_s)

    meta: dict[str, Any] = {
        "format": "metaimage",
        "backend": "simpleitk" if use_sitk else "numpy",
        "header": dict(header.fields),
        "dim_size": dims,
        "element_spacing": spacing,
        "spacing_unit_m": spacing_unit_m,
        "pitch_source": "argument" if pitch_m is not None else ("header" if spacing else "unknown"),
    }
    stamps = _frame_timestamps(header, frames.shape[0])
    if stamps is not None:
        meta["frame_timestamps_s"] = stamps
    return RFSequence(
        frames=frames,
        fs_hz=fs,
        dz_m=dz,
        pitch_m=float(pitch_m) if pitch_m is not None else header_pitch,
        fc_hz=None if fc_hz is None else float(fc_hz),
        source=header.path,
        meta=meta,
        fs_source=fs_source,
        dz_source=dz_source,
        c_m_s=float(c_m_s),
    )
