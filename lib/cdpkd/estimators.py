"""Adapters that turn networks into ``(pre, post) -> displacement`` estimators.

The evaluation (:mod:`cdpkd.evaluation`) scores any callable taking two H x W
RF frames (NumPy) and returning a 2 x H x W displacement (axial samples,
lateral lines); classical trackers already have that form, networks get it here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

Estimator = Callable[[np.ndarray, np.ndarray], np.ndarray]


def default_device() -> torch.device:
    """The first CUDA device when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def tile_starts(size: int, tile: int, overlap: float) -> list[int]:
    """Start indices of tiles of length ``tile`` covering ``size`` with at least ``overlap`` (fraction) overlap."""
    if tile >= size:
        return [0]
    step = max(1, int(round(tile * (1.0 - overlap))))
    starts = list(range(0, size - tile, step))
    return starts + [size - tile]


def _tile_weight(h: int, w: int) -> torch.Tensor:
    """Separable triangular blending weight, positive everywhere, largest at the tile centre."""

    def ramp(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float32)
        return torch.minimum(i + 1, n - i) / ((n + 1) / 2)

    return ramp(h)[:, None] * ramp(w)[None, :]


# guided tiles: the post crop is shifted to just below the tile's smallest coarse axial displacement
GUIDE_QUANTILE = 0.02  # robust minimum of the coarse axial displacement in a tile
GUIDE_MARGIN = 1.0  # samples below it
GUIDE_PASSES = ("whole", "strips")  # how guided tiles get their coarse estimate
GUIDE_PASS = "strips"  # the default: networks trained on crops fail on wider input (see network_estimator)


def _tile_shift(
    coarse: torch.Tensor, y: int, x: int, th: int, tw: int, height: int, width: int,
    quantile: float = GUIDE_QUANTILE, margin: float = GUIDE_MARGIN,
) -> tuple[int, int]:
    """Integer (axial, lateral) shift of the post crop of the tile at (y, x) from the coarse
    2 x th x tw displacement in the tile: axially the floor of its ``quantile`` minus ``margin``
    samples (default: 2 % quantile minus one, so the residual left to the network is small and
    non-negative); laterally none. Clipped so the crop stays in the frame."""
    low = torch.quantile(coarse[0].flatten().float(), quantile).item()
    dy = int(np.floor(low - margin))
    return min(max(dy, -y), height - th - y), 0


# Every compiled network of one class shares one compile cache (its forward's code), one entry per
# network, input shape and precision: torch's default limit (8) silently sends the ninth back to
# eager mode, e.g. the bf16 tiles of a third network in one efficiency table.
RECOMPILE_LIMIT = 64


