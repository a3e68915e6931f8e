"""Shared config plumbing of the baselines: JSON round trip and value checks.

Every baseline config is a frozen dataclass deriving from :class:`JSONConfig`
so that ``save_model`` / ``load_model`` can store it as plain JSON (no pickle)
and ``dataclasses.replace`` (used by the recipes' ``model_overrides``) works.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

C = TypeVar("C", bound="JSONConfig")


def _plain(value: Any) -> Any:
    """Tuples -> lists and nested configs -> dicts, recursively (JSON-able)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _frozen(value: Any) -> Any:
    """Lists (what JSON gives back) -> tuples, recursively; mappings are left to the config."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


class JSONConfig:
    """Mixin for frozen dataclass configs: ``to_dict``/``from_dict``/``to_json``/``from_json``/``replace``."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists, nested configs dicts)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass silently)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.__name__}.from_dict: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{cls.__name__}.from_dict: unknown keys {unknown}; known keys are {sorted(known)}"
            )
        return cls(**{k: _frozen(v) for k, v in data.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        return cls.from_dict(json.loads(text))

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied (validated like a new config)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def check_int(value: Any, owner: str, name: str, minimum: int) -> int:
    """``value`` if it is an int (not a bool) >= ``minimum``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_bool(value: Any, owner: str, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return value


def check_slope(value: Any, owner: str) -> float:
    """A LeakyReLU negative slope in [0, 1), as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}: leaky_slope must be a number in [0, 1), got {value!r}")
    return float(value)


def check_choice(value: Any, choices: tuple[str, ...], owner: str, name: str) -> str:
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {choices}, got {value!r}")
    return value


def int_tuple(value: Any, owner: str, name: str, *, minimum: int = 1, min_len: int = 1) -> tuple[int, ...]:
    """A tuple of at least ``min_len`` ints, each >= ``minimum``, from any non-string sequence."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise ValueError(f"{owner}: {name} must be a sequence of integers, got {value!r}")
    out = tuple(value)
    if len(out) < min_len or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in out):
        raise ValueError(
            f"{owner}: {name} must hold at least {min_len} integer(s) >= {minimum}, got {value!r}"
        )
    return out
