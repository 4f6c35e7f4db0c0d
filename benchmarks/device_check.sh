#!/usr/bin/env bash
# The prepared device call: a correctness smoke test on one config, then the benchmark plan's
# next missing rows, all within DEVICE_CHECK_LIMIT_S (default 480 s), so that one 15-minute
# lease holds the machine's start, this call and a short rerun.
#
#   bash benchmarks/device_check.sh OUTDIR            # what every lease runs
#   bash benchmarks/device_check.sh recipe OUTDIR     # the WISDM-2019 recipe runs instead
#   QUICK=1 bash benchmarks/device_check.sh OUTDIR    # tiny sizes: benchmarks/device_rehearsal.sh
#
# The ledgers committed under benchmarks/results/ are copied into OUTDIR/results first, and the
# plan runs against them there (the device tool brings back only OUTDIR): rows measured on an
# earlier lease with the same versions and step code are skipped, and each new row is appended
# as it is measured, so a call cut short keeps what it measured. Commit OUTDIR/results/*.jsonl
# back to benchmarks/results/. Exit status 0 only if every stage passed and no priority-1 row
# of this device is missing.
#
# It installs nothing from a network: the repository goes on PYTHONPATH, and the wheels the
# image lacks (benchmarks/device_wheels.sh, in .whl/) are installed with --no-index --no-deps.

set -u
if [ "${1:-}" = recipe ]; then WHAT=recipe; shift; else WHAT=plan; fi
OUT=${1:?usage: benchmarks/device_check.sh [recipe] OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
LIMIT=${DEVICE_CHECK_LIMIT_S:-480}
QUICK=${QUICK:-0}
SUMMARY="$OUT/$WHAT.summary.txt"
LOG="$OUT/$WHAT.log"
: >"$SUMMARY"
: >"$LOG"
failed=0

# Images with PyTorch often have `python3` in a venv and no `python`: only ever call python3.
PY=$(command -v python3) || { echo "device_check: no python3 on PATH" | tee -a "$SUMMARY"; exit 1; }
SITE=${DEVICE_SITE:-/tmp/danhar_site}
WHEELS=${DEVICE_WHEELS:-.whl}  # DEVICE_WHEELS=none: the packages are installed already
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl >>"$LOG" 2>&1 || {
    echo "wheels: installing $WHEELS/*.whl FAILED: $(tail -n 1 "$LOG")" | tee -a "$SUMMARY"
    exit 1
  }
  echo "wheels: $(ls "$WHEELS"/*.whl | wc -l) installed from $WHEELS into $SITE" | tee -a "$SUMMARY"
  export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
# JAX would otherwise take 75% of the GPU before the PyTorch peer allocates anything.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# One persistent compilation cache for every process of the call (and a rerun on the same machine).
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/danhar_xla_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0

left() { echo $((LIMIT - ($(date +%s) - START))); }

# stage NAME SECONDS COMMAND...: COMMAND under a limit (never past the call's own), its output
# appended to the log, its result and last lines to the summary.
stage() {
  local name=$1 limit=$2 t0 rc
  shift 2
  [ "$limit" -gt "$(($(left) - 3))" ] && limit=$(($(left) - 3))
  if [ "$limit" -lt 5 ]; then
    echo "== $name: NOT RUN, the call's ${LIMIT}s are spent" | tee -a "$SUMMARY"
    failed=1
    return 125
  fi
  t0=$(date +%s)
  echo "== $name (limit ${limit}s)" | tee -a "$SUMMARY"
  echo "===== $name: $* =====" >>"$LOG"
  timeout --kill-after=5 "$limit" "$@" > >(tee "$OUT/.stage" >>"$LOG") 2>&1
  rc=$?
  sleep 0.3  # lets tee flush
  [ "$rc" -eq 124 ] && echo "   $name: TIMED OUT after ${limit}s" | tee -a "$SUMMARY"
  [ "$rc" -ne 0 ] && failed=1
  echo "   $name: exit $rc in $(($(date +%s) - t0))s" | tee -a "$SUMMARY"
  grep -v '^\s*$' "$OUT/.stage" | tail -n 12 | sed 's/^/   | /' >>"$SUMMARY"
  rm -f "$OUT/.stage"
  return "$rc"
}

stage imports 60 "$PY" -m benchmarks.device_imports || {
  echo "device_check: stopped, a package is missing (above)" | tee -a "$SUMMARY"
  exit 1
}

stage environment 30 "$PY" - <<'EOF'
import os, subprocess
import jax, jaxlib, flax, optax, numpy
print("python3", os.sys.version.split()[0], "| jax", jax.__version__, "jaxlib", jaxlib.__version__,
      "flax", flax.__version__, "optax", optax.__version__, "numpy", numpy.__version__)
print("backend", jax.default_backend(), "| devices", jax.devices(),
      "| default matmul precision", jax.config.jax_default_matmul_precision)
try:
  print(subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm",
                        "--format=csv,noheader"], capture_output=True, text=True,
                       timeout=10).stdout.strip())
