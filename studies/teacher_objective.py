"""Does the teacher's training objective prefer the true displacement? (the teacher issue's open gap)

The cpu teacher stays ~4x behind NCC block matching on strain RMSE, and longer or differently
weighted training has closed little of it (README, teacher section). Two explanations predict
different numbers: the objective itself does not reward NCC-level precision (then no training
reaches it), or it does and the network falls short of the objective's optimum (then capacity or
training length is the limit). Per simulated test pair, on whole frames:

- ``objective``: the loss the teacher last trained with (:func:`cdpkd.recipes.final_teacher_loss`,
  its terms on the final displacement; the pyramid levels are the network's, not the field's)
  at the ground truth, at the teacher's estimate (notebook 01's tiles) and at NCC block matching's;
- ``polished``: each of those displacements after ``--polish-steps`` L-BFGS iterations on the
  objective itself (the field is the only variable): its objective and its errors. Whether descent from the teacher's estimate
  lowers the objective and the error together says whether the teacher sits at the objective's
  optimum; where descent from the truth ends says how good that optimum is.

    python studies/teacher_objective.py --profile cpu

The optimum itself can be audited for other loss settings without training anything: ``--loss``
updates the objective's settings (JSON, :class:`cdpkd.losses.UnsupervisedLossConfig` fields) and
``--starts truth`` descends from the truth alone, so that where a long descent ends (e.g.
``--polish-steps 500``) says how precise a network that fully minimised that loss could be:

    python studies/teacher_objective.py --profile cpu --starts truth --polish-steps 500 \
        --loss '{"smooth_weight": 0.05}' --out studies/results/teacher_objective_cpu_audit_smooth005.json

``--extra-smoothness`` adds a second smoothness term beside the objective's own (JSON: ``weight`` and
``lag``, the differences' distance in full-resolution samples and lines), e.g. adjacent and lagged
differences together, which no single ``--loss`` setting expresses:

    python studies/teacher_objective.py --profile cpu --starts truth --polish-steps 500 --pairs 0 4 \
        --extra-smoothness '{"weight": 0.5, "lag": [16, 4]}' --out studies/results/teacher_objective_cpu_audit_lag1_plus_lag16x4.json

``--mixed`` also scores fields that combine one estimate's axial component with another's lateral one
(``ncc_axial_teacher_lateral``, and with the truth among the starts ``teacher_axial_truth_lateral`` and
``ncc_axial_truth_lateral``): NCC's axial strain is far better than the teacher's and its lateral
estimate noisier, so these say which component the objective's ranking of the two comes from.

Builds (or reuses) notebook 01's datasets and, when it is a start, its teacher under ``--data-dir``. Writes
``studies/results/teacher_objective_<profile>.json`` (provenance, settings, one row per pair).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch

from cdpkd.atomic import write_text
from cdpkd.classic import ncc_block_matching
from cdpkd.estimators import default_device, network_estimator
from cdpkd.evaluation import pair_metrics
from cdpkd.losses import UnsupervisedLoss, UnsupervisedLossConfig
from cdpkd.pipeline import NOTEBOOK_DIR, resolved_parameters
from cdpkd.recipes import ensure_teacher, final_teacher_loss, load_trained, teacher_base_recipe
from cdpkd.runtime import provenance
from cdpkd.sim import read_pair
from cdpkd.sim.study import notebook_datasets
from cdpkd.sim.torch_dataset import rf_pair_tensors

from _study import json_object, output_path, study_parser

NOTEBOOK = NOTEBOOK_DIR / "01_teacher.ipynb"
ERRORS = ("strain_rmse", "disp_rmse_axial", "disp_rmse_lateral")
STARTS = ("truth", "teacher", "ncc")


class WithExtraSmoothness:
    """``loss`` plus a second smoothness term: the same loss settings with the similarity,
    incompressibility and Poisson weights at 0 and ``weight`` / ``lag`` as its smoothness weight and lag.
    Returns ``loss``'s named terms in their own units (``total`` = sum of each term times its weight in
    ``loss``): ``total`` gains the extra term and ``smooth`` gains it divided by ``loss``'s smoothness
    weight, so that identity still holds."""

    def __init__(self, loss: UnsupervisedLoss, weight: float, lag: Any) -> None:
        if loss.config.smooth_weight <= 0:
            raise ValueError("the objective's own smoothness weight must be > 0 to add a second smoothness term")
        settings = {**loss.config.to_dict(), "similarity_weight": 0.0, "incompressibility_weight": 0.0,
                    "poisson_weight": 0.0, "smooth_weight": weight, "smooth_lag": lag}
        self.loss, self.extra = loss, UnsupervisedLoss(UnsupervisedLossConfig.from_dict(settings))

    def __call__(self, pre: torch.Tensor, post: torch.Tensor, outputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms, extra = self.loss(pre, post, outputs), self.extra(pre, post, outputs)
        return {**terms, "total": terms["total"] + extra["total"],
                "smooth": terms["smooth"] + extra["total"] / self.loss.config.smooth_weight}


def parse_extra_smoothness(text: str) -> dict[str, Any]:
    spec = json_object(text, "--extra-smoothness")
    if set(spec) != {"weight", "lag"}:
        raise argparse.ArgumentTypeError(f"--extra-smoothness: give exactly 'weight' and 'lag', got {sorted(spec)}")
    return spec


def frames(pre: np.ndarray, post: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """H x W RF frames as 1 x 1 x H x W float32 tensors divided by the pre frame's standard
    deviation, exactly as the training pairs are (:func:`cdpkd.sim.torch_dataset.rf_pair_tensors`)."""
    pair = rf_pair_tensors(pre, post)
    return pair["pre"][None], pair["post"][None]


def objective_terms(loss: UnsupervisedLoss, pre: torch.Tensor, post: torch.Tensor, disp: np.ndarray) -> dict[str, float]:
    """The loss terms (``total``, ``similarity``, ``smooth``, ``incompressibility``) of a
    2 x H x W displacement (samples, lines) on the frames of :func:`frames`."""
    with torch.no_grad():
        terms = loss(pre, post, {"displacement": torch.from_numpy(np.asarray(disp, np.float32))[None]})
    return {k: float(terms[k]) for k in ("total", "similarity", "smooth", "incompressibility")}


def errors(disp: np.ndarray, pair: Any, window: int, border: tuple[int, int]) -> dict[str, float]:
    """Strain and displacement RMSE of ``disp`` against the pair's truth (notebook 01's scoring)."""
    m = pair_metrics(disp, pair.displacement, pair.pre, pair.post, pair.labels, strain_window=window, border=border)
    return {k: m[k] for k in ERRORS}


def polish(loss: UnsupervisedLoss, pre: torch.Tensor, post: torch.Tensor, init: np.ndarray, steps: int) -> np.ndarray:
    """``init`` (2 x H x W, samples / lines) after ``steps`` L-BFGS iterations minimising ``loss`` over
    the displacement field itself. L-BFGS with a strong-Wolfe line search, not Adam: its steps scale
    with the gradient and never raise the objective, where Adam's first steps move every pixel by
    the full step size whatever its gradient (noise added to a field already at the optimum)."""
    disp = torch.from_numpy(np.array(init, np.float32))[None].requires_grad_(True)
    optimizer = torch.optim.LBFGS([disp], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                                  tolerance_grad=0.0, tolerance_change=0.0)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        total = loss(pre, post, {"displacement": disp})["total"]
        total.backward()
        return total

    optimizer.step(closure)
    return disp.detach()[0].numpy()


def mixed_fields(fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Fields taking the axial component (index 0) of one entry of ``fields`` and the lateral one of
    another, for the pairs whose both entries exist: NCC / teacher, teacher / truth, NCC / truth."""
    combos = (("ncc", "teacher"), ("teacher", "truth"), ("ncc", "truth"))
    return {f"{axial}_axial_{lateral}_lateral": np.stack((fields[axial][0], fields[lateral][1]))
            for axial, lateral in combos if axial in fields and lateral in fields}


