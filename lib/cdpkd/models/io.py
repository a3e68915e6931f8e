"""Saving and loading models without pickle: architecture JSON + state_dict.

File format (one file, written atomically): ``torch.save`` of a dict holding
only strings, ints and tensors, so ``torch.load(weights_only=True)`` reads it:

    {"format": "cdpkd.model", "version": 1,
     "spec": '<JSON {"architecture": ..., "config": {...}}>',
     "state_dict": {name: tensor}}

A human-readable copy of the spec is written next to it (``<path>.json``,
e.g. ``teacher.pt.json``); loading uses only the copy inside the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from cdpkd.atomic import atomic_path, write_json

from .registry import build_model, model_spec

FORMAT = "cdpkd.model"
VERSION = 1


def spec_path(path: str | os.PathLike) -> Path:
    """The human-readable spec next to a saved model."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def save_model(path: str | os.PathLike, model: nn.Module) -> Path:
    """Atomically write ``model`` (spec JSON + CPU state_dict) to ``path``; returns the path."""
    spec = model_spec(model)
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "spec": json.dumps(spec, sort_keys=True),
        "state_dict": state,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    write_json(spec_path(path), spec)
    return Path(path)


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save_model` (no pickle: ``weights_only=True``).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming
    the file for anything unreadable, truncated, of another format, or whose
    tensors do not match the stored architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, tampered bytes, a pickle needing globals, ...
        raise ValueError(f"{path}: not a readable cdpkd model file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a cdpkd model file (missing format marker {FORMAT!r})")
    if payload.get("version") != VERSION:
        raise ValueError(
            f"{path}: unsupported model file version {payload.get('version')!r} (expected {VERSION})"
        )
    try:
        spec = json.loads(payload["spec"])
        if not isinstance(spec, dict) or "architecture" not in spec:
            raise ValueError(f"expected {{'architecture': ..., 'config': ...}}, got {spec!r:.200}")
        model = build_model(spec)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid architecture spec ({exc})") from exc
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: missing state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match the stored architecture: {exc}") from exc
    return model.to(map_location)
