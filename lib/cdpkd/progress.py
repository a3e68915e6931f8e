"""Progress bars that stay quiet where nobody watches.

Interactive sessions (a terminal, JupyterLab) get a tqdm bar; batch runs
(papermill, nbval, CI) set ``CDPKD_PROGRESS=0`` so their logs stay clean.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    """False when ``CDPKD_PROGRESS`` is ``0``/``false``/``no``, else True."""
    return os.environ.get("CDPKD_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")


def progress(iterable: Iterable[T], total: int | None = None, desc: str | None = None) -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm bar when progress display is enabled."""
    if not progress_enabled():
        yield from iterable
        return
    from tqdm.auto import tqdm

    yield from tqdm(iterable, total=total, desc=desc, leave=False)