except (OSError, subprocess.TimeoutExpired) as e:
  print("nvidia-smi:", e)
try:
  import torch
  print("torch", torch.__version__, "| cuda", torch.cuda.is_available(),
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else "",
        "| allow_tf32 matmul", torch.backends.cuda.matmul.allow_tf32,
        "cudnn", torch.backends.cudnn.allow_tf32)
except ImportError as e:
  print("torch:", e)
EOF

if [ "$WHAT" = recipe ]; then
  # The WISDM-2019 comparison of experiments/recipe_comparison.py at full size, as many epochs
  # as the call's time allows, from the prepared dataset carried in runs/recipe_tfds
  # (experiments/device_recipe_stage.sh copies it there).
  data=${RECIPE_DATA:-runs/recipe_tfds}
  if [ ! -f "$data/wisdm2019/1.0.0/dataset_info.json" ]; then
    echo "recipe: no prepared wisdm2019 in $data: carry it (experiments/device_recipe_stage.sh)" |
      tee -a "$SUMMARY"
    exit 1
  fi
  [ "$QUICK" = 1 ] && sizes=(--epochs=1 --steps_per_epoch=2 --seeds=0 --cells=danhar) ||
    sizes=(--seeds=0,1,2 --cells=cnn,resnet,channel,temporal,temporal_channel,danhar,danhar_no_ln
           --budget_minutes=$(( ($(left) - 40) / 60 )) --jobs=4)
  stage recipe $(($(left) - 5)) "$PY" -m experiments.recipe_comparison "${sizes[@]}" \
    --data_dir="$data" --manual_dir="" --runs_dir=/tmp/danhar_recipe --out_dir="$OUT" \
    --name=recipe_wisdm2019_device
else
  if [ "$QUICK" = 1 ]; then
    correct=(--configs=wisdm --batch=8 --widths=16,32,48)
    sizes=(--widths=16,32,48 --split_windows=64 --batch_cap=4 --repeats=3 --min_repeat_s=0.02
           --trainer_epoch_s=0.2 --trainer_epochs=2 --configs=wisdm,opportunity)
  else
    correct=(--configs=wisdm)
    sizes=()
  fi
  # 1. The JAX model against the PyTorch peer on this device with the same weights, and bf16
  # against f32: the check no other machine can make.
  stage correctness 90 "$PY" -m benchmarks.device_correctness --out="$OUT" "${correct[@]}"
  # 2. The plan's next missing rows, priority 1 first, appended to the ledgers as measured.
  mkdir -p "$OUT/results"
  cp benchmarks/results/*.jsonl "$OUT/results/" 2>/dev/null
  budget=${DEVICE_CHECK_PLAN_S:-$(($(left) - 40))}  # a test sets it to cut priority 1
  stage plan $((budget + 30)) "$PY" -m benchmarks.throughput --time_budget_s="$budget" \
    --require_priority=1 --results="$OUT/results" --log_dir="$OUT/logs" "${sizes[@]}"
  # 3. The tables and plots of every ledger, for a look before they are committed.
  stage report 20 "$PY" -m benchmarks.report --results="$OUT/results" --out="$OUT/results"
fi

rm -f "$OUT/.stage"
echo "total $(($(date +%s) - START))s of ${LIMIT}s; $([ $failed -eq 0 ] && echo 'all stages passed' ||
  echo 'SOME STAGES FAILED')" | tee -a "$SUMMARY"
exit $failed
