"""Soft channel masks for dynamic pruning during training (forward hooks on the prunable convs).

:class:`ChannelMasks` multiplies each prunable conv's output by a per-channel
mask right after the conv (before its LeakyReLU; LeakyReLU(0) = 0, so a masked
channel is exactly zero everywhere downstream: in the dense concatenations,
the heads, the warps and the cost volume). The model itself is not changed:
no buffers, the state_dict stays that of the dense network, and removing the
hooks restores it. Masked channels keep their weights and stay in the
optimizer, so a later mask update can bring them back (soft pruning). While
masked they receive no gradient from the loss (their output is multiplied by
0); decoupled weight decay still shrinks them.

Taylor importance is accumulated by the same hooks (``track_taylor=True``):
for conv output z (before the mask) and the loss gradient g at the masked
output y = m z, the first-order estimate of the loss change from zeroing
channel c of one sample is ``sum_{h,w} z[c] g[c]``; the score is its absolute
value averaged over samples (Molchanov et al., ICLR 2017, summed rather than
averaged over pixels so that layers at different resolutions are comparable).
Because g is taken at y, a masked channel gets a meaningful score too: the
estimated loss change from *restoring* it (its y = 0 sits at the LeakyReLU
kink, where autograd uses the negative slope; the score corrects this to the
one-sided derivative towards m > 0; with a slope of 0 (ReLU) no gradient
reaches a masked channel and its Taylor score is 0). The pyramid runs the pre and post
frames as one 2N batch through shared weights; their terms are added per pair
before the absolute value (removing a channel removes it from both frames).
Under fp16 autocast with a GradScaler the scores carry the loss scale: compare
scores accumulated under one scale only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .channels import ChannelMap


def check_masks(
    channel_map: ChannelMap, masks: Mapping[str, Any], what: str = "masks"
) -> dict[str, torch.Tensor]:
    """Validated copies (float64, CPU) of ``masks``: name -> 1-D tensor over that conv's out-channels.

    Raises ``ValueError`` for unknown or non-prunable names, wrong length, NaN/Inf,
    values outside [0, 1], or a layer with every channel masked (a conv needs at
    least one output channel).
    """
    if not isinstance(masks, Mapping):
        raise ValueError(f"{what}: expected a mapping conv name -> mask, got {type(masks).__name__}")
    channel_map.check_names(masks, what)
    out = {}
    for name, mask in masks.items():
        n = channel_map.nodes[name].out_channels
        t = torch.as_tensor(mask).detach().to("cpu", torch.float64)
        if t.shape != (n,):
            raise ValueError(
                f"{what}[{name!r}]: expected a 1-D mask of {n} channels, got shape {tuple(t.shape)}"
            )
        if not bool(torch.isfinite(t).all()) or bool(((t < 0) | (t > 1)).any()):
            raise ValueError(f"{what}[{name!r}]: mask values must be finite and in [0, 1]")
        if not bool((t != 0).any()):
            raise ValueError(f"{what}[{name!r}]: every channel is masked; keep at least one")
        out[name] = t
    return out


class ChannelMasks:
    """Per prunable conv a mask over its output channels, applied by forward hooks.

    Args:
        model: a :class:`~cdpkd.models.PWCNet` (the hooks are attached at once).
        channel_map: its :class:`~cdpkd.compress.ChannelMap` (built from the
            model if None).
        track_taylor: accumulate first-order Taylor scores during backward passes
            (keeps a reference to each conv's output until the backward).
        prune_correlation_inputs: passed to the channel map when it is built here.

    Masks start all ones (nothing pruned). Values in [0, 1]: 0 prunes the channel,
    1 keeps it, anything between scales it (a soft mask; :func:`hard_prune`
    folds such values into the weights). Use as a context manager to remove the
    hooks on exit. ``state_dict``/``load_state_dict`` make it a checkpointable
    training hook state (plain dict of tensors).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        channel_map: ChannelMap | None = None,
        track_taylor: bool = False,
        prune_correlation_inputs: bool | None = None,
    ) -> None:
        self.model = model
        if channel_map is None:
            channel_map = ChannelMap.from_model(model, prune_correlation_inputs=prune_correlation_inputs)
        else:
            channel_map.validate(model)
        self.channel_map = channel_map
        self.track_taylor = bool(track_taylor)
        self._slope = float(model.config.leaky_slope)  # every prunable conv is followed by LeakyReLU
        self._device = next(model.parameters()).device
        self._masks: dict[str, torch.Tensor] = {}
        self._full: dict[str, bool] = {}
        self._taylor: dict[str, torch.Tensor] = {}
        self._taylor_count: dict[str, int] = {}
        self._handles: list[Any] = []
        self.reset()
        self.reset_taylor()
        self.attach()

    # ------------------------------------------------------------------ hooks
    def attach(self) -> ChannelMasks:
        """Register the forward hooks (no-op if attached)."""
        if not self._handles:
            modules = dict(self.model.named_modules())
            for name in self.channel_map.prunable:
                self._handles.append(modules[name].register_forward_hook(self._make_hook(name)))
        return self

    def remove(self) -> None:
        """Remove the hooks: the model computes the dense network again."""
        for h in self._handles:
            h.remove()
        self._handles = []

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def __enter__(self) -> ChannelMasks:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _make_hook(self, name: str):
        pyramid = name.startswith("pyramid.")
        slope = self._slope

        def accumulate(z: torch.Tensor, g: torch.Tensor, zero: torch.Tensor | None) -> None:
            dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
            z, g = z.to(dtype), g.to(dtype)
            if zero is not None and slope > 0:
                # A masked channel sits at the LeakyReLU kink (y = 0), where autograd uses the
                # negative slope: g = slope * dL/da. Restoring it moves y to m z, so the one-sided
                # derivative needs the activation's slope at z: 1 where z > 0, slope elsewhere.
                fix = torch.where(z > 0, 1.0 / slope, 1.0).to(dtype)
                g = torch.where(zero.view(1, -1, 1, 1), g * fix, g)
            t = (z * g).sum(dim=(2, 3))  # samples x C
            if pyramid:  # pre and post frames of a pair share the channel: add before |.|
                t = t.view(2, -1, t.shape[1]).sum(dim=0)
            self._taylor[name] += t.abs().sum(dim=0).to(self._taylor[name])
            self._taylor_count[name] += t.shape[0]

        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            y, zero = output, None
            if not self._full[name]:
                mask = self._masks[name]
                y = output * mask.to(device=output.device, dtype=output.dtype).view(1, -1, 1, 1)
                zero = (mask == 0).to(output.device)
            if self.track_taylor and y.requires_grad:
                z = output.detach()
                y.register_hook(lambda g: accumulate(z, g, zero))
            return y

        return hook

    # ------------------------------------------------------------------ masks
    def reset(self) -> None:
        """All masks to ones (nothing pruned)."""
        self.set({n: torch.ones(c) for n, c in self.channel_map.widths().items()})

    def set(self, masks: Mapping[str, Any]) -> None:
        """Replace the masks of the named convs (others unchanged); validated by :func:`check_masks`."""
        checked = check_masks(self.channel_map, masks)
        for name, m in checked.items():
            self._masks[name] = m.to(device=self._device)  # float64: exact soft values, cast per forward
            self._full[name] = bool((m == 1).all())

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Copies of the masks (CPU float64), name -> 1-D tensor."""
        return {n: m.detach().to("cpu").clone() for n, m in self._masks.items()}

    def keep_counts(self) -> dict[str, int]:
        """Non-zero channels per prunable conv."""
        return {n: int((m != 0).sum()) for n, m in self._masks.items()}

    def pruned_fraction(self) -> float:
        """Fraction of prunable channels currently masked (zero)."""
        total = sum(m.numel() for m in self._masks.values())
        return 1.0 - sum(self.keep_counts().values()) / total

    def prune(
        self,
        ratio: float,
        criterion: str = "l1",
        *,
        scope: str = "global",
        min_channels: int = 1,
        normalize: str = "mean",
        reset_taylor: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Recompute the masks: score every channel (masked ones too) and prune ``ratio`` of them.

        ``criterion`` "l1"/"l2" reads the current weights; "taylor" uses the scores
        accumulated since the last reset (needs ``track_taylor=True`` and at least
        one backward pass), then resets them if ``reset_taylor``. Returns the new
        masks (see :func:`cdpkd.compress.select`).
        """
        from .importance import check_criterion, filter_norm_scores, select

        check_criterion(criterion)
        if criterion == "taylor":
            scores = self.taylor_scores()
        else:
            scores = filter_norm_scores(self.model, self.channel_map, p=1 if criterion == "l1" else 2)
        masks = select(scores, ratio, scope=scope, min_channels=min_channels, normalize=normalize)
        self.set(masks)
        if criterion == "taylor" and reset_taylor:
            self.reset_taylor()
        return masks

    # ------------------------------------------------------------------ Taylor scores
    def reset_taylor(self) -> None:
        """Forget the accumulated Taylor scores."""
        for name, n in self.channel_map.widths().items():
            self._taylor[name] = torch.zeros(n, dtype=torch.float64, device=self._device)
            self._taylor_count[name] = 0

    def taylor_scores(self) -> dict[str, torch.Tensor]:
        """Mean |first-order loss change| per channel (CPU float64) over the samples seen so far."""
        if not self.track_taylor:
            raise ValueError("Taylor scores need ChannelMasks(..., track_taylor=True)")
        empty = [n for n, c in self._taylor_count.items() if c == 0]
        if empty:
            raise ValueError(
                f"no Taylor scores accumulated yet for {len(empty)} conv(s) (e.g. {empty[0]!r}): "
                "run forward and backward passes with the masks attached first"
            )
        return {n: (s / self._taylor_count[n]).to("cpu") for n, s in self._taylor.items()}

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        """Plain, ``weights_only``-loadable state: the masks and the accumulated Taylor sums."""
        return {
            "masks": self.as_dict(),
            "taylor": {n: s.detach().to("cpu").clone() for n, s in self._taylor.items()},
            "taylor_count": dict(self._taylor_count),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.set(state["masks"])
        for name, s in state.get("taylor", {}).items():
            self.channel_map.check_names([name], "taylor state")
            self._taylor[name] = torch.as_tensor(s, dtype=torch.float64).to(self._device).clone()
        for name, c in state.get("taylor_count", {}).items():
            self._taylor_count[name] = int(c)

    def __repr__(self) -> str:
        frac = self.pruned_fraction()
        return (
            f"ChannelMasks({len(self._masks)} convs, {100 * frac:.1f}% channels masked, "
            f"attached={self.attached}, track_taylor={self.track_taylor})"
        )


def masked_fraction(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of zero entries over all masks."""
    total = sum(int(torch.as_tensor(m).numel()) for m in masks.values())
    zeros = sum(int((torch.as_tensor(m) == 0).sum()) for m in masks.values())
    return zeros / total if total else math.nan
