"""cdpkd.train.fit under torchrun: 2 CPU processes (gloo), DistributedSampler shards, rank-0 writes.

One torchrun launch runs three fits in the same process group:
``ref`` (uninterrupted, with dropout), ``run`` (the same, stopped after 2 steps
and resumed: per-rank RNG states must continue exactly) and ``nodrop``
(compared with a single-process run at twice the batch: same data, same
averaged gradients, so the same weights up to float rounding).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    from torch import nn
    from torch.utils.data import Dataset
    import torch.distributed as dist
    from cdpkd.train import FitConfig, fit, cleanup, get_rank, get_world_size, is_main_process

    torch.set_num_threads(1)

    class Frames(Dataset):
        def __init__(self):
            self.x = torch.randn(16, 1, 32, 16, generator=torch.Generator().manual_seed(5))
        def __len__(self):
            return len(self.x)
        def __getitem__(self, i):
            pre = self.x[i] + 0.05 * torch.randn(1, 32, 16)
            return {"pre": pre, "post": 2 * pre + 1}

    def net(dropout):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Dropout(dropout), nn.Conv2d(8, 1, 3, padding=1))

    def loss_fn(model, batch, step):
        mse = ((model(batch["pre"]) - batch["post"]) ** 2).mean()
        return {"total": mse, "mse": mse}

    out = sys.argv[1]
    config = FitConfig(steps=4, batch_size=2, lr=1e-2, log_every=1, amp="off", seed=3)
    results = {}
    for name, dropout, stop in [("ref", 0.2, None), ("run", 0.2, 2), ("run", 0.2, None), ("nodrop", 0.0, None)]:
        model = net(dropout)
        history = fit(model, Frames(), loss_fn, config, os.path.join(out, name), stop_after=stop)
        results[name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert get_world_size() == 2 and dist.get_backend() == "gloo"
    # only rank 0 writes run files
    assert os.path.exists(os.path.join(out, "ref", "metrics.csv"))
    torch.save({"weights": results, "main": is_main_process(), "records": len(history.records)},
               os.path.join(out, f"rank{get_rank()}.pt"))
    cleanup()
    """
)



def test_ddp_two_cpu_processes(tmp_path):
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with the gloo backend is not available in this torch build")
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CDPKD_PROGRESS": "0"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]

    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["main"] for r in ranks] == [True, False]
    for name in ("ref", "run", "nodrop"):
        for key, value in ranks[0]["weights"][name].items():
            assert torch.equal(value, ranks[1]["weights"][name][key]), f"{name}: ranks disagree on {key}"
    for key, value in ranks[0]["weights"]["ref"].items():
        assert torch.equal(value, ranks[0]["weights"]["run"][key]), f"DDP resume differs on {key}"
    assert not (out / "ref" / "rank1").exists() and sorted(p.name for p in (out / "run").iterdir()) == [
        "checkpoints",
        "fit_config.json",
        "manifest.json",
        "metrics.csv",
        "metrics.jsonl",
    ]

    # the 2 x 2 shards of each step are the batch of 4 a single process would use
    from torch import nn
    from torch.utils.data import Dataset

    from cdpkd.train import FitConfig, fit

    namespace: dict = {"torch": torch, "nn": nn, "Dataset": Dataset}
    exec(SCRIPT.split("out = sys.argv[1]")[0].split("torch.set_num_threads(1)")[1], namespace)
    model = namespace["net"](0.0)
    config = FitConfig(steps=4, batch_size=4, lr=1e-2, log_every=1, amp="off", seed=3)
    fit(model, namespace["Frames"](), namespace["loss_fn"], config, tmp_path / "single")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, ranks[0]["weights"]["nodrop"][key], rtol=1e-4, atol=1e-5)
