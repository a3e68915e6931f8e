"""Small host-side helpers shared by the Triton kernel modules."""

from __future__ import annotations

import contextlib

import torch

_MIN_CHANNELS_PER_SPLIT = 8  # below this, re-reading the pixel tiles per split costs more than it hides


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (and >= 1); Triton block shapes must be powers of two."""
    return 1 << max(0, int(n) - 1).bit_length()


def channel_splits(programs: int, channels: int, device: torch.device) -> int:
    """How many channel ranges to split a launch of ``programs`` pixel blocks into.

    Deep pyramid levels have few pixels and many channels; splitting the
    channel loop over a third grid axis gives the GPU >= 4 programs per SM.
    """
    if device.type != "cuda":
        return 1
    target = 4 * torch.cuda.get_device_properties(device).multi_processor_count
    wanted = -(-target // max(1, programs))
    return max(1, min(wanted, channels // _MIN_CHANNELS_PER_SPLIT))


def split_channels(channels: int, splits: int) -> tuple[int, int]:
    """(channels per split, number of splits) for about ``splits`` ranges, none empty."""
    per = -(-channels // max(1, min(splits, channels)))
    return per, -(-channels // per)


def on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """Make ``device`` current while launching: Triton launches on the current CUDA device."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
