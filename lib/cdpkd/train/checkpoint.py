"""Checkpoints without pickle: atomic folders, SHA-256 verified, listed in a manifest.

Layout of a run folder ``out_dir``::

    manifest.json                     every checkpoint: files + SHA-256, step, profile, seed, git SHA, date
    checkpoints/step_00000100/
        state.pt                      torch.save of plain containers: model, optimizer, GradScaler,
                                      hook states, trainable loss-module state, torch RNG tensors
        rng.json                      NumPy / Python RNG states (per rank)
        model_config.json             model.config.to_dict(), when the model has one
        meta.json                     step, data position, FitConfig, provenance, SHA-256 of the files above

A checkpoint folder is written under a temporary name and renamed into place
(atomic on POSIX), then the manifest is replaced atomically; a crash at any
point leaves either the old or the new checkpoint list, never a half-written
entry. ``state.pt`` is only ever read with ``torch.load(weights_only=True)``,
after its SHA-256 has been checked against the manifest and ``meta.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import write_json
from ..runtime import device_description, git_sha, utc_now
from .distributed import unwrap
from .hooks import check_plain, hook_name

FORMAT = "cdpkd.train.checkpoint/1"
MANIFEST_FORMAT = "cdpkd.train.manifest/1"
MANIFEST_NAME = "manifest.json"
CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.pt"
RNG_FILE = "rng.json"
MODEL_CONFIG_FILE = "model_config.json"
META_FILE = "meta.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted, tampered with, or does not fit the model."""


# --- small helpers ---------------------------------------------------------------


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint after ``step`` updates (sorts by step)."""
    return f"step_{step:08d}"


def model_config_dict(model: nn.Module) -> dict[str, Any] | None:
    """``model.config.to_dict()`` when the model carries a config, else None."""
    config = getattr(unwrap(model), "config", None)
    to_dict = getattr(config, "to_dict", None)
    return to_dict() if callable(to_dict) else None


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """State of the trainable part of a module (e.g. adapters in a distillation loss).

    Keeps trainable parameters and the buffers of submodules that hold any
    trainable parameter; a frozen teacher inside the module is left out (it has
    its own checkpoint and would only bloat this one).
    """
    state = module.state_dict()
    keep = {name for name, p in module.named_parameters() if p.requires_grad}
    for prefix, sub in module.named_modules():
        if any(p.requires_grad for p in sub.parameters()):
            keep.update(f"{prefix}.{b}" if prefix else b for b, _ in sub.named_buffers(recurse=False))
    return {k: v for k, v in state.items() if k in keep}


# --- RNG states ------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """This process's RNG states: torch CPU/CUDA as tensors, NumPy/Python as JSON-able values."""
    np_state = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is what third-party code uses
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "bit_generator": np_state[0],
            "key": [int(x) for x in np_state[1]],
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_version, list(py_internal), py_gauss],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch_cpu"])
    cuda_states = state.get("torch_cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) != torch.cuda.device_count():
            warnings.warn(
                f"checkpoint has CUDA RNG states for {len(cuda_states)} device(s), this machine has "
                f"{torch.cuda.device_count()}; restoring the first {min(len(cuda_states), torch.cuda.device_count())}",
                stacklevel=2,
            )
        for i, s in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            n["bit_generator"],
            np.array(n["key"], dtype=np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --- manifest --------------------------------------------------------------------


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's manifest (an empty one when the folder has none yet)."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.exists():
        return {"format": MANIFEST_FORMAT, "checkpoints": []}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint manifest {path} is not valid JSON ({exc}); it was corrupted or edited"
        ) from exc
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != MANIFEST_FORMAT
        or not isinstance(manifest.get("checkpoints"), list)
    ):
        raise CheckpointError(
            f"checkpoint manifest {path} is not a {MANIFEST_FORMAT} manifest; it was corrupted or edited"
        )
    return manifest


