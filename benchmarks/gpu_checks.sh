#!/usr/bin/env bash
# Every GPU check of the project in one prepared run, for a GPU machine lent for a few minutes:
#
#   OUT=<results folder> CDPKD_GIT_SHA=<commit of this tree> bash benchmarks/gpu_checks.sh
#
# Run from the repository root with the machine's own Python (torch + triton with CUDA). Packages
# that machine lacks travel as wheels in .whl/ (installed into /tmp/site when present; see the
# README, "GPU checks"). Each step is time-boxed, so a failing or hanging step costs only its own
# box; logs and JSON files go to a work folder that is packed into $OUT/gpu_checks.tar.gz after
# every step (a run cut short keeps the finished steps; the device tool returns few files, so one
# archive), with $OUT/steps.txt (exit code and seconds per step) beside it. Order: what matters most first.
#   1. environment (nvidia-smi, versions) and a quick Triton-vs-reference probe: if the compiled
#      kernels fail, later steps run with CDPKD_OPS_BACKEND=reference and say so;
#   2. GPU tests: the Triton kernels against the PyTorch reference at real shapes, gpu-marked tests;
#   3. where the time goes: torch.profiler tables of one frame and one training step for the cpu
#      profile's teacher and student (benchmarks/torch_profile.py);
#   4. efficiency (benchmarks/efficiency.py, GPU columns) for the cpu profile's architectures, as the
#      notebooks run them (16 tiles per forward), with all tiles in one forward, and whole-frame;
#   5. training throughput of the paper profile's teacher stages (benchmarks/training.py);
#   6. efficiency for the paper profile's architectures, then its torch.profiler tables;
#   7. correlation / warp op benchmark (benchmarks/ops.py), fp32, then bf16 at the training shapes.
set -u
: "${OUT:?set OUT to the results folder}"
WORK=$(mktemp -d)
mkdir -p "$OUT"
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}" CDPKD_PROGRESS=0 PYTHONUNBUFFERED=1
PY=${PY:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

step() {  # step <name> <seconds> <command...>: run, time-box, log to <work>/<name>.log, record the exit code
    local name=$1 limit=$2
    shift 2
    if [[ -n "${STEPS:-}" && " $STEPS " != *" $name "* ]]; then return; fi  # STEPS="a b": only those
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - start)) limit=$limit" | tee -a "$WORK/steps.txt"
    pack
}

pack() {  # the work folder -> $OUT/gpu_checks.tar.gz (replaced whole, never half-written)
    cp "$WORK/steps.txt" "$OUT/steps.txt" 2>/dev/null
    tar -czf "$OUT/.pack.tmp" -C "$WORK" . && mv "$OUT/.pack.tmp" "$OUT/gpu_checks.tar.gz"
}

{
    date -u +%FT%TZ
    echo "git_sha=${CDPKD_GIT_SHA:-unknown}"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0))"
    nproc
} >"$WORK/env.txt" 2>&1

probe='
import torch, cdpkd.ops as ops
g = torch.Generator(device="cuda").manual_seed(0)
f1, f2 = (torch.randn(2, 16, 64, 48, device="cuda", generator=g) for _ in range(2))
# tolerances of fp32 work done in another order (the kernel tests: tests/test_ops_triton.py)
tol = dict(atol=1e-4, rtol=1e-3)
torch.testing.assert_close(ops.correlation(f1, f2, 4, 2, backend="triton"), ops.correlation(f1, f2, 4, 2, backend="reference"), **tol)
d = torch.randn(2, 2, 64, 48, device="cuda", generator=g)
torch.testing.assert_close(ops.warp(f1, d, backend="triton"), ops.warp(f1, d, backend="reference"), **tol)
print("triton kernels agree with the reference")
'
step triton_probe 120 $PY -c "$probe"
if [[ -f "$WORK/triton_probe.log" ]] && ! grep -q "agree" "$WORK/triton_probe.log"; then  # skipped: no verdict
    export CDPKD_OPS_BACKEND=reference
    echo "triton probe failed: later steps use CDPKD_OPS_BACKEND=reference" | tee -a "$WORK/steps.txt"
fi

pytest_args=(-q -o addopts= -p no:cacheprovider -W ignore::UserWarning)
step gpu_tests_ops 150 $PY -m pytest "${pytest_args[@]}" --junitxml="$WORK/gpu_tests_ops.xml" \
    tests/test_ops_triton.py tests/test_ops_correlation.py tests/test_ops_warp.py -k "not interpreter_suite"
step gpu_tests_marked 120 $PY -m pytest "${pytest_args[@]}" --junitxml="$WORK/gpu_tests_marked.xml" \
    -m gpu tests/test_efficiency.py tests/test_train.py
step torch_profile_cpu_profile 150 $PY benchmarks/torch_profile.py --profile cpu --device cuda --out "$WORK"
step efficiency_cpu_profile 150 $PY benchmarks/efficiency.py --profile cpu --gpu on --cpu-timing off \
    --repeats 10 --out "$WORK"
# the same with every tile in one forward, and in one forward on the whole frame: launches or arithmetic?
step efficiency_cpu_profile_batch128 150 $PY benchmarks/efficiency.py --profile cpu --gpu on --cpu-timing off \
    --repeats 10 --tiles-per-batch 128 --out "$WORK"
step efficiency_cpu_profile_whole_frame 120 $PY benchmarks/efficiency.py --profile cpu --gpu on --cpu-timing off \
    --repeats 10 --whole-frame --out "$WORK"
step training_paper 200 $PY benchmarks/training.py --profile paper --steps 40 --pairs 32 --device cuda --out "$WORK"
step efficiency_paper_profile 150 $PY benchmarks/efficiency.py --profile paper --gpu on --cpu-timing off \
    --repeats 10 --out "$WORK"
step torch_profile_paper_profile 150 $PY benchmarks/torch_profile.py --profile paper --device cuda --out "$WORK"
step ops 120 $PY benchmarks/ops.py --device cuda --out "$WORK/ops_cuda.json"
# training runs under bf16 autocast, so the ops see bf16 features there
step ops_bf16 120 $PY benchmarks/ops.py --device cuda --dtype bfloat16 --quick --out "$WORK/ops_cuda_bf16.json"
echo "done $(date -u +%FT%TZ)" >>"$WORK/steps.txt"
pack
