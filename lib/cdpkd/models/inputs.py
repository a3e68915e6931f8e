"""Input handling of the displacement networks: validation, envelope, normalisation, padding.

Kept apart from the network so every model family (PWC, baselines) rejects bad
input with the same clear messages (DESIGN.md section 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_pair(pre: object, post: object, in_channels: int, *, check_finite: bool = True) -> None:
    """Raise ``ValueError`` naming the problem unless pre/post are a valid N x C x H x W pair.

    Checks: tensors, 4-D, floating point, non-empty, equal shapes, C ==
    ``in_channels``, and (one fused reduction, one host sync) all finite.
    """
    for name, t in (("pre", pre), ("post", post)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor (N x C x H x W), got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"{name} must be 4-D (N x C x H x W, H axial samples, W lateral lines), "
                f"got {t.dim()}-D shape {tuple(t.shape)}"
            )
        if t.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name} must be floating point, got dtype {t.dtype}")
        if t.numel() == 0:
            raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    if pre.shape != post.shape:
        raise ValueError(f"pre/post shape mismatch: pre {tuple(pre.shape)} vs post {tuple(post.shape)}")
    if pre.shape[1] != in_channels:
        raise ValueError(
            f"expected {in_channels} input channel(s) (N x {in_channels} x H x W), got shape {tuple(pre.shape)}"
        )
    if pre.device != post.device:
        raise ValueError(f"pre and post are on different devices: {pre.device} vs {post.device}")
    if check_finite and not bool(torch.isfinite(pre).all() & torch.isfinite(post).all()):
        bad = [name for name, t in (("pre", pre), ("post", post)) if not bool(torch.isfinite(t).all())]
        raise ValueError(f"{' and '.join(bad)} contain(s) NaN or Inf values")


def envelope(x: torch.Tensor) -> torch.Tensor:
    """|analytic signal| along the axial axis (dim -2), like ``scipy.signal.hilbert``.

    Shapes: N x C x H x W -> same. Computed in float32 (float64 kept).
    """
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    h = x.shape[-2]
    spec = torch.fft.fft(x.to(dtype), dim=-2)
    mult = torch.zeros(h, dtype=dtype, device=x.device)
    mult[0] = 1.0
    if h % 2 == 0:
        mult[h // 2] = 1.0
        mult[1 : h // 2] = 2.0
    else:
        mult[1 : (h + 1) // 2] = 2.0
    analytic = torch.fft.ifft(spec * mult.view(h, 1), dim=-2)
    return analytic.abs().to(x.dtype)


def normalize_pair(pre: torch.Tensor, post: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide both frames by their joint RMS (one scale per sample: relative amplitudes kept).

    An all-zero pair stays zero (the scale is clamped away from 0).
    """
    ms = 0.5 * (pre.pow(2).mean(dim=(1, 2, 3), keepdim=True) + post.pow(2).mean(dim=(1, 2, 3), keepdim=True))
    scale = ms.sqrt().clamp_min(1e-12)
    return pre / scale, post / scale


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad H and W at the bottom/right up to multiples of ``multiple``.

    Zeros: for zero-mean RF they read as 'no echo', and the correlation also
    treats outside-the-image as zero. Outputs are cropped back by the caller.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


def crop_level(x: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """Crop a level-resolution tensor back to the unpadded extent ceil(H / s) x ceil(W / s)."""
    return x[..., : -(-height // stride), : -(-width // stride)]
