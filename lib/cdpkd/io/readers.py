"""Format dispatch (``read_rf``) and pre/post frame pairs from two files (``load_pair``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .matfile import read_mat
from .metaimage import read_metaimage
from .sequence import RFSequence

_READERS = {".mhd": read_metaimage, ".mha": read_metaimage, ".mat": read_mat}


def read_rf(path: str | Path, **kwargs: Any) -> RFSequence:
    """Read an RF file, choosing the reader by extension.

    ``.mhd`` / ``.mha`` go to :func:`~cdpkd.io.metaimage.read_metaimage`, ``.mat``
    to :func:`~cdpkd.io.matfile.read_mat`; ``kwargs`` are passed on (``fs_hz``,
    ``fc_hz`` and ``pitch_m`` are accepted by both).

    Raises:
        ValueError: unknown extension (a ``.raw`` names its ``.mhd`` header instead).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        hint = f"; open the .mhd header ({path.with_suffix('.mhd').name}) instead" if suffix == ".raw" else ""
        raise ValueError(
            f"{path}: unknown RF file extension {path.suffix!r}; supported: {', '.join(_READERS)}{hint}"
        )
    return reader(path, **kwargs)


def _same(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-6))


def load_pair(
    pre_path: str | Path, post_path: str | Path, **kwargs: Any
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read a pre- and a post-compression frame from two single-frame files.

    Both files are read by :func:`read_rf` with the same ``kwargs``.

    Returns:
        ``(pre, post, meta)``: float32 ``(H, W)`` frames (axial x lines) and a
        dict with ``shape``, ``fs_hz``, ``fs_source``, ``dz_m``, ``pitch_m``,
        ``fc_hz``, ``c_m_s``, ``pre_source``, ``post_source`` and the two readers'
        ``pre_meta`` / ``post_meta``.

    Raises:
        ValueError: a file holds more than one frame (use ``RFSequence.pair``),
            the two frame shapes differ, or their sampling metadata differ.
    """
    pre, post = read_rf(pre_path, **kwargs), read_rf(post_path, **kwargs)
    for seq in (pre, post):
        if seq.n_frames != 1:
            raise ValueError(
                f"{seq.source}: holds {seq.n_frames} frames; load_pair expects single-frame files "
                "(use read_rf(...).pair(i, j) for a sequence)"
            )
    if pre.frame_shape != post.frame_shape:
        raise ValueError(
            f"pre/post shape mismatch: {pre.source} is {pre.frame_shape}, {post.source} is {post.frame_shape} "
            "(axial samples x lines)"
        )
    for name in ("fs_hz", "dz_m", "pitch_m", "fc_hz"):
        a, b = getattr(pre, name), getattr(post, name)
        if not _same(a, b):
            raise ValueError(f"pre/post {name} mismatch: {pre.source} has {a}, {post.source} has {b}")
    meta: dict[str, Any] = {
        "shape": pre.frame_shape,
        "fs_hz": pre.fs_hz,
        "fs_source": pre.fs_source,
        "dz_m": pre.dz_m,
        "pitch_m": pre.pitch_m,
        "fc_hz": pre.fc_hz,
        "c_m_s": pre.c_m_s,
        "pre_source": str(pre.source),
        "post_source": str(post.source),
        "pre_meta": pre.meta,
        "post_meta": post.meta,
    }
    return pre.frames[0], post.frames[0], meta
