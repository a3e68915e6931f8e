"""Training hooks: how curriculum pacing, pruning schedules and the like plug into ``fit``.

A hook is any object with some of these methods (all optional)::

    on_fit_start(step, model, optimizer)          # after resume; step = updates already done
    on_step_start(step, model, optimizer)         # before the batch of update `step` (0-based)
    on_before_optimizer_step(step, model, optimizer)  # grads ready (unscaled), before clipping
    on_step_end(step, model, logs)                # after the update; add keys to `logs` to log them
    on_fit_end(step, model, history)              # after the last update of this call
    state_dict() -> dict                          # saved in every checkpoint
    load_state_dict(state)                        # restored on resume

``model`` is always the plain module (never the DDP wrapper). Hook states go
into checkpoints loaded with ``weights_only=True``, so they must be plain
containers (dict / list / tuple with str, int, float, bool, None and tensors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

HOOK_METHODS = (
    "on_fit_start",
    "on_step_start",
    "on_before_optimizer_step",
    "on_step_end",
    "on_fit_end",
    "state_dict",
    "load_state_dict",
)


def hook_name(hook: Any) -> str:
    """``module.ClassName`` of a hook (stored with its state to catch reordered hooks)."""
    return f"{type(hook).__module__}.{type(hook).__qualname__}"


def call_hooks(hooks: Sequence[Any], method: str, *args: Any) -> None:
    """Call ``method(*args)`` on every hook that defines it, in order."""
    for hook in hooks:
        fn = getattr(hook, method, None)
        if fn is not None:
            fn(*args)


def check_hooks(hooks: Sequence[Any]) -> None:
    """Reject objects that implement none of the hook methods (likely a mistake)."""
    for hook in hooks:
        if not any(callable(getattr(hook, m, None)) for m in HOOK_METHODS):
            raise TypeError(f"{hook_name(hook)} is not a hook: it has none of the methods {HOOK_METHODS}")


_PLAIN_SCALARS = (str, int, float, bool, type(None), torch.Tensor)


def check_plain(obj: Any, where: str) -> None:
    """Raise TypeError unless ``obj`` loads with ``torch.load(weights_only=True)``.

    Checked at save time so a bad state fails where it is made, not at resume.
    """
    if isinstance(obj, _PLAIN_SCALARS):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: dict key {k!r} is {type(k).__name__}; use str or int keys")
            check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__name__}: checkpoint states must be plain "
        "containers of str/int/float/bool/None/torch.Tensor (convert NumPy arrays with torch.from_numpy)"
    )
