"""Efficiency of every method on one full RF pair, from the architectures alone (no training needed).

    python benchmarks/efficiency.py [--profile cpu] [--samples 2048] [--lines 256] [--repeats 5]
                                    [--threads 2] [--gpu auto|on|off] [--cpu-timing on|off]
                                    [--tiles guided|plain | --whole-frame] [--tiles-per-batch 16]
                                    [--tile SAMPLES LINES] [--overlap 0.5]
                                    [--multiple-of 1] [--cpu-bf16] [--compile]
                                    [--out benchmarks/results]

Parameters, FLOPs, peak memory and latency depend on the architecture, not on
the weights, so this measures (with random weights) what notebook 04 measures on
the trained networks: the profile's teacher; its budget-pruned student at the
profile's budget (DP-Net and CDP-KDNet have exactly these per-layer widths: both
come from the same joint budget allocation, only *which* channels survive depends
on the weights); the profile's baselines sized to the same parameter budget; NCC
block matching and GLUE. One simulated pair of ``--samples`` x ``--lines``,
batch 1, networks on the notebooks' overlapping tiles under the profile (``tile_samples`` deep, as
wide as the training crop: ``cdpkd.recipes.network_tile``; their ``tile_overlap`` and ``guide_pass``),
guided or not (``--tiles``; default: the notebooks' ``guided_tiles``, so this times what they
evaluate) or, with ``--whole-frame``,
in one forward on the whole frame (faster, but not how the networks were
evaluated: they were trained on crops). ``--compile`` also times the networks through
``torch.compile`` on the CPU. Writes
``efficiency_<profile>[_plain-tiles|_whole-frame][_tile<s>x<l>][_overlap<o>][_batch<n>][_multiple<n>][_cpu-bf16][_compiled]_<device>.json`` with the table,
the settings and the provenance (device, library versions, git SHA, date).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cdpkd.atomic import write_json
from cdpkd.classic import glue, ncc_block_matching
from cdpkd.efficiency import Tracker, measure_efficiency
from cdpkd.ops import describe_backends
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import network_tile
from cdpkd.recipes.architectures import profile_networks
from cdpkd.runtime import device_description, file_slug, provenance
from cdpkd.sim import simulate_pair
from cdpkd.sim.study import simulation_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--lines", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--cpu-timing", choices=("on", "off"), default="on",
                        help="CPU latency and peak memory (off: GPU columns only, e.g. on a lent GPU machine)")
    parser.add_argument("--tiles", choices=("guided", "plain"), default=None,
                        help="guided or plain tiles (default: the notebooks' guided_tiles under --profile)")
    parser.add_argument("--tiles-per-batch", type=int, default=16,
                        help="tiles per forward (16: the notebooks'; more: fewer, larger GPU launches)")
    parser.add_argument("--multiple-of", type=int, default=None,
                        help="round the student's widths to multiples of this (default: the profile's "
                             "student_width_multiple)")
    parser.add_argument("--whole-frame", action="store_true", help="one forward per frame instead of tiles")
    parser.add_argument("--tile", type=int, nargs=2, default=None, metavar=("SAMPLES", "LINES"),
                        help="tile size (default: the notebooks' tile under --profile), e.g. tiles deeper than the crop")
    parser.add_argument("--overlap", type=float, default=None,
                        help="tile overlap in [0, 1) (default: the notebooks' tile_overlap under --profile)")
    parser.add_argument("--cpu-bf16", action="store_true",
                        help="also time the networks under CPU bf16 autocast (latency_cpu_bf16_ms), in the "
                             "same round-robin as fp32")
    parser.add_argument("--compile", action="store_true",
                        help="also time the networks through torch.compile (latency_cpu_compiled_ms, and "
                             "latency_cpu_bf16_compiled_ms with --cpu-bf16), in the same round-robin as eager")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    if args.tiles_per_batch < 1:
        parser.error("--tiles-per-batch must be >= 1")
    if args.whole_frame and (args.tiles or args.tile or args.overlap is not None):
        parser.error("--tiles, --tile and --overlap describe tiles: not with --whole-frame")
    if args.overlap is not None and not 0.0 <= args.overlap < 1.0:
        parser.error(f"--overlap must be in [0, 1), got {args.overlap}")
    if (args.cpu_bf16 or args.compile) and args.cpu_timing == "off":
        parser.error("--cpu-bf16 and --compile time the CPU: not with --cpu-timing off")

    if args.multiple_of is not None and args.multiple_of < 1:
        parser.error("--multiple-of must be >= 1")
    networks, _, settings = profile_networks(args.profile, args.multiple_of)
    notebook = resolved_parameters(args.profile, NOTEBOOK_DIR / "04_ablations.ipynb")
    overlap = notebook["tile_overlap"] if args.overlap is None else args.overlap
    if args.tiles is None:
        guided = not args.whole_frame and bool(notebook["guided_tiles"])
    else:
        guided = args.tiles == "guided"
    trackers = {
        "ncc": Tracker(lambda pre, post: ncc_block_matching(pre, post), gpu=True),
        "glue": Tracker(lambda pre, post: glue(pre, post), flops_counted=False),
    }
    pair = simulate_pair(simulation_config(n_samples=args.samples, n_lines=args.lines), seed=0)
    gpu = {"auto": None, "on": True, "off": False}[args.gpu]
    notebook_tile = network_tile({**notebook, "tiled_inference": True})  # its size even where they run whole frames
    tile = None if args.whole_frame else (tuple(args.tile) if args.tile else notebook_tile)
    table = measure_efficiency(
        pair.pre,
        pair.post,
        networks,
        trackers,
        tile=tile,
        overlap=overlap,
        guided=guided,
        guide_pass=notebook["guide_pass"],
        repeats=args.repeats,
        threads=args.threads,
        gpu=gpu,
        cpu_timing=args.cpu_timing == "on",
        cpu_bf16=args.cpu_bf16,
        tiles_per_batch=args.tiles_per_batch,
        cpu_compiled=args.compile,
    )
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    slug = file_slug(device_description())
    mode = "_whole-frame" if args.whole_frame else ("" if guided else "_plain-tiles")
    if tile is not None and tuple(tile) != notebook_tile:
        mode += f"_tile{tile[0]}x{tile[1]}"
    if tile is not None and overlap != notebook["tile_overlap"]:
        mode += f"_overlap{overlap:g}"
    if args.tiles_per_batch != 16 and not args.whole_frame:
        mode += f"_batch{args.tiles_per_batch}"
    if args.multiple_of is not None and args.multiple_of != settings["profile_width_multiple"]:
        mode += f"_multiple{args.multiple_of}"
    if args.cpu_bf16:
        mode += "_cpu-bf16"
    if args.compile:
        mode += "_compiled"
    path = args.out / f"efficiency_{args.profile}{mode}_{slug}.json"
    write_json(
        path,
        {
            **provenance(),
            "benchmark": "efficiency",
            "profile": args.profile,
            "shape": [args.samples, args.lines],
            "repeats": args.repeats,
            "cpu_threads": args.threads,
            "cpu_timing": args.cpu_timing == "on",
            **settings,
            "tile": list(tile) if tile else None,
            "overlap": overlap if tile else None,
            "guided_tiles": guided,
            "guide_pass": notebook["guide_pass"] if guided else None,
            "tiles_per_batch": None if args.whole_frame else args.tiles_per_batch,
            "compiled": args.compile,
            "ops_backends": describe_backends(),  # "last": what the correlation / warp ops ran last (GPU pass)
            "methods": {
                k: {c: (None if v != v else float(v)) for c, v in row.items()} for k, row in table.iterrows()
            },
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
