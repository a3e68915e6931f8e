"""`fit`: the one training loop of the project (teacher, DP-Net, CDP-KDNet, baselines).

Everything model-specific lives in the caller's ``loss_fn(model, batch, step)``
(unsupervised terms, distillation from a frozen teacher, schedules of loss
weights); everything schedule-like that must act on the model or the data
plugs in through hooks and a :class:`~cdpkd.train.data.BatchPlan`. The loop
itself only does: data -> AMP forward -> backward -> NaN guard -> clip -> AdamW
-> log / validate / checkpoint, identically on one process or under torchrun.

Step numbering: ``step`` passed to ``loss_fn`` and hooks is the 0-based index of
the update in progress (= updates already done). Metrics records, checkpoints
and ``val_fn`` use the number of updates done (``step + 1`` after update ``step``).
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from ..atomic import write_json
from ..progress import progress
from ..runtime import device_description, git_sha, numerics, seed_everything, utc_now
from .checkpoint import (
    MANIFEST_NAME,
    capture_rng,
    discard_after,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .config import FitConfig, learning_rate, trajectory_differences
from .data import BatchPlan, ShuffledBatches, step_loader, to_device
from .distributed import (
    DistInfo,
    all_reduce_grads,
    all_reduce_mean,
    any_rank,
    barrier,
    gather_objects,
    init_distributed,
)
from .history import History, MetricsLog
from .hooks import call_hooks, check_hooks

log = logging.getLogger(__name__)

LossFn = Callable[[nn.Module, Any, int], Mapping[str, "torch.Tensor | float"]]
ValFn = Callable[[nn.Module, int], Mapping[str, float]]

# fp16 loss scaling skips steps whose gradients overflow; this many in a row is divergence
MAX_CONSECUTIVE_OVERFLOWS = 25


class TrainingDivergedError(RuntimeError):
    """The loss or the gradient norm became NaN/Inf. The broken update was not applied or saved.

    Attributes:
        step: 0-based index of the update that failed (as passed to ``loss_fn``).
        terms: every loss term's value at that step.
        bad_terms: the non-finite ones.
        grad_norm: global gradient norm (None if the loss already failed).
        last_checkpoint: the newest checkpoint written or resumed from, if any.
    """

    def __init__(
        self,
        step: int,
        terms: dict[str, float],
        grad_norm: float | None,
        last_checkpoint: Path | None,
        detail: str = "",
    ) -> None:
        self.step = step
        self.terms = terms
        self.bad_terms = {k: v for k, v in terms.items() if not math.isfinite(v)}
        self.grad_norm = grad_norm
        self.last_checkpoint = last_checkpoint
        if self.bad_terms:
            what = "non-finite loss term(s) " + ", ".join(f"{k}={v}" for k, v in self.bad_terms.items())
        else:
            what = (
                f"non-finite gradient norm {grad_norm} (loss terms finite: "
                + ", ".join(f"{k}={v:.6g}" for k, v in terms.items())
                + ")"
            )
        ckpt = f"{last_checkpoint}" if last_checkpoint is not None else "none (no checkpoint was written yet)"
        super().__init__(
            f"training diverged at step {step}: {what}{'; ' + detail if detail else ''}. "
            f"The broken update was not applied and nothing was saved. Last good checkpoint: {ckpt}. "
            "Try a lower lr, a smaller grad_clip, amp='off', or check the inputs of this step."
        )


def resolve_amp(mode: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, use GradScaler)`` for an ``amp`` setting on ``device``."""
    if mode == "off":
        return None, False
    if mode == "auto":
        if device.type != "cuda":
            return None, False  # CPU autocast is rarely faster for convs and costs accuracy
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "bf16":
        return torch.bfloat16, False  # bf16 has fp32's exponent range: no loss scaling needed
    return torch.float16, True


