"""Hard pruning: physically remove masked channels, giving a smaller dense PWC network.

For every prunable conv the kept output channels are the non-zero entries of
its mask. The new network is built from a :class:`~cdpkd.models.PWCConfig`
with the kept counts (so it saves and reloads with
:func:`cdpkd.models.save_model`/:func:`~cdpkd.models.load_model` and no
pruning code), and every conv's weight is sliced twice: its kept output rows,
and the input columns of every kept channel of each of its input segments
(the channel map knows, through the dense concatenations, which output of
which conv sits at which input offset). Fractional mask values are folded
into the kept rows (weight and bias times the mask value, which is exactly
what the mask hook computes: it scales the conv output before the activation).

**Channels that feed the correlation.** The cost volume is a *mean* over the
C feature channels (``cdpkd.ops.correlation``; GOCor uses the same 1/C). In
the masked network a pruned channel is zero in both frames, so the volume is
(sum over the C' kept channels) / C. The pruned network would divide by C'
instead, scaling every cost by C / C'. We keep the masked network's values
exactly by rescaling: the conv producing those features gets its kept rows
(weight and bias) multiplied by s = sqrt(C' / C), and every conv that reads
those features (the next pyramid level and the dense estimator input, and
through the dense concatenation every later estimator conv, its heads and the
context network) gets the matching input columns multiplied by 1 / s.
LeakyReLU is positively homogeneous (f(s x) = s f(x) for s > 0) and the warp
is linear, so the features are exactly s times the masked ones, the products
of the correlation are s^2 = C'/C times, and their mean over C' is the masked
mean over C. GOCor's optimisation is invariant too: its filters scale by s,
its gradient by 1/s, its exact line-search step by s^2, except for the 1e-8
guard in the step's denominator, which matters where the curvature is tiny:
so by default (:class:`~cdpkd.compress.ChannelMap`'s
``prune_correlation_inputs=None``) correlation inputs are pruned for plain
correlation only and left whole for GOCor. Only the "pre" features returned
with ``return_features=True`` differ (by s, per pruned level).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cdpkd.models import PWCConfig, build_model

from .channels import ChannelMap
from .masks import ChannelMasks, check_masks


def kept_channels(channel_map: ChannelMap, masks: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Indices of the kept (non-zero) output channels of every conv (all of them where unmasked)."""
    checked = check_masks(channel_map, masks)
    kept = {}
    for name, node in channel_map.nodes.items():
        m = checked.get(name)
        kept[name] = torch.arange(node.out_channels) if m is None else torch.nonzero(m).flatten()
    return kept


def pruned_config(channel_map: ChannelMap, masks: Mapping[str, Any]) -> PWCConfig:
    """The config of the network :func:`hard_prune` would build (no weights touched)."""
    checked = check_masks(channel_map, masks)
    return channel_map.config_with({n: int((m != 0).sum()) for n, m in checked.items()})


def hard_prune(
    model: nn.Module, masks: ChannelMasks | Mapping[str, Any], *, channel_map: ChannelMap | None = None
) -> tuple[nn.Module, PWCConfig]:
    """Remove the masked channels of ``model``; returns ``(new_model, new_config)``.

    Args:
        model: a :class:`~cdpkd.models.PWCNet` (left unchanged; its mask hooks,
            if any, are not copied).
        masks: a :class:`ChannelMasks` or a mapping conv name -> 1-D mask with
            values in [0, 1] (0 = remove; convs not named are kept whole).
        channel_map: default: the masks' map, else built from the model.

    The new model has the input model's dtype, device, train/eval mode and
    ``check_finite`` flag, and computes the masked model's outputs (to float
    rounding; see the module docstring for the correlation inputs).
    """
    if isinstance(masks, ChannelMasks):
        channel_map = masks.channel_map if channel_map is None else channel_map
        masks = masks.as_dict()
    cmap = channel_map if channel_map is not None else ChannelMap.from_model(model)
    cmap.validate(model)
    checked = check_masks(cmap, masks)
    kept = kept_channels(cmap, checked)

    # Per conv: factor applied to its kept output rows (folded mask values, correlation rescale).
    out_factor: dict[str, torch.Tensor] = {}
    in_factor: dict[str, float] = {}  # per source conv: factor for its columns in every consumer
    for name, node in cmap.nodes.items():
        f = torch.ones(kept[name].numel(), dtype=torch.float64)
        if name in checked:
            f = f * checked[name][kept[name]]
        if node.correlations and kept[name].numel() < node.out_channels:
            s = math.sqrt(kept[name].numel() / node.out_channels)
            f = f * s
            in_factor[name] = 1.0 / s
        out_factor[name] = f

    state = model.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    for name, node in cmap.nodes.items():
        cols, col_scale, offset = [], [], 0
        for seg in node.inputs:
            idx = kept[seg.source] if seg.source in cmap.nodes else torch.arange(seg.width)
            cols.append(idx + offset)
            col_scale.append(torch.full((idx.numel(),), in_factor.get(seg.source, 1.0), dtype=torch.float64))
            offset += seg.width
        cols_t, scale_t = torch.cat(cols), torch.cat(col_scale)
        rows = kept[name]
        w = state[f"{name}.weight"]
        w64 = w.detach().to("cpu", torch.float64)[rows][:, cols_t]
        w64 = w64 * out_factor[name].view(-1, 1, 1, 1) * scale_t.view(1, -1, 1, 1)
        new_state[f"{name}.weight"] = w64.to(w.dtype)
        bias_key = f"{name}.bias"
        if bias_key in state:
            b = state[bias_key]
            new_state[bias_key] = (b.detach().to("cpu", torch.float64)[rows] * out_factor[name]).to(b.dtype)
    for key, value in state.items():  # everything else (GOCor's learned functions) is width-independent
        if key not in new_state:
            new_state[key] = value.detach().to("cpu").clone()

    new_config = cmap.config_with({n: int(kept[n].numel()) for n in cmap.prunable})
    param = next(model.parameters())
    new_model = build_model(new_config, seed=0)  # seeded: leaves the global RNG alone; weights replaced below
    new_model.to(dtype=param.dtype)  # before loading, so float64 weights are not rounded through float32
    new_model.load_state_dict(new_state, strict=True)
    new_model.to(device=param.device)
    new_model.train(model.training)
    if hasattr(model, "check_finite"):
        new_model.check_finite = model.check_finite
    return new_model, new_config
