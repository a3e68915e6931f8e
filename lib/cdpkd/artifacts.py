"""A cache of expensive artifacts (datasets, checkpoints), keyed by what made them.

An artifact lives in ``<root>/<kind>/<key>/`` where ``key`` is a short hash of
the canonical JSON of its parameters. A finished artifact holds
``artifact.json`` (parameters, provenance, build time); a build happens in a
``.partial`` folder renamed into place only when complete, so an interrupted
build is simply redone and a finished one is never half-overwritten. A build
killed outright (SIGKILL, out of memory) cannot clean up after itself; the next
build of the same artifact on the same host removes its ``.partial`` folder
(named by host and process id, so builds on other hosts sharing the cache are
left alone).
Notebooks ask for artifacts through :func:`cached`: built if missing, reused
if present, whichever notebook asks first.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
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


def _partial_prefix(final: Path) -> str:
    """``<key>.partial-<host>-``: the prefix of this host's build folders of ``final``."""
    return f"{final.name}.partial-{socket.gethostname() or 'host'}-"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_partials(final: Path) -> list[Path]:
    """Remove the build folders of ``final`` left by this host's processes that no longer run
    (a build killed before its ``finally`` could clean up); return what was removed."""
    prefix = _partial_prefix(final)
    removed = []
    for folder in final.parent.glob(prefix + "*") if final.parent.is_dir() else []:
        pid = folder.name[len(prefix):]
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


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
    remove_stale_partials(final)
    partial = final.with_name(_partial_prefix(final) + str(os.getpid()))
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
