"""Adapters that turn networks into ``(pre, post) -> displacement`` estimators.

The evaluation (:mod:`cdpkd.evaluation`) scores any callable taking two H x W
RF frames (NumPy) and returning a 2 x H x W displacement (axial samples,
lateral lines); classical trackers already have that form, networks get it here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray]


def default_device() -> torch.device:
    """The first CUDA device when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def network_estimator(model: nn.Module, device: str | torch.device | None = None) -> Estimator:
    """Wrap a displacement network as an estimator on whole frames.

    Both frames are divided by the pre frame's RF standard deviation, exactly as
    in training (:class:`cdpkd.sim.RFPairDataset` with ``normalize=True``).
    The model is put in eval mode on ``device``; gradients are off.
    """
    device = torch.device(device) if device is not None else default_device()
    model = model.to(device).eval()

    def estimate(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
        pre_t = torch.as_tensor(np.asarray(pre, dtype=np.float32), device=device)
        post_t = torch.as_tensor(np.asarray(post, dtype=np.float32), device=device)
        if pre_t.dim() != 2:
            raise ValueError(f"estimators take single H x W frames, got shape {tuple(pre_t.shape)}")
        scale = pre_t.std(correction=0).clamp_min(torch.finfo(torch.float32).tiny)
        with torch.no_grad():
            out = model(pre_t[None, None] / scale, post_t[None, None] / scale)["displacement"]
        return out[0].float().cpu().numpy()

    return estimate
