#!/usr/bin/env bash
# Everything that needs a GPU, in one go and in under 8 minutes: the tests that matter there, then
# the throughput table of all five datasets in float32 and bfloat16, both conv impls, with the
# PyTorch peer on the same GPU.
#
#   benchmarks/gpu_check.sh OUTDIR          # writes OUTDIR/{summary.txt,stages.log,*.json}
#   QUICK=1 benchmarks/gpu_check.sh OUTDIR  # a CPU smoke run of this script (tiny settings)
#   PYTHON=/path/to/python3 benchmarks/gpu_check.sh OUTDIR   # another interpreter
#
# It installs nothing (the GPU machine cannot reach a package registry): the repository goes on
# PYTHONPATH, and packages the machine lacks travel as wheels (benchmarks/README.md, "GPU").
# Every stage runs under its own `timeout`; a failing stage is recorded in summary.txt and the
# script goes on. The exit status is 0 only if every stage passed.
#
# Everything is written into OUTDIR as it happens, never copied there at the end: a caller that
# is itself killed at a time limit still gets every finished stage. The stage limits add up to
# 490 s (+15 s grace each), so give the whole script at least 9 minutes.

set -u

OUT=${1:?usage: benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# JAX would otherwise take 75% of the GPU before the PyTorch peer allocates anything.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
QUICK=${QUICK:-0}
# Images with PyTorch often have `python3` in a venv and no `python` at all: never rely on the
# name `python`, and never write a wrapper over it (a wrapper written through a symlink to the
# interpreter replaces the interpreter).
export PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
LOG="$OUT/stages.log"
failed=0
started=$(date +%s)

# stage NAME SECONDS COMMAND...: runs COMMAND with a time limit, appending its output to stages.log.
stage() {
  local name=$1 limit=$2
  shift 2
  local t0 rc
  t0=$(date +%s)
  echo "== $name (limit ${limit}s): $(echo "$*" | tr -s ' \n' ' ' | cut -c1-200)" |
    tee -a "$OUT/summary.txt"
  echo "===== $name =====" >>"$LOG"
  timeout --kill-after=15 "$limit" "$@" > >(tee "$OUT/.$name.tmp" >>"$LOG") 2>&1
  rc=$?
  [ "$rc" -eq 124 ] && echo "   $name: TIMED OUT after ${limit}s" | tee -a "$OUT/summary.txt"
  [ "$rc" -ne 0 ] && failed=1
  echo "   $name: exit $rc in $(($(date +%s) - t0))s" | tee -a "$OUT/summary.txt"
  sleep 0.2  # lets tee flush
  tail -n 3 "$OUT/.$name.tmp" | sed 's/^/   | /' >>"$OUT/summary.txt"
  rm -f "$OUT/.$name.tmp"
}

stage environment 60 bash -c '
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi"
  "$PYTHON" -c "
import jax, jaxlib, flax, optax
print(\"jax\", jax.__version__, \"jaxlib\", jaxlib.__version__, \"flax\", flax.__version__,
      \"optax\", optax.__version__, \"backend\", jax.default_backend(), jax.devices())
try:
  import torch
  print(\"torch\", torch.__version__, \"cuda\", torch.cuda.is_available(),
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"\")
except ImportError:
  print(\"torch not installed\")
"'

if [ "$QUICK" = 1 ]; then
  stage pytest 300 "$PYTHON" -m pytest -x -q tests/test_models.py -k "conv_impls or winograd or bfloat16"
  common=(--batch_sizes=4 --repeats=1 --warmup=0 --peak_size=256 --split_windows=16
          "--config.model.widths=(16,32,48)")
  stage throughput_float32 300 "$PYTHON" benchmarks/throughput.py --config=configs/wisdm.py \
    --dtypes=float32 --conv_impls=xla,winograd "${common[@]}" --json="$OUT/throughput_float32.json"
else
  # test_models: exact parameter counts, FLOPs, and im2col and Winograd == lax.conv on this backend;
  # test_train: the pmap and shard_map steps, BatchNorm over the global batch, resume.
  stage pytest 120 "$PYTHON" -m pytest -x -q tests/test_models.py tests/test_train.py \
    -k "not winograd_matrices"  # pure numpy: nothing device-specific
  # Batch 256: on a GPU, 64 windows leave most of it idle. One stage per dtype, so a timeout in
  # one still leaves the others' rows (throughput.py also writes its JSON after each setting).
  common=(--configs=wisdm,opportunity,pamap2,unimib_shar,weakly --batch_sizes=256
          --conv_impls=xla,winograd --repeats=5 --warmup=1 --steps=10)
  stage throughput_float32 130 "$PYTHON" benchmarks/throughput.py --dtypes=float32 "${common[@]}" \
    --json="$OUT/throughput_float32.json"
  # In bfloat16 the 'winograd' rows compute as im2col (ops/winograd.py, winograd_applies).
  stage throughput_bfloat16 100 "$PYTHON" benchmarks/throughput.py --dtypes=bfloat16 "${common[@]}" \
    --json="$OUT/throughput_bfloat16.json"
  # torch.compile takes tens of seconds per model: only the two datasets of the CPU target.
  stage throughput_torch_compile 80 "$PYTHON" benchmarks/throughput.py --configs=wisdm,opportunity \
    --dtypes=float32 --batch_sizes=256 --conv_impls=xla --repeats=5 --steps=10 --torch_compile \
    --torch_compile_timeout=30 --json="$OUT/throughput_torch_compile.json"
fi

echo "total $(($(date +%s) - started))s; $([ $failed -eq 0 ] && echo 'all stages passed' ||
  echo 'SOME STAGES FAILED')" | tee -a "$OUT/summary.txt"
exit $failed