def _more_recompiles():
    """A context raising TorchDynamo's per-code-object recompile limit to :data:`RECOMPILE_LIMIT`
    (``recompile_limit``; ``cache_size_limit`` in older torch)."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    return config.patch(**{name: RECOMPILE_LIMIT})


def normalised_forward(model: nn.Module, pre: torch.Tensor, post: torch.Tensor) -> dict:
    """``model``'s output dict for N x 1 x h x w crops, each pair divided by its pre crop's standard
    deviation, as in training (:class:`cdpkd.sim.RFPairDataset` with ``normalize=True``); a flat pre
    crop, e.g. a blank band of a real frame, keeps unit scale (dividing its post crop by a floored ~0
    would overflow to inf)."""
    scale = pre.flatten(1).std(dim=1, correction=0)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).view(-1, 1, 1, 1)
    return model(pre / scale, post / scale)


def network_estimator(
    model: nn.Module,
    device: str | torch.device | None = None,
    *,
    tile: tuple[int, int] | None = None,
    overlap: float = 0.5,
    tiles_per_batch: int = 16,
    guided: bool = False,
    guide_quantile: float = GUIDE_QUANTILE,
    guide_margin: float = GUIDE_MARGIN,
    guide_pass: str = GUIDE_PASS,
    compile_model: bool = False,
) -> Estimator:
    """Wrap a displacement network as an estimator on whole frames.

    Each input (the whole frame, or each tile) is divided by its pre frame's RF
    standard deviation, exactly as in training (:class:`cdpkd.sim.RFPairDataset`
    with ``normalize=True``). The model is put in eval mode on ``device``;
    gradients are off.

    Args:
        tile: (samples, lines): run the network on overlapping tiles of this size
            and blend them with triangular weights, instead of on the whole frame.
            A network trained on crops sees at inference exactly the context it was
            trained with (its coarse levels and padding behave differently on much
            larger inputs). ``None``: one forward on the whole frame.
        overlap: minimum overlap of neighbouring tiles, as a fraction of the tile.
        tiles_per_batch: tiles per forward pass (more: fewer, larger launches on a GPU; more
            memory). Outputs do not depend on it beyond float rounding.
        guided: (tiles only) first estimate the whole frame coarsely (``guide_pass``), then shift each
            tile's post crop axially to just below that estimate's smallest displacement in
            the tile (:func:`_tile_shift`) and add the shift back to the tile's output. The
            network then sees a small residual instead of the full displacement: with
            256-sample tiles, the ~45-sample shift near a compressed surface moves a sixth of
            the tile's content out of view. The residual is kept non-negative because networks
            trained on simulated compression only have never seen a negative axial displacement
            (measured: centring it on zero instead made the cpu teacher several times worse).
            Costs about one whole-frame forward more.
        guide_quantile, guide_margin: where guided tiles put the shift: the floor of this
            quantile of the tile's coarse axial displacement minus this many samples (0.5 and
            0 centre the residual on zero, for networks that predict both signs).
        guide_pass: how guided tiles get their coarse estimate: ``"strips"`` (default), forwards on
            full-depth strips as wide as the tile, side by side (about the same area as the frame;
            where the last strip overlaps the one before, blended as tiles); ``"whole"``, one forward
            on the whole frame (the notebooks' guide before git 16660ee). The two agree for a network
            that handles wide input. Networks trained on crops tolerate inputs deeper than the crop but
            not wider ones: the cpu teacher's median axial error on 512-sample crops of the simulated
            test pairs is 0.044 samples at the crop's 64 lines and 0.186 at 128
            (``studies/README.md``, "Tiles: input width and the guide pass"), and real frames are 2-6 times
            wider than that.
        compile_model: run the network through ``torch.compile`` (TorchInductor; on the CPU it needs a
            C++ compiler). The first call for each input shape compiles (slow: seconds to minutes);
            later calls are faster: the cpu student's forward on a whole
            2048 x 256 frame 1.58x on 2 AVX512 cores (``benchmarks/efficiency.py --compile``, README
            "Benchmarks (CPU)"). Outputs agree with eager mode to float rounding. Each distinct tile
            batch or frame shape is one more compilation.
    """
    device = torch.device(device) if device is not None else default_device()
    model = model.to(device).eval()
    network = torch.compile(model, dynamic=False) if compile_model else model
    if tile is not None and (len(tile) != 2 or min(tile) < 1):
        raise ValueError(f"tile must be (samples, lines) >= 1, got {tile!r}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if not isinstance(tiles_per_batch, int) or tiles_per_batch < 1:
        raise ValueError(f"tiles_per_batch must be an integer >= 1, got {tiles_per_batch!r}")
    if not 0.0 <= guide_quantile <= 1.0:
        raise ValueError(f"guide_quantile must be in [0, 1], got {guide_quantile}")
    if guide_pass not in GUIDE_PASSES:
        raise ValueError(f"guide_pass must be one of {GUIDE_PASSES}, got {guide_pass!r}")

    def run(pre_t: torch.Tensor, post_t: torch.Tensor) -> torch.Tensor:
        """Batch of N x 1 x h x w crops -> N x 2 x h x w (:func:`normalised_forward`)."""
        with _more_recompiles() if compile_model else contextlib.nullcontext():
            return normalised_forward(network, pre_t, post_t)["displacement"].float()

    def tiled(pre_t: torch.Tensor, post_t: torch.Tensor, th: int, tw: int, overlap: float,
              coarse: torch.Tensor | None = None) -> torch.Tensor:
        """H x W frames -> 2 x H x W from ``th`` x ``tw`` tiles overlapping by at least ``overlap``,
        blended with triangular weights, ``tiles_per_batch`` per forward; with ``coarse``
        (2 x H x W), each tile's post crop shifted by :func:`_tile_shift` and the shift added back."""
        height, width = pre_t.shape
        boxes = [(y, x) for y in tile_starts(height, th, overlap) for x in tile_starts(width, tw, overlap)]
        shifts = [(0, 0)] * len(boxes) if coarse is None else [
            _tile_shift(coarse[:, y : y + th, x : x + tw], y, x, th, tw, height, width, guide_quantile, guide_margin)
            for y, x in boxes]
        weight = _tile_weight(th, tw).to(device)
        total = torch.zeros(2, height, width, device=device)
        norm = torch.zeros(height, width, device=device)
        for i in range(0, len(boxes), tiles_per_batch):
            chunk, offsets = boxes[i : i + tiles_per_batch], shifts[i : i + tiles_per_batch]
            a = torch.stack([pre_t[y : y + th, x : x + tw] for y, x in chunk])[:, None]
            b = torch.stack([post_t[y + dy : y + dy + th, x + dx : x + dx + tw]
                             for (y, x), (dy, dx) in zip(chunk, offsets)])[:, None]
            for (y, x), (dy, dx), d in zip(chunk, offsets, run(a, b)):
                d = d + torch.tensor([dy, dx], dtype=d.dtype, device=device).view(2, 1, 1)
                total[:, y : y + th, x : x + tw] += d * weight
                norm[y : y + th, x : x + tw] += weight
        return total / norm

    def estimate(pre: np.ndarray, post: np.ndarray) -> np.ndarray:
        pre_t = torch.as_tensor(np.asarray(pre, dtype=np.float32), device=device)
        post_t = torch.as_tensor(np.asarray(post, dtype=np.float32), device=device)
        if pre_t.dim() != 2:
            raise ValueError(f"estimators take single H x W frames, got shape {tuple(pre_t.shape)}")
        if pre_t.shape != post_t.shape:
            raise ValueError(f"pre/post shape mismatch: {tuple(pre_t.shape)} vs {tuple(post_t.shape)}")
        with torch.no_grad():
            if tile is None:
                return run(pre_t[None, None], post_t[None, None])[0].cpu().numpy()
            height, width = pre_t.shape
            th, tw = min(tile[0], height), min(tile[1], width)
            coarse = None
            if guided:  # strips: full-depth tiles of the tile's width, side by side (overlap 0)
                coarse = (tiled(pre_t, post_t, height, tw, 0.0) if guide_pass == "strips"
                          else run(pre_t[None, None], post_t[None, None])[0])
            return tiled(pre_t, post_t, th, tw, overlap, coarse).cpu().numpy()

    return estimate


def _lines_reversed(x: Any) -> Any:
    """``x`` (NumPy or torch, lines last) with its lines in reverse order."""
    return x.flip(-1) if isinstance(x, torch.Tensor) else np.ascontiguousarray(np.asarray(x)[..., ::-1])


def mirror_averaged(fn: Estimator) -> Estimator:
    """``fn`` averaged with itself on the laterally mirrored pair: the mean of ``fn(pre, post)`` (a
    2 x H x W displacement, axial samples and lateral lines) and of ``fn`` on both frames with their
    lines reversed, that estimate's lines reversed back and its lateral component negated (mirrored
    lateral motion has the opposite sign). Twice the time. A tracker that is exact gives the same field
    both ways; a network's speckle-scale errors partly differ between a pair and its mirror image, and
    the mean reduces the part that differs (the cpu teacher: strain RMSE -8 %, every one of the 16
    simulated test pairs better; ``studies/README.md``, "The head run again, and the mirrored pair")."""

    def run(pre: Any, post: Any) -> Any:
        direct = fn(pre, post)
        mirrored = _lines_reversed(fn(_lines_reversed(pre), _lines_reversed(post)))  # a copy: ours to change
        mirrored[..., 1, :, :] *= -1  # the lateral component (axis -3: axial, lateral)
        return 0.5 * (direct + mirrored)

    return run