def list_checkpoints(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Manifest entries of ``out_dir``, oldest first (not verified)."""
    return sorted(read_manifest(out_dir)["checkpoints"], key=lambda e: e["step"])


def _check_file(path: Path, expected: str, source: str) -> None:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} is missing (listed in {source})")
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(
            f"checkpoint file {path} is corrupted or was modified: its SHA-256 is {actual}, "
            f"{source} says {expected}"
        )


def verify_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Check every file of a checkpoint folder against its SHA-256; return its ``meta.json``.

    Hashes come from the run's ``manifest.json`` (two levels up) when there is
    one, and from the folder's own ``meta.json`` (so a copied checkpoint folder
    still verifies). Raises :class:`CheckpointError` naming the offending file.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    out_dir = path.parent.parent
    manifest_path = out_dir / MANIFEST_NAME
    if path.parent.name == CHECKPOINT_DIR and manifest_path.exists():
        entries = [e for e in read_manifest(out_dir)["checkpoints"] if e.get("name") == path.name]
        if not entries:
            raise CheckpointError(
                f"checkpoint {path} is not listed in {manifest_path}: an interrupted save or a foreign folder"
            )
        for name, digest in entries[0].get("files", {}).items():
            _check_file(path / name, digest, str(manifest_path))
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"checkpoint file {meta_path} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint file {meta_path} is not valid JSON ({exc})") from exc
    if (
        meta.get("format") != FORMAT
        or not isinstance(meta.get("files"), dict)
        or STATE_FILE not in meta["files"]
    ):
        raise CheckpointError(f"checkpoint file {meta_path} is not a {FORMAT} checkpoint description")
    for name, digest in meta["files"].items():
        _check_file(path / name, digest, str(meta_path))
    return meta


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of ``out_dir`` that verifies, or None if the run has none.

    Invalid newer checkpoints are skipped with a warning saying why; if every
    listed checkpoint is invalid a :class:`CheckpointError` lists the reasons
    (silently starting over would overwrite the run).
    """
    out_dir = Path(out_dir)
    entries = list_checkpoints(out_dir)
    problems = []
    for entry in reversed(entries):
        path = out_dir / entry["path"]
        try:
            verify_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            warnings.warn(f"skipping invalid checkpoint: {exc}", stacklevel=2)
            continue
        return path
    if problems:
        raise CheckpointError(f"no valid checkpoint in {out_dir}:\n  " + "\n  ".join(problems))
    return None


# --- save ------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _remove_stale(ckpt_root: Path, listed: set[str]) -> None:
    """Remove leftovers of interrupted saves: temp folders and step folders the manifest does not list."""
    for child in ckpt_root.iterdir():
        if child.is_dir() and (
            child.name.startswith((".tmp-", ".old-"))
            or (child.name.startswith("step_") and child.name not in listed)
        ):
            shutil.rmtree(child, ignore_errors=True)


def save_checkpoint(
    out_dir: str | os.PathLike,
    step: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    hooks: Sequence[Any] = (),
    loss_module: nn.Module | None = None,
    rng: list[dict[str, Any]] | None = None,
    meta: dict[str, Any] | None = None,
    profile: str = "default",
    seed: int | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write the checkpoint after ``step`` updates into ``out_dir`` and list it in the manifest.

    Args:
        out_dir: run folder.
        step: number of optimizer updates done.
        model: the model (a DDP wrapper is unwrapped).
        optimizer, scaler: their state_dicts are saved when given.
        hooks: objects whose ``state_dict()`` is saved (see :mod:`cdpkd.train.hooks`).
        loss_module: a loss with trainable parts (see :func:`trainable_state`).
        rng: RNG states per rank from :func:`capture_rng` (default: this process's).
        meta: extra JSON-able description (data position, FitConfig, ...).
        profile, seed: recorded in ``meta.json`` and the manifest.
        keep_last: keep only this many newest checkpoints (None = all).

    Returns:
        The checkpoint folder.
    """
    out_dir = Path(out_dir)
    root = out_dir / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    rng = rng if rng is not None else [capture_rng()]
    hook_states = [{"name": hook_name(h), "state": h.state_dict()} for h in hooks if hasattr(h, "state_dict")]
    for i, hs in enumerate(hook_states):
        check_plain(hs["state"], f"state_dict() of hook {hs['name']} (#{i})")
    state = {
        "format": FORMAT,
        "step": int(step),
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "hooks": hook_states,
        "loss_module": trainable_state(loss_module) if loss_module is not None else None,
        "rng": [{"torch_cpu": r["torch_cpu"], "torch_cuda": list(r["torch_cuda"])} for r in rng],
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        torch.save(state, tmp / STATE_FILE)
        write_json(tmp / RNG_FILE, {"ranks": [{"numpy": r["numpy"], "python": r["python"]} for r in rng]})
        config = model_config_dict(model)
        if config is not None:
            write_json(tmp / MODEL_CONFIG_FILE, config)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        description = {
            **(meta or {}),
            "format": FORMAT,
            "step": int(step),
            "files": files,
            "profile": profile,
            "seed": seed,
            "git_sha": git_sha(),
            "date": utc_now(),
            "device": device_description(),
            "torch": torch.__version__,
            "model_class": f"{type(unwrap(model)).__module__}.{type(unwrap(model)).__qualname__}",
            "hooks": [hs["name"] for hs in hook_states],
        }
        write_json(tmp / META_FILE, description)
        with open(tmp / STATE_FILE, "rb+") as fh:
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
        final = root / name
        if final.exists():  # re-saving a step (e.g. stop and resume at the same step)
            old = root / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    manifest = read_manifest(out_dir)
    entries = [e for e in manifest["checkpoints"] if e.get("name") != name]
    entries.append(
        {
            "name": name,
            "path": f"{CHECKPOINT_DIR}/{name}",
            "step": int(step),
            "files": {**files, META_FILE: sha256_file(final / META_FILE)},
            "profile": profile,
            "seed": seed,
            "git_sha": description["git_sha"],
            "date": description["date"],
        }
    )
    entries.sort(key=lambda e: e["step"])
    dropped = entries[:-keep_last] if keep_last else []
    manifest["checkpoints"] = entries[len(dropped) :]
    # manifest first, folders after: a crash leaves unlisted folders (cleaned next time), never dangling entries
    write_json(out_dir / MANIFEST_NAME, manifest)
    _remove_stale(root, {e["name"] for e in manifest["checkpoints"]})
    return final


def discard_after(out_dir: str | os.PathLike, step: int) -> None:
    """Drop checkpoints newer than ``step`` (a resumed run redoes those steps and re-saves them)."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    kept = [e for e in manifest["checkpoints"] if e["step"] <= step]
    if len(kept) != len(manifest["checkpoints"]):
        manifest["checkpoints"] = kept
        write_json(out_dir / MANIFEST_NAME, manifest)
        _remove_stale(out_dir / CHECKPOINT_DIR, {e["name"] for e in kept})


# --- load ------------------------------------------------------------------------


def _load_state(path: Path, map_location: Any) -> dict[str, Any]:
    try:
        return torch.load(path / STATE_FILE, map_location=map_location, weights_only=True)
    except Exception as exc:  # verified bytes that still fail to load: wrong format or torch version
        raise CheckpointError(f"cannot load {path / STATE_FILE} with weights_only=True: {exc}") from exc


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scaler: torch.amp.GradScaler | None = None,
    hooks: Sequence[Any] = (),
    loss_module: nn.Module | None = None,
    restore_rng_of_rank: int | None = None,
    map_location: Any = "cpu",
    strict: bool = True,
) -> dict[str, Any]:
    """Verify a checkpoint folder and load it into the given objects.

    Args:
        path: checkpoint folder (``out_dir/checkpoints/step_XXXXXXXX``).
        model: receives the weights (``strict`` as in ``load_state_dict``); None to skip.
        optimizer, scaler: receive their states when given.
        hooks: receive their states (matched by order and class name).
        loss_module: receives its trainable state.
        restore_rng_of_rank: restore the global RNGs saved by this rank (None: leave them).
        map_location: where tensors are loaded before being copied into the objects.

    Returns:
        The checkpoint's ``meta.json`` (step, data position, config, provenance).

    Raises:
        CheckpointError: missing/corrupted/tampered files, or states that do not fit.
    """
    path = Path(path)
    meta = verify_checkpoint(path)
    state = _load_state(path, map_location)
    where = path / STATE_FILE
    try:
        if model is not None:
            unwrap(model).load_state_dict(state["model"], strict=strict)
        if optimizer is not None:
            if state.get("optimizer") is None:
                raise CheckpointError(f"{where} has no optimizer state")
            optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and scaler.is_enabled() and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        with_state = [h for h in hooks if hasattr(h, "load_state_dict")]
        saved = state.get("hooks", [])
        if with_state or saved:
            names = [hook_name(h) for h in with_state]
            if names != [s["name"] for s in saved]:
                raise CheckpointError(
                    f"{where} holds states of hooks {[s['name'] for s in saved]} but the given hooks with "
                    f"state are {names}"
                )
            for hook, s in zip(with_state, saved):
                hook.load_state_dict(s["state"])
        if loss_module is not None and state.get("loss_module") is not None:
            result = loss_module.load_state_dict(state["loss_module"], strict=False)
            missing = set(result.missing_keys) & set(trainable_state(loss_module))
            if missing or result.unexpected_keys:
                raise CheckpointError(
                    f"{where}: loss module state does not fit: missing {sorted(missing)}, "
                    f"unexpected {sorted(result.unexpected_keys)}"
                )
    except (RuntimeError, KeyError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{where} does not fit the given objects: {exc}") from exc
    if restore_rng_of_rank is not None:
        rng_tensors = state["rng"]
        rng_json = json.loads((path / RNG_FILE).read_text(encoding="utf-8"))["ranks"]
        r = restore_rng_of_rank
        if r >= len(rng_tensors):
            raise CheckpointError(f"{where} has RNG states for {len(rng_tensors)} rank(s), not for rank {r}")
        restore_rng({**rng_tensors[r], **rng_json[r]})
    return meta


def _resolve(source: str | os.PathLike) -> Path:
    source = Path(source)
    if (source / META_FILE).exists() or source.parent.name == CHECKPOINT_DIR:
        return source
    if (source / MANIFEST_NAME).exists():
        latest = latest_checkpoint(source)
        if latest is None:
            raise CheckpointError(f"{source} has a manifest but no checkpoint")
        return latest
    raise CheckpointError(f"{source} is neither a checkpoint folder nor a run folder with {MANIFEST_NAME}")


def load_weights(
    source: str | os.PathLike, model: nn.Module, *, map_location: Any = "cpu", strict: bool = True
) -> dict[str, Any]:
    """Load model weights for evaluation from a run folder (its latest valid checkpoint) or a checkpoint folder.

    Returns the checkpoint's ``meta.json``.
    """
    return load_checkpoint(_resolve(source), model, map_location=map_location, strict=strict)


def read_model_config(source: str | os.PathLike) -> dict[str, Any] | None:
    """The model config JSON saved with a checkpoint (verified), or None if the model had none."""
    path = _resolve(source)
    meta = verify_checkpoint(path)
    if MODEL_CONFIG_FILE not in meta["files"]:
        return None
    return json.loads((path / MODEL_CONFIG_FILE).read_text(encoding="utf-8"))
