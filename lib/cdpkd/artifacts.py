"""A cache of expensive artifacts (datasets, checkpoints), keyed by what made them.

An artifact lives in ``<root>/<kind>/<key>/`` where ``key`` is a short hash of
the canonical JSON of its parameters. A finished artifact holds
``artifact.json`` (parameters, provenance, build time); a build happens in a
``.partial`` folder renamed into place only when complete, so an interrupted
build is simply redone and a finished one is never half-overwritten.
Notebooks ask for artifacts through :func:`cached`: built if missing, reused
if present, whichever notebook asks first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .atomic import write_json
from .runtime import provenance

MANIFEST = "artifact.json"


def canonical_json(params: Any) -> str:
    """Deterministic JSON text of ``params`` (sorted keys, tuples as lists, no NaN)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_jsonable)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"artifact parameter of type {type(obj).__name__} is not JSON-serialisable: {obj!r}")


def artifact_key(params: Any) -> str:
    """First 16 hex digits of the SHA-256 of the canonical parameters."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()[:16]


def artifact_dir(root: str | os.PathLike, kind: str, params: Any) -> Path:
    """Where the artifact of ``kind`` made from ``params`` lives (whether built or not)."""
    if not kind or "/" in kind or kind.startswith("."):
        raise ValueError(f"artifact kind must be a plain folder name, got {kind!r}")
    return Path(root) / kind / artifact_key(params)


def is_complete(directory: Path) -> bool:
    return (directory / MANIFEST).is_file()


def cached(
    root: str | os.PathLike,
    kind: str,
    params: Any,
    build: Callable[[Path], None],
    *,
    rebuild: bool = False,
) -> Path:
    """Return the folder of a finished artifact, building it first if needed.

    Args:
        root: artifact root (e.g. ``data/<profile>``).
        kind: artifact family (``"sim_dataset"``, ``"teacher"``, ...).
        params: JSON-serialisable parameters that fully determine the artifact.
        build: writes the artifact's files into the (empty) folder it is given.
        rebuild: discard a finished artifact and build it again.
    """
    final = artifact_dir(root, kind, params)
    if is_complete(final) and not rebuild:
        stored = json.loads((final / MANIFEST).read_text())["params"]
        if canonical_json(stored) != canonical_json(params):
            raise RuntimeError(f"artifact key collision in {final}: stored parameters differ")
        return final
    partial = final.with_name(final.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    start = time.perf_counter()
    try:
        build(partial)
        manifest = {
            "kind": kind,
            "params": json.loads(canonical_json(params)),
            "build_seconds": round(time.perf_counter() - start, 3),
            **provenance(),
        }
        write_json(partial / MANIFEST, manifest)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return final
