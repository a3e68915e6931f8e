"""cdpkd.train.fit: learning, exact resume, checkpoint integrity, NaN guard, hooks, logs, AMP.

Tiny problem throughout: a 2-layer conv net (with dropout, so the RNG matters)
learns ``post = 2 * pre + 1`` on 1 x 32 x 16 random frames with per-item random
noise and an epoch-dependent roll (so data order, crops/augmentation and
``set_epoch`` all have to continue exactly on resume).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from cdpkd.train import (
    CheckpointError,
    FitConfig,
    History,
    TrainingDivergedError,
    fit,
    latest_checkpoint,
    learning_rate,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    read_model_config,
)
from cdpkd.train.checkpoint import trainable_state


@dataclass
class TinyConfig:
    width: int = 8
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class TinyNet(nn.Module):
    def __init__(self, config: TinyConfig | None = None) -> None:
        super().__init__()
        self.config = config or TinyConfig()
        w = self.config.width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1),
            nn.ReLU(),
            nn.Dropout(self.config.dropout),
            nn.Conv2d(w, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def tiny_model(seed: int = 0, **kw) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(TinyConfig(**kw))


class AffineFrames(Dataset):
    """pre: fixed random frame (+ per-item noise drawn from the global torch RNG); post = 2 pre + 1."""

    def __init__(self, n: int = 16) -> None:
        g = torch.Generator().manual_seed(1234)
        self.frames = torch.randn(n, 1, 32, 16, generator=g)
        self.epoch = 0
        self.epochs_seen: set[int] = set()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs_seen.add(epoch)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        pre = torch.roll(self.frames[i], shifts=self.epoch, dims=1) + 0.05 * torch.randn(1, 32, 16)
        return {"pre": pre, "post": 2 * pre + 1, "index": torch.tensor(i)}


def mse_loss(model: nn.Module, batch: dict, step: int) -> dict[str, torch.Tensor]:
    out = model(batch["pre"])
    mse = ((out.float() - batch["post"]) ** 2).mean()
    reg = 1e-4 * sum((p**2).sum() for p in model.parameters())
    return {"total": mse + reg, "mse": mse, "reg": reg}


def cfg(**kw) -> FitConfig:
    base = dict(steps=12, batch_size=4, lr=1e-2, warmup_steps=2, log_every=3, amp="off", seed=0)
    base.update(kw)
    return FitConfig(**base)


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


# --- config and schedule ------------------------------------------------------------


def test_config_json_round_trip_and_validation(tmp_path):
    config = FitConfig(steps=50, betas=(0.8, 0.95), grad_clip=None, val_every=10, profile="smoke")
    assert FitConfig.from_json(config.to_json()) == config
    (tmp_path / "c.json").write_text(config.to_json())
    assert FitConfig.from_json(tmp_path / "c.json") == config
    assert FitConfig.from_dict(json.loads(json.dumps(config.to_dict()))).betas == (0.8, 0.95)
    with pytest.raises(ValueError, match="unknown FitConfig field"):
        FitConfig.from_dict({"stpes": 3})
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        FitConfig(steps=0)
    with pytest.raises(ValueError, match="amp must be one of"):
        FitConfig(amp="fp8")
    with pytest.raises(ValueError, match="schedule must be one of"):
        FitConfig(schedule="linear")


def test_learning_rate_schedule():
    c = FitConfig(steps=110, lr=1.0, warmup_steps=10, min_lr_ratio=0.1, schedule="cosine")
    lrs = [learning_rate(s, c) for s in range(110)]
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.55)  # half way: midpoint of 1.0 and 0.1
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert learning_rate(110, c) == pytest.approx(0.1)
    const = c.replace(schedule="constant")
    assert learning_rate(50, const) == 1.0 and learning_rate(0, const) == pytest.approx(1 / 11)


# --- learning and determinism -------------------------------------------------------


def test_loss_decreases(tmp_path):
    model = tiny_model(dropout=0.0)
    history = fit(model, AffineFrames(), mse_loss, cfg(steps=60, log_every=5), tmp_path)
    first, last = history.records[0]["loss_mse"], history.records[-1]["loss_mse"]
    assert last < 0.1 * first, (first, last)
    assert history.records[-1]["step"] == 60 and history.stopped_early is None


def test_seeded_runs_are_identical_and_seed_matters(tmp_path):
    a, b, c = tiny_model(), tiny_model(), tiny_model()
    ha = fit(a, AffineFrames(), mse_loss, cfg(steps=6), tmp_path / "a")
    hb = fit(b, AffineFrames(), mse_loss, cfg(steps=6), tmp_path / "b")
    fit(c, AffineFrames(), mse_loss, cfg(steps=6, seed=1), tmp_path / "c")
    assert_same_weights(a, b)
    assert [r["loss_total"] for r in ha] == [r["loss_total"] for r in hb]
    assert not torch.equal(a.body[0].weight, c.body[0].weight)


def test_result_does_not_depend_on_worker_count(tmp_path):
    a, b = tiny_model(), tiny_model()
    fit(a, AffineFrames(), mse_loss, cfg(steps=6), tmp_path / "a")
    fit(b, AffineFrames(), mse_loss, cfg(steps=6, num_workers=2), tmp_path / "b")
    assert_same_weights(a, b)


# --- exact resume -------------------------------------------------------------------


class CountingHook:
    """Counts calls; its counter is checkpointed; adds a logged value."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.count = 0
        self.loaded: dict | None = None

    def _hit(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def on_fit_start(self, step, model, optimizer):
        self._hit("on_fit_start")
        self.fit_start_step = step

    def on_step_start(self, step, model, optimizer):
        self._hit("on_step_start")
        assert isinstance(model, TinyNet) and isinstance(optimizer, torch.optim.AdamW)

    def on_before_optimizer_step(self, step, model, optimizer):
        self._hit("on_before_optimizer_step")
        assert model.body[0].weight.grad is not None

    def on_step_end(self, step, model, logs):
        self._hit("on_step_end")
        self.count += 1
        logs["hook_count"] = self.count

    def on_fit_end(self, step, model, history):
        self._hit("on_fit_end")

    def state_dict(self) -> dict:
        return {"count": self.count, "trace": torch.tensor([self.count, 2 * self.count])}

    def load_state_dict(self, state: dict) -> None:
        self.loaded = state
        self.count = state["count"]


@pytest.mark.parametrize("split", ["stop_after", "steps"])
def test_kill_and_resume_gives_identical_weights(tmp_path, split):
    # 16 items / batch 4 = 4 steps per epoch: the split at 6 lands mid-epoch
    n, k = 12, 6
    schedule = "cosine" if split == "stop_after" else "constant"  # "steps=k" changes a cosine's length
    reference = tiny_model()
    ref_hist = fit(
        reference,
        AffineFrames(),
        mse_loss,
        cfg(steps=n, schedule=schedule),
        tmp_path / "ref",
        hooks=[CountingHook()],
    )

    first = tiny_model()
    if split == "stop_after":
        h1 = fit(
            first,
            AffineFrames(),
            mse_loss,
            cfg(steps=n, schedule=schedule),
            tmp_path / "run",
            hooks=[CountingHook()],
            stop_after=k,
        )
        assert h1.stopped_early == "stop_after"
    else:
        h1 = fit(
            first,
            AffineFrames(),
            mse_loss,
            cfg(steps=k, schedule=schedule),
            tmp_path / "run",
            hooks=[CountingHook()],
        )
    assert latest_checkpoint(tmp_path / "run").name == f"step_{k:08d}"
    # simulated kill: a new process would start from a freshly initialised model
    second, hook = tiny_model(seed=99), CountingHook()
    data = AffineFrames()
    history = fit(second, data, mse_loss, cfg(steps=n, schedule=schedule), tmp_path / "run", hooks=[hook])

    assert_same_weights(second, reference)
    assert hook.loaded["count"] == k and torch.equal(hook.loaded["trace"], torch.tensor([k, 2 * k]))
    assert hook.fit_start_step == k and hook.calls["on_step_start"] == n - k
    assert hook.count == n
    assert data.epochs_seen == {1, 2}  # resumed mid-epoch 1 (steps 4-7), then epoch 2
    # the metrics log continues seamlessly too
    assert [r["step"] for r in history] == [r["step"] for r in ref_hist] == [3, 6, 9, 12]
    for mine, ref in zip(history, ref_hist):
        assert mine["loss_total"] == ref["loss_total"] and mine["hook_count"] == ref["hook_count"]


def test_rerun_of_finished_run_is_a_no_op(tmp_path):
    a = tiny_model()
    fit(a, AffineFrames(), mse_loss, cfg(steps=4), tmp_path)
    b = tiny_model(seed=5)
    history = fit(b, AffineFrames(), mse_loss, cfg(steps=4), tmp_path)
    assert_same_weights(a, b)  # loaded from the final checkpoint, no update
    assert history.records[-1]["step"] == 4


def test_resume_refuses_changed_settings_and_fresh_start_over_a_run(tmp_path):
    fit(tiny_model(), AffineFrames(), mse_loss, cfg(steps=4), tmp_path)
    with pytest.raises(ValueError, match=r"settings changed \(lr: checkpoint 0.01 vs now 0.001"):
        fit(tiny_model(), AffineFrames(), mse_loss, cfg(steps=8, lr=1e-3), tmp_path)
    with pytest.raises(FileExistsError, match="resume=True"):
        fit(tiny_model(), AffineFrames(), mse_loss, cfg(steps=8), tmp_path, resume=False)


def test_time_limit_stops_with_checkpoint_and_resume_finishes(tmp_path):
    model = tiny_model()
    history = fit(model, AffineFrames(), mse_loss, cfg(steps=10), tmp_path, time_limit_s=0.0)
    assert history.stopped_early == "time_limit"
    assert latest_checkpoint(tmp_path).name == "step_00000001"
    history = fit(model, AffineFrames(), mse_loss, cfg(steps=10), tmp_path)
    assert history.stopped_early is None and history.records[-1]["step"] == 10


# --- checkpoint files ---------------------------------------------------------------


def test_checkpoint_contents_manifest_and_keep_last(tmp_path):
    model = tiny_model()
    fit(
        model,
        AffineFrames(),
        mse_loss,
        cfg(steps=8, checkpoint_every=2, keep_last=2, profile="smoke"),
        tmp_path,
    )
    entries = list_checkpoints(tmp_path)
    assert [e["step"] for e in entries] == [6, 8]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000006", "step_00000008"]
    entry = entries[-1]
    assert entry["profile"] == "smoke" and entry["seed"] == 0 and entry["git_sha"] and entry["date"]
    assert set(entry["files"]) == {"state.pt", "rng.json", "model_config.json", "meta.json"}
    assert all(len(h) == 64 for h in entry["files"].values())
    ckpt = tmp_path / entry["path"]
    # no pickle: the state loads with weights_only=True and holds only plain containers
    state = torch.load(ckpt / "state.pt", weights_only=True)
    assert set(state) >= {"model", "optimizer", "scaler", "hooks", "rng"}
    assert read_model_config(tmp_path) == {"width": 8, "dropout": 0.1}
    meta = json.loads((ckpt / "meta.json").read_text())
    assert meta["step"] == 8 and meta["epoch"] == 2 and meta["position_in_epoch"] == 0
    assert FitConfig.from_dict(meta["config"]).steps == 8
    json.loads((ckpt / "rng.json").read_text())  # NumPy / Python RNG states are JSON

    fresh = tiny_model(seed=3)
    info = load_weights(tmp_path, fresh)
    assert info["step"] == 8
    assert_same_weights(fresh, model)
    fresh2 = tiny_model(seed=4)
    load_weights(ckpt, fresh2)
    assert_same_weights(fresh2, model)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_weights(tmp_path, tiny_model(width=4))


def _one_checkpoint_run(path: Path) -> Path:
    fit(tiny_model(), AffineFrames(), mse_loss, cfg(steps=2), path)
    return path / "checkpoints" / "step_00000002"


def test_corrupted_checkpoint_fails_clearly(tmp_path):
    ckpt = _one_checkpoint_run(tmp_path)
    data = bytearray((ckpt / "state.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte
    (ckpt / "state.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"step_00000002/state.pt is corrupted or was modified"):
        load_checkpoint(ckpt, tiny_model())
    # resume must not silently start over a run whose only checkpoint is broken
    with pytest.raises(CheckpointError, match="no valid checkpoint"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(tiny_model(), AffineFrames(), mse_loss, cfg(steps=4), tmp_path)


def test_missing_files_and_tampered_manifest_fail_clearly(tmp_path):
    ckpt = _one_checkpoint_run(tmp_path)
    manifest_path = tmp_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())

    tampered = json.loads(json.dumps(manifest))
    tampered["checkpoints"][0]["files"]["state.pt"] = "0" * 64
    manifest_path.write_text(json.dumps(tampered))
    with pytest.raises(
        CheckpointError, match=r"state.pt is corrupted or was modified: .*manifest.json says 0{64}"
    ):
        load_weights(ckpt, tiny_model())

    manifest_path.write_text(json.dumps(manifest)[:-20])
    with pytest.raises(CheckpointError, match="manifest.json is not valid JSON"):
        load_weights(tmp_path, tiny_model())

    manifest_path.write_text(json.dumps(manifest))
    original_meta = (ckpt / "meta.json").read_bytes()
    meta = json.loads(original_meta)
    meta["step"] = 1000  # edited description: its hash in the manifest no longer matches
    (ckpt / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"meta.json is corrupted or was modified"):
        load_weights(ckpt, tiny_model())

    (ckpt / "meta.json").write_bytes(original_meta)
    load_weights(ckpt, tiny_model())  # intact again
    (ckpt / "rng.json").unlink()
    with pytest.raises(CheckpointError, match=r"rng.json is missing"):
        load_weights(ckpt, tiny_model())
    with pytest.raises(CheckpointError, match="step_00000099 does not exist"):
        load_weights(tmp_path / "checkpoints" / "step_00000099", tiny_model())
    with pytest.raises(CheckpointError, match="neither a checkpoint folder nor a run folder"):
        load_weights(tmp_path / "nowhere", tiny_model())


def test_resume_skips_a_corrupted_latest_checkpoint(tmp_path):
    reference = tiny_model()
    fit(reference, AffineFrames(), mse_loss, cfg(steps=8), tmp_path / "ref")
    fit(
        tiny_model(),
        AffineFrames(),
        mse_loss,
        cfg(steps=8, checkpoint_every=2),
        tmp_path / "run",
        stop_after=6,
    )
    (tmp_path / "run/checkpoints/step_00000006/state.pt").write_bytes(b"garbage")
    resumed = tiny_model(seed=7)
    with pytest.warns(UserWarning, match="skipping invalid checkpoint.*step_00000006/state.pt"):
        fit(resumed, AffineFrames(), mse_loss, cfg(steps=8, checkpoint_every=2), tmp_path / "run")
    assert_same_weights(resumed, reference)  # redone from step 4, same result
    assert [e["step"] for e in list_checkpoints(tmp_path / "run")] == [4, 6, 8]


# --- NaN guard ----------------------------------------------------------------------


def test_nan_loss_stops_with_step_and_term(tmp_path):
    def loss(model, batch, step):
        terms = mse_loss(model, batch, step)
        if step == 3:
            terms["ncc"] = terms["mse"] * float("nan")
            terms["total"] = terms["total"] + terms["ncc"]
        return terms

    model = tiny_model()
    with pytest.raises(TrainingDivergedError) as info:
        fit(model, AffineFrames(), loss, cfg(steps=10, checkpoint_every=2), tmp_path)
    err = info.value
    assert err.step == 3 and set(err.bad_terms) == {"total", "ncc"}
    message = str(err)
    assert "at step 3" in message and "ncc=nan" in message and "total=nan" in message
    assert "step_00000002" in message and err.last_checkpoint.name == "step_00000002"
    # the broken state was neither applied nor saved
    assert [e["step"] for e in list_checkpoints(tmp_path)] == [2]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_non_finite_gradient_stops_and_names_parameters(tmp_path):
    def loss(model, batch, step):
        terms = mse_loss(model, batch, step)
        # finite value (0), infinite gradient: d sqrt(x)/dx at x = 0
        terms["total"] = terms["total"] + torch.sqrt(model.body[3].bias.sum() * 0)
        return terms

    with pytest.raises(
        TrainingDivergedError, match=r"at step 0: non-finite gradient norm .*body\.3\.bias.*none"
    ):
        fit(tiny_model(), AffineFrames(), loss, cfg(steps=3), tmp_path)


def test_bad_loss_fn_output_is_a_clear_error(tmp_path):
    with pytest.raises(TypeError, match="'total' key"):
        fit(tiny_model(), AffineFrames(), lambda m, b, s: m(b["pre"]).mean(), cfg(steps=1), tmp_path / "a")
    with pytest.raises(TypeError, match="requires grad"):
        fit(
            tiny_model(),
            AffineFrames(),
            lambda m, b, s: {"total": torch.tensor(1.0)},
            cfg(steps=1),
            tmp_path / "b",
        )


# --- hooks, validation, logs --------------------------------------------------------


def test_hooks_called_and_val_and_logs_written(tmp_path):
    hook = CountingHook()
    val_calls = []

    def val_fn(model, step):
        assert not model.training
        val_calls.append(step)
        return {"mse": 0.5 / step, "snr": torch.tensor(3.0)}

    history = fit(
        tiny_model(),
        AffineFrames(),
        mse_loss,
        cfg(steps=7, log_every=2, val_every=3),
        tmp_path,
        val_fn=val_fn,
        hooks=[hook],
    )
    assert hook.calls == {
        "on_fit_start": 1,
        "on_step_start": 7,
        "on_before_optimizer_step": 7,
        "on_step_end": 7,
        "on_fit_end": 1,
    }
    assert val_calls == [3, 6, 7]  # every 3 steps and at the end

    assert isinstance(history, History)
    assert [r["step"] for r in history] == [2, 3, 4, 6, 7]
    frame = history.frame()
    for col in (
        "step",
        "epoch",
        "lr",
        "loss_total",
        "loss_mse",
        "loss_reg",
        "grad_norm",
        "time_per_step_s",
        "hook_count",
        "val_mse",
        "val_snr",
        "samples",
    ):
        assert col in frame.columns, col
    assert frame.loc[frame.step == 6, "val_mse"].item() == pytest.approx(0.5 / 6)
    assert math.isnan(frame.loc[frame.step == 4, "val_mse"].item())
    assert history.last("hook_count") == 7 and history.best("val_mse")["step"] == 7
    steps, values = history.series("val_snr")
    assert steps == [3, 6, 7] and values == [3.0, 3.0, 3.0]

    csv = pd.read_csv(tmp_path / "metrics.csv")
    assert list(csv.columns) == list(frame.columns)
    pd.testing.assert_frame_equal(csv, frame, check_dtype=False)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [2, 3, 4, 6, 7]
    assert History.read(tmp_path).records == json.loads(json.dumps(history.records))
    fit_config = json.loads((tmp_path / "fit_config.json").read_text())
    assert fit_config["config"]["steps"] == 7 and fit_config["git_sha"]
    assert fit_config["torch_device"] == "cpu" and fit_config["device"].startswith("cpu")  # as in result files


def test_hook_mismatch_and_non_plain_state_are_clear_errors(tmp_path):
    fit(tiny_model(), AffineFrames(), mse_loss, cfg(steps=2), tmp_path / "a", hooks=[CountingHook()])
    with pytest.raises(CheckpointError, match="holds states of hooks"):
        fit(tiny_model(), AffineFrames(), mse_loss, cfg(steps=4), tmp_path / "a")

    class NumpyState:
        def state_dict(self):
            return {"scores": np.zeros(3)}

    with pytest.raises(TypeError, match=r"NumpyState.*\['scores'\] is a numpy.ndarray"):
        fit(tiny_model(), AffineFrames(), mse_loss, cfg(steps=1), tmp_path / "b", hooks=[NumpyState()])
    with pytest.raises(TypeError, match="is not a hook"):
        fit(tiny_model(), AffineFrames(), mse_loss, cfg(steps=1), tmp_path / "c", hooks=[object()])


class AdapterLoss(nn.Module):
    """A distillation-style loss: a frozen teacher plus a trainable 1x1 adapter."""

    def __init__(self) -> None:
        super().__init__()
        self.teacher = tiny_model(seed=11, dropout=0.0).eval().requires_grad_(False)
        self.adapter = nn.Conv2d(1, 1, 1)

    def forward(self, model, batch, step):
        student = model(batch["pre"])
        with torch.no_grad():
            target = self.teacher(batch["pre"])
        kd = ((self.adapter(student) - target) ** 2).mean()
        mse = ((student - batch["post"]) ** 2).mean()
        return {"total": mse + kd, "mse": mse, "kd": kd}


def test_trainable_loss_module_is_optimised_and_checkpointed(tmp_path):
    loss = AdapterLoss()
    adapter0 = loss.adapter.weight.detach().clone()
    teacher0 = {k: v.clone() for k, v in loss.teacher.state_dict().items()}
    fit(tiny_model(), AffineFrames(), loss, cfg(steps=3), tmp_path)
    assert not torch.equal(loss.adapter.weight, adapter0)
    assert all(torch.equal(v, teacher0[k]) for k, v in loss.teacher.state_dict().items())
    assert set(trainable_state(loss)) == {"adapter.weight", "adapter.bias"}  # teacher not stored
    state = torch.load(latest_checkpoint(tmp_path) / "state.pt", weights_only=True)
    assert torch.equal(state["loss_module"]["adapter.weight"], loss.adapter.weight)


# --- AMP ----------------------------------------------------------------------------


def test_bf16_autocast_on_cpu(tmp_path):
    if not torch.amp.autocast_mode.is_autocast_available("cpu"):
        pytest.skip("this torch build has no CPU autocast")
    dtypes = set()

    def loss(model, batch, step):
        out = model(batch["pre"])
        dtypes.add(out.dtype)
        mse = ((out.float() - batch["post"]) ** 2).mean()
        return {"total": mse}

    history = fit(
        tiny_model(dropout=0.0), AffineFrames(), loss, cfg(steps=30, log_every=10, amp="bf16"), tmp_path
    )
    assert dtypes == {torch.bfloat16}
    assert history.records[-1]["loss_total"] < 0.5 * history.records[0]["loss_total"]


def test_fp16_grad_scaler_state_is_checkpointed_and_resumed(tmp_path):
    reference = tiny_model(dropout=0.0)
    fit(reference, AffineFrames(), mse_loss, cfg(steps=6, amp="fp16"), tmp_path / "ref")
    split = tiny_model(dropout=0.0)
    h = fit(split, AffineFrames(), mse_loss, cfg(steps=6, amp="fp16"), tmp_path / "run", stop_after=3)
    assert "loss_scale" in h.frame().columns
    state = torch.load(latest_checkpoint(tmp_path / "run") / "state.pt", weights_only=True)
    assert state["scaler"]["scale"] > 0
    resumed = tiny_model(seed=8, dropout=0.0)
    fit(resumed, AffineFrames(), mse_loss, cfg(steps=6, amp="fp16"), tmp_path / "run")
    assert_same_weights(resumed, reference)


# --- CUDA (runs whenever a GPU machine is available) --------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("amp", ["auto", "fp16"])
def test_cuda_amp_and_exact_resume(tmp_path, amp):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    config = cfg(steps=8, amp=amp, deterministic=True, num_workers=2)
    reference = tiny_model()
    ref_hist = fit(reference, AffineFrames(), mse_loss, config, tmp_path / "ref")
    assert next(reference.parameters()).is_cuda
    fit(tiny_model(), AffineFrames(), mse_loss, config, tmp_path / "run", stop_after=3)
    resumed = tiny_model(seed=9)
    history = fit(resumed, AffineFrames(), mse_loss, config, tmp_path / "run")
    assert_same_weights(resumed, reference)
    assert [r["loss_total"] for r in history] == [r["loss_total"] for r in ref_hist]
    fit_config = json.loads((tmp_path / "run" / "fit_config.json").read_text())
    expected = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if amp == "auto" else "float16"
    assert fit_config["amp_dtype"] == expected and fit_config["grad_scaler"] == (expected == "float16")
    # evaluation loads onto any device
    cpu_model = tiny_model(seed=4)
    load_weights(tmp_path / "run", cpu_model)
    assert_same_weights(cpu_model, reference.cpu())