def resolve_device(device: str | torch.device | None, info: DistInfo) -> torch.device:
    """The training device: explicit, else this rank's GPU, else CPU."""
    if device is None:
        device = torch.device("cuda", info.local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def make_optimizer(
    model: nn.Module, extra_params: Sequence[nn.Parameter], config: FitConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW; weight decay only on weights with >= 2 dims (not biases, norm scales, masks)."""
    seen: set[int] = set()
    decay, no_decay = [], []
    for p in [*model.parameters(), *extra_params]:
        if not p.requires_grad or id(p) in seen:  # a loss module may hold the model itself
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("the model (and loss module) has no trainable parameters")
    # fused AdamW is the fast path on CUDA (one kernel for all parameters)
    fused = True if device.type == "cuda" else None
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=fused)


def _check_terms(terms: Any, step: int) -> torch.Tensor:
    """Validate ``loss_fn``'s output; return the ``total`` tensor."""
    if not isinstance(terms, Mapping) or "total" not in terms:
        got = sorted(terms) if isinstance(terms, Mapping) else type(terms).__name__
        raise TypeError(
            f"loss_fn must return a dict of named loss terms with a 'total' key; got {got} at step {step}"
        )
    total = terms["total"]
    if not (isinstance(total, torch.Tensor) and total.numel() == 1 and total.requires_grad):
        raise TypeError(
            f"loss_fn's 'total' must be a one-element tensor that requires grad; got {type(total).__name__} "
            f"{getattr(total, 'shape', '')} requires_grad={getattr(total, 'requires_grad', None)} at step {step}"
        )
    for name, value in terms.items():
        if not isinstance(value, (int, float)) and not (
            isinstance(value, torch.Tensor) and value.numel() == 1
        ):
            raise TypeError(
                f"loss term {name!r} must be a scalar (tensor or float); got {type(value).__name__} at step {step}"
            )
    return total


def _non_finite_grads(model: nn.Module, limit: int = 5) -> list[str]:
    """Names of (at most ``limit``) parameters whose gradient has NaN/Inf."""
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    return bad[:limit] + ([f"... {len(bad) - limit} more"] if len(bad) > limit else [])


class _Window:
    """Running sums of the logged quantities between two metrics records."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.seconds = 0.0
        self.steps = 0

    def add(self, values: dict[str, float], seconds: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1
        self.seconds += seconds
        self.steps += 1

    def means(self) -> dict[str, float]:
        keys = sorted(self.sums)  # same order on every rank for the all-reduce
        means = all_reduce_mean([self.sums[k] / self.counts[k] for k in keys])
        out = dict(zip(keys, means))
        out["time_per_step_s"] = self.seconds / max(1, self.steps)
        return out


def _validate(val_fn: ValFn, model: nn.Module, done: int) -> dict[str, float]:
    """Run ``val_fn`` in eval mode without gradients; metrics prefixed ``val_``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            metrics = val_fn(model, done)
    finally:
        model.train(was_training)
    if not isinstance(metrics, Mapping):
        raise TypeError(f"val_fn must return a dict of metric name -> float; got {type(metrics).__name__}")
    return {f"val_{k}": float(v) for k, v in metrics.items()}


def fit(
    model: nn.Module,
    train_set: Dataset,
    loss_fn: LossFn,
    config: FitConfig,
    out_dir: str | os.PathLike,
    *,
    val_fn: ValFn | None = None,
    hooks: Sequence[Any] = (),
    resume: bool = True,
    device: str | torch.device | None = None,
    plan: BatchPlan | None = None,
    stop_after: int | None = None,
    time_limit_s: float | None = None,
) -> History:
    """Train ``model`` in place for ``config.steps`` AdamW updates; return the metrics History.

    Args:
        model: the network; moved to ``device``. Under torchrun it is wrapped in
            DistributedDataParallel for the forward pass only.
        train_set: map-style dataset of dict (or tuple) batches of tensors; its
            ``set_epoch(epoch)`` is called when it has one.
        loss_fn: ``loss_fn(model, batch, step) -> {"total": tensor, other terms...}``.
            ``model`` is what to call (the DDP wrapper under torchrun; use
            :func:`cdpkd.train.unwrap` for attributes). Runs under autocast. If
            ``loss_fn`` is an ``nn.Module``, its trainable parameters (e.g.
            distillation adapters) are optimised and checkpointed too; it is
            moved to ``device`` but its train/eval mode is left to the caller.
        config: :class:`FitConfig`.
        out_dir: run folder: ``metrics.jsonl``/``metrics.csv``, ``fit_config.json``,
            ``manifest.json``, ``checkpoints/``.
        val_fn: ``val_fn(model, steps_done) -> {metric: float}``, run (rank 0 only,
            eval mode, no grad) every ``config.val_every`` steps and at the end.
        hooks: objects with optional ``on_fit_start / on_step_start /
            on_before_optimizer_step / on_step_end / on_fit_end / state_dict /
            load_state_dict`` (see :mod:`cdpkd.train.hooks`).
        resume: continue from the latest valid checkpoint in ``out_dir``. With
            False, a folder that already holds checkpoints is an error.
        device: default: this rank's GPU if any, else CPU.
        plan: which items each step uses (default :class:`ShuffledBatches`);
            a curriculum passes its own.
        stop_after: stop (with a checkpoint) once this many updates are done,
            e.g. to split a run; the schedule still spans ``config.steps``.
        time_limit_s: stop (with a checkpoint) after this much wall time, e.g. the
            time a GPU is lent; call again with ``resume=True`` to continue.

    Returns:
        History of metrics records (``stopped_early`` says if a limit hit).

    Raises:
        TrainingDivergedError: NaN/Inf loss or gradient norm (fp16: 25 overflows in a row).
        CheckpointError: checkpoints in ``out_dir`` are all corrupted/tampered.
        ValueError: resuming with a config whose trajectory fields differ from the checkpoint's.
    """
    if not isinstance(config, FitConfig):
        raise TypeError(f"config must be a FitConfig, got {type(config).__name__}")
    hooks = tuple(hooks)
    check_hooks(hooks)
    out_dir = Path(out_dir)
    info = init_distributed()
    device = resolve_device(device, info)
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for deterministic GEMMs
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        return _fit(
            model,
            train_set,
            loss_fn,
            config,
            out_dir,
            val_fn,
            hooks,
            resume,
            device,
            info,
            plan,
            stop_after,
            time_limit_s,
        )
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


def _fit(
    model: nn.Module,
    train_set: Dataset,
    loss_fn: LossFn,
    config: FitConfig,
    out_dir: Path,
    val_fn: ValFn | None,
    hooks: tuple[Any, ...],
    resume: bool,
    device: torch.device,
    info: DistInfo,
    plan: BatchPlan | None,
    stop_after: int | None,
    time_limit_s: float | None,
) -> History:
    main = info.is_main
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    # one RNG stream per rank (different dropout per shard); rank 0 == a single-process run
    seed_everything(config.seed + info.rank)

    # --- model, optimizer, AMP ---------------------------------------------------
    model.to(device)
    loss_module = loss_fn if isinstance(loss_fn, nn.Module) else None
    extra_params: list[nn.Parameter] = []
    if loss_module is not None:
        loss_module.to(device)
        model_ids = {id(p) for p in model.parameters()}
        extra_params = [p for p in loss_module.parameters() if p.requires_grad and id(p) not in model_ids]
    optimizer = make_optimizer(model, extra_params, config, device)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    amp_dtype, use_scaler = resolve_amp(config.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
    if plan is None:
        n_items = len(train_set)  # type: ignore[arg-type]
        plan = ShuffledBatches(n_items, config.batch_size, config.seed, info.rank, info.world_size)
    metrics_log = MetricsLog(out_dir, enabled=main)

    # --- resume ------------------------------------------------------------------
    start, last_ckpt = 0, None
    existing = latest_checkpoint(out_dir) if (out_dir / MANIFEST_NAME).exists() else None
    if existing is not None:
        if not resume:
            raise FileExistsError(
                f"{out_dir} already holds checkpoints (latest {existing.name}); pass resume=True to continue "
                "that run, or use an empty out_dir"
            )
        meta = load_checkpoint(
            existing,
            model,
            optimizer,
            scaler=scaler,
            hooks=hooks,
            loss_module=loss_module,
            restore_rng_of_rank=info.rank,
        )
        diffs = trajectory_differences(meta.get("config", {}), config)
        if meta.get("world_size", 1) != info.world_size:
            diffs["world_size"] = (meta.get("world_size", 1), info.world_size)
        if diffs:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diffs.items())
            raise ValueError(
                f"cannot resume {existing}: the run's settings changed ({detail}). Use the same settings, "
                "or a new out_dir (e.g. load_weights(...) then fit(..., resume=False) to fine-tune)"
            )
        saved_steps = meta.get("config", {}).get("steps")
        if saved_steps != config.steps and config.schedule == "cosine":
            warnings.warn(
                f"resuming a cosine schedule planned for {saved_steps} steps with steps={config.steps}: "
                "the learning rate jumps to the new curve",
                stacklevel=3,
            )
        start, last_ckpt = int(meta["step"]), existing
        log.info("resumed from %s (step %d)", existing, start)
        barrier()  # every rank has read its checkpoint before rank 0 prunes newer, invalid ones
        if main:
            discard_after(out_dir, start)
    history = metrics_log.resume(start) if existing is not None else metrics_log.start_fresh()
    history.checkpoint = last_ckpt
    if main:
        write_json(
            out_dir / "fit_config.json",
            {
                "config": config.to_dict(),
                "world_size": info.world_size,
                "torch_device": str(device),
                "amp_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else None,
                "grad_scaler": use_scaler,
                "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
                "resumed_from_step": start,
                # not runtime.provenance(): its library scan imports pymust etc. (seconds per fit call)
                "git_sha": git_sha(),
                "date": utc_now(),
                "device": device_description(),  # the same key and wording as every result file
                "numerics": numerics(),
                "torch": torch.__version__,
            },
        )
    barrier()

    train_model: nn.Module = model
    if info.distributed:
        train_model = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.find_unused_parameters,
        )

    # --- loop --------------------------------------------------------------------
    end = config.steps if stop_after is None else min(config.steps, max(start, int(stop_after)))
    call_hooks(hooks, "on_fit_start", start, model, optimizer)
    loader = step_loader(
        train_set,
        plan,
        start,
        end,
        seed=config.seed,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
    )
    batches = iter(loader)
    window, hook_logs = _Window(), {}
    overflows, stopped, done = 0, None, start
    t_start = time.perf_counter()
    steps = range(start, end)
    try:
        for step in progress(steps, total=len(steps), desc=f"fit {config.profile}") if main else steps:
            t0 = time.perf_counter()
            model.train()
            lr = learning_rate(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            call_hooks(hooks, "on_step_start", step, model, optimizer)

            batch = to_device(next(batches), device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                terms = loss_fn(train_model, batch, step)
            total = _check_terms(terms, step)
            scaler.scale(total).backward()
            all_reduce_grads(extra_params)  # DDP syncs the model's grads, not a loss module's
            scaler.unscale_(optimizer)  # clip and inspect true gradients (no-op without fp16)
            call_hooks(hooks, "on_before_optimizer_step", step, model, optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip or math.inf)

            # one host sync per step: every term and the grad norm as Python floats
            names = list(terms)
            scalars = [
                t.detach().float().reshape(())
                if isinstance(t, torch.Tensor)
                else torch.tensor(float(t), device=device)
                for t in terms.values()
            ]
            *term_values, gnorm = torch.stack([*scalars, grad_norm.float().reshape(())]).tolist()
            values = dict(zip(names, term_values))
            loss_bad = any_rank(not math.isfinite(values["total"]))  # all ranks stop together
            if loss_bad or (not math.isfinite(gnorm) and not use_scaler):
                if not loss_bad:
                    detail = f"parameters with NaN/Inf gradients: {_non_finite_grads(model)}"
                elif math.isfinite(values["total"]):
                    detail = "the loss of another DDP rank was non-finite"
                else:
                    detail = ""
                raise TrainingDivergedError(step, values, None if loss_bad else gnorm, last_ckpt, detail)
            if use_scaler and not math.isfinite(gnorm):
                overflows += 1  # GradScaler skips this update and lowers the scale
                if overflows >= MAX_CONSECUTIVE_OVERFLOWS:
                    raise TrainingDivergedError(
                        step,
                        values,
                        gnorm,
                        last_ckpt,
                        f"fp16 gradients overflowed in {overflows} consecutive steps (loss scale {scaler.get_scale()})",
                    )
            else:
                overflows = 0
            scaler.step(optimizer)  # = optimizer.step() unless fp16 overflowed
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1

            step_values = {**{f"loss_{k}": v for k, v in values.items()}, "grad_norm": gnorm}
            logs = {"step": done, "lr": lr, **step_values}
            call_hooks(hooks, "on_step_end", step, model, logs)
            # keys the hooks added (pruning ratio, curriculum fraction, ...): logged with their latest value
            hook_logs.update(
                {k: v for k, v in logs.items() if k not in step_values and k not in ("step", "lr")}
            )
            window.add(step_values, time.perf_counter() - t0)
            if use_scaler:
                hook_logs["loss_scale"] = scaler.get_scale()

            # --- stop, log, validate, checkpoint ---------------------------------
            if done < config.steps:
                if time_limit_s is not None and any_rank(time.perf_counter() - t_start > time_limit_s):
                    stopped = "time_limit"
                elif done == end:
                    stopped = "stop_after"
            finished = done == config.steps or stopped is not None
            record: dict[str, Any] = {}
            if done % config.log_every == 0 or finished:
                record = {
                    "step": done,
                    "epoch": step // plan.steps_per_epoch,
                    "lr": lr,
                    **window.means(),
                    **hook_logs,
                    "samples": done * config.batch_size * info.world_size,
                }
                window.reset()
                log.info(
                    "step %d/%d loss %.5g lr %.3g", done, config.steps, record.get("loss_total", math.nan), lr
                )
            # validation follows its own schedule only (not early stops): a split run must
            # consume exactly the RNG draws of an uninterrupted one
            if (
                val_fn is not None
                and main
                and ((config.val_every and done % config.val_every == 0) or done == config.steps)
            ):
                record = {"step": done, **record, **_validate(val_fn, model, done)}
            if record:
                metrics_log.append(record)
            if (config.checkpoint_every and done % config.checkpoint_every == 0) or finished:
                rng = gather_objects(capture_rng())
                if main:
                    last_ckpt = save_checkpoint(
                        out_dir,
                        done,
                        model=model,
                        optimizer=optimizer,
                        scaler=scaler,
                        hooks=hooks,
                        loss_module=loss_module,
                        rng=rng,
                        profile=config.profile,
                        seed=config.seed,
                        keep_last=config.keep_last,
                        meta={
                            "epoch": done // plan.steps_per_epoch,
                            "position_in_epoch": done % plan.steps_per_epoch,
                            "steps_per_epoch": plan.steps_per_epoch,
                            "samples_seen": done * config.batch_size * info.world_size,
                            "world_size": info.world_size,
                            "lr": lr,
                            "config": config.to_dict(),
                        },
                    )
                    history.checkpoint = last_ckpt
                barrier()
            if stopped is not None:
                break
    finally:
        del batches  # shuts DataLoader workers down, also on errors
    if start >= config.steps:
        log.info("%s already trained for %d >= %d steps; nothing to do", out_dir, start, config.steps)
    history.stopped_early = stopped
    call_hooks(hooks, "on_fit_end", done, model, history)
    barrier()
    return history