def parse_loss_changes(text: str) -> dict[str, Any]:
    return json_object(text, "--loss")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = study_parser(__doc__, "teacher_objective")
    parser.add_argument("--pairs", type=int, nargs="+", default=None, help="test pair indices (default: all)")
    parser.add_argument("--polish-steps", type=int, default=50, help="L-BFGS iterations on the field (0: none)")
    parser.add_argument("--starts", nargs="+", choices=STARTS, default=list(STARTS),
                        help="displacements to score and descend from (default: all)")
    parser.add_argument("--loss", type=parse_loss_changes, default={},
                        help="JSON object updating the objective's settings (default: the teacher's last stage's)")
    parser.add_argument("--extra-smoothness", type=parse_extra_smoothness, default=None,
                        help='JSON {"weight": w, "lag": [axial, lateral]}: a second smoothness term beside the objective\'s')
    parser.add_argument("--mixed", action="store_true",
                        help="also score fields mixing one start's axial component with another's lateral one")
    args = parser.parse_args(argv)
    if args.polish_steps < 0:
        parser.error("--polish-steps must be >= 0")

    p = resolved_parameters(args.profile, NOTEBOOK)
    base = teacher_base_recipe(p)
    settings = {**final_teacher_loss(base, p["teacher_refine"]), **args.loss}
    try:  # before anything is built
        loss = UnsupervisedLoss(UnsupervisedLossConfig.from_dict(settings))
    except (TypeError, ValueError) as error:
        parser.error(f"--loss: {error}")
    if args.extra_smoothness is not None:
        try:
            loss = WithExtraSmoothness(loss, args.extra_smoothness["weight"], args.extra_smoothness["lag"])
        except (TypeError, ValueError) as error:
            parser.error(f"--extra-smoothness: {error}")
    paths = notebook_datasets(args.data_dir, p)
    device = default_device()  # as notebook 01 evaluates
    tile = base.crop if p["tiled_inference"] else None
    estimators, teacher_artifact = {}, None
    if "teacher" in args.starts:  # trains notebook 01's teacher if the cache lacks it (hours on cpu)
        stages = ensure_teacher(args.data_dir, base, paths["train"], refine=p["teacher_refine"], profile=args.profile)
        teacher_artifact = f"teacher/{stages[-1].name}"
        estimators["teacher"] = network_estimator(load_trained(stages[-1], device), device, tile=tile,
                                                  overlap=p["tile_overlap"], guided=p["guided_tiles"],
                                                  guide_pass=p["guide_pass"])
    if "ncc" in args.starts:
        estimators["ncc"] = ncc_block_matching
    window, border = p["strain_window"], (p["border_samples"], p["border_lines"])
    pairs = args.pairs if args.pairs is not None else list(range(p["n_test"]))
    out = output_path(args)
    result: dict[str, Any] = {
        **provenance(), "profile": args.profile, "teacher_artifact": teacher_artifact,
        "settings": {"loss": settings, "loss_changes": args.loss, "extra_smoothness": args.extra_smoothness,
                     "starts": args.starts,
                     "tile": list(tile) if tile else None, "guided_tiles": p["guided_tiles"], "guide_pass": p["guide_pass"],
                     "strain_window": window, "border": list(border), "polish_steps": args.polish_steps, "mixed": args.mixed,
                     "torch_threads": torch.get_num_threads()},
        "pairs": [],
    }
    for index in pairs:
        pair = read_pair(paths["test"], index)
        pre, post = frames(pair.pre, pair.post)
        fields = {"truth": pair.displacement.astype(np.float32)} if "truth" in args.starts else {}
        fields.update({name: np.asarray(run(pair.pre, pair.post), np.float32) for name, run in estimators.items()})
        if args.mixed:
            fields.update(mixed_fields(fields))
        row: dict[str, Any] = {"pair": index, "applied_strain_pct": float(pair.meta["applied_strain"]) * 100,
                               "objective": {}, "errors": {}, "polished": {}}
        for name, disp in fields.items():
            row["objective"][name] = objective_terms(loss, pre, post, disp)
            row["errors"][name] = errors(disp, pair, window, border)
            if args.polish_steps:
                start = time.perf_counter()
                polished = polish(loss, pre, post, disp, args.polish_steps)
                row["polished"][name] = {"objective": objective_terms(loss, pre, post, polished),
                                         "errors": errors(polished, pair, window, border),
                                         "seconds": time.perf_counter() - start}
        result["pairs"].append(row)
        print(f"pair {index}: objective " + ", ".join(f"{k} {v['total']:.5f}" for k, v in row["objective"].items())
              + "; polished strain RMSE " + ", ".join(f"{k} {v['errors']['strain_rmse']:.2e}"
                                                       for k, v in row["polished"].items()), flush=True)
        write_text(out, json.dumps(result, indent=1) + "\n")  # after every pair: a stopped study keeps its rows
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
