#!/usr/bin/env bash
# The two prepared device calls: each ends within DEVICE_CHECK_LIMIT_S (default 280 s), so that
# both, the machine's start and one rerun fit in a 15-minute lease.
#
#   bash benchmarks/device_check.sh correctness OUTDIR
#   bash benchmarks/device_check.sh throughput OUTDIR
#   bash benchmarks/device_check.sh recipe OUTDIR      # a third call, when device time allows
#   QUICK=1 bash benchmarks/device_check.sh ...   # tiny sizes: benchmarks/device_rehearsal.sh
#
# correctness: (1) every import the project needs, in seconds; it stops here, naming everything
# missing, if any fails; (2) versions, device, driver, precision; (3) the JAX model against the
# PyTorch peer on the device with the same weights, and bf16 against f32 (device_correctness.py);
# (4) the GPU-relevant tests at 'highest' precision (several-host-device tests skip, saying why).
# throughput: benchmarks/throughput.py over every dataset config × {float32 TF32 off, float32
# TF32 on, bfloat16} × global batch {64, 256, 1024, 4096}: JAX (pmap, and jit of shard_map), the
# PyTorch eager peer and torch.compile, in priority order (the batch-256 targets first) until
# the time is spent; what did not fit is a row saying so, an OOM a row saying OOM.
# recipe: the WISDM-2019 comparison of benchmarks/recipe_comparison.py at full size (3 seeds ×
# the Table VII variants and DanHAR without the logit LayerNorm), as many epochs as the call's
# time allows, from the prepared dataset carried in runs/recipe_tfds (33 MiB; no raw data), which
# benchmarks/device_recipe_stage.sh copies there, making room for it under the tool's 64 MiB.
#
# It installs nothing from a network: the repository goes on PYTHONPATH, and the wheels the
# image lacks (benchmarks/device_wheels.sh, in .whl/) are installed with --no-index --no-deps.
# Every stage writes into OUTDIR as it runs (at most 6 files), so a call cut short keeps what
# finished. Exit status 0 only if every stage passed.

set -u
WHAT=${1:?usage: benchmarks/device_check.sh correctness|throughput|recipe OUTDIR}
OUT=${2:?usage: benchmarks/device_check.sh correctness|throughput|recipe OUTDIR}
case "$WHAT" in correctness | throughput | recipe) ;; *)
  echo "device_check: unknown command '$WHAT'; use correctness, throughput or recipe" >&2
  exit 2 ;;
esac
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$(date +%s)
LIMIT=${DEVICE_CHECK_LIMIT_S:-280}
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
  grep -v '^\s*$' "$OUT/.stage" | tail -n 4 | sed 's/^/   | /' >>"$SUMMARY"
  rm -f "$OUT/.stage"
  return "$rc"
}

stage imports 60 "$PY" benchmarks/device_imports.py || {
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

if [ "$WHAT" = correctness ]; then
  if [ "$QUICK" = 1 ]; then
    tests=(tests/test_models.py tests/test_devices.py
           -k "(conv_impls_equal_lax_conv and wisdm) or bfloat16 or nearest_multiples")
    correct=(--configs=wisdm,opportunity --batch=8 --widths=16,32,48)
  else
    # The model's numerics on this backend, the trainer's loop, and the peer computing the same
    # function; the Winograd matrices are pure numpy and prove nothing about a device.
    tests=(tests/test_models.py tests/test_train.py tests/test_devices.py
           "tests/test_benchmarks.py::test_torch_peer_computes_the_jax_model"
           -k "not winograd_matrices")
    correct=()
  fi
  # The peer comparison first: it is the check no other machine can make. The tests get the rest.
  stage correctness 120 "$PY" benchmarks/device_correctness.py --out="$OUT" "${correct[@]}"
  JAX_DEFAULT_MATMUL_PRECISION=highest stage pytest 170 "$PY" -m pytest -q -rs \
    -p no:cacheprovider --timeout=120 --durations=5 "${tests[@]}"
elif [ "$WHAT" = recipe ]; then
  data=${RECIPE_DATA:-runs/recipe_tfds}
  if [ ! -f "$data/wisdm2019/1.0.0/dataset_info.json" ]; then
    echo "recipe: no prepared wisdm2019 in $data: carry it (see the top of this script)" |
      tee -a "$SUMMARY"
    exit 1
  fi
  [ "$QUICK" = 1 ] && sizes=(--epochs=1 --steps_per_epoch=2 --seeds=0 --cells=danhar) ||
    sizes=(--seeds=0,1,2 --cells=cnn,resnet,channel,temporal,temporal_channel,danhar,danhar_no_ln
           --budget_minutes=$(( ($(left) - 40) / 60 )) --jobs=4)
  # Runs live outside OUTDIR (hundreds of files); the report, its JSON and curves come back.
  stage recipe $(($(left) - 5)) "$PY" benchmarks/recipe_comparison.py "${sizes[@]}" \
    --data_dir="$data" --manual_dir="" --runs_dir=/tmp/danhar_recipe --out_dir="$OUT" \
    --name=recipe_wisdm2019_device
else
  json="$OUT/throughput.json" md="$OUT/throughput.md"
  rm -f "$json" "$md"
  all=wisdm,wisdm2019,opportunity,pamap2,unimib_shar,weakly
  numerics=float32:high,bfloat16
  # Each repeat runs enough steps to last --min_repeat_s (0.1 s), sized from the warmup.
  common=(--repeats=5 --warmup=1 --json="$json" --markdown="$md" --append)
  if [ "$QUICK" = 1 ]; then
    all=wisdm,opportunity numerics=bfloat16
    common=(--repeats=1 --warmup=0 --steps=1 --peak_size=256 --split_windows=16
            --widths=16,32,48 --json="$json" --markdown="$md" --append)
    b256=4 b64=2 big=8
  else
    b256=256 b64=64 big=1024,4096
  fi
  # throughput.py stops starting contenders once its budget is spent (the rest become rows that
  # say so); `stage` kills it a little later, keeping every row written (each as it is measured).
  # torch.compile's first calls draw on --torch_compile_budget_s, on top of SECONDS.
  sweep() {  # sweep NAME SECONDS ARGS...
    local name=$1 secs=$2 extra=0 a
    shift 2
    for a in "$@"; do case $a in --torch_compile_budget_s=*) extra=${a#*=} ;; esac; done
    [ "$((secs + extra))" -gt "$(($(left) - 8))" ] && secs=$(($(left) - 8 - extra))
    [ "$secs" -lt 10 ] && secs=10
    local before=$failed
    stage "$name" $((secs + extra + 25)) "$PY" benchmarks/throughput.py --time_budget_s="$secs" \
      "$@" "${common[@]}"
    # Cut at its time limit, or left out when the call's time is spent, a sweep keeps what
    # finished before it: that is the plan, not a failure (the summary says which).
    case $? in 124 | 125) failed=$before ;; esac
    return 0
  }
  # Numerics-major, so a short call still covers every config in the numerics that matter most.
  # 1. The targets: batch 256 against the eager peer, TF32 on both sides, then bf16.
  sweep b256_tf32 70 --configs=$all --numerics=float32:high --batch_sizes=$b256
  # The loop users run (`python main.py`): the trainer contender alone (the sweep above has the
  # bare rows), timing its own bare step beside it for loop_efficiency, and its host µs per step.
  sweep trainer 50 --configs=wisdm,opportunity --numerics=float32:high --batch_sizes=$b256 \
    --trainer --nobare --notorch
  sweep b256_bf16 60 --configs=$all --numerics=bfloat16 --batch_sizes=$b256
  # 2. torch.compile (each compile capped at 35 s, all of them at 30 s beside the 25 s for the
  # rest), then JAX's other mapping, jit of shard_map, beside the pmap rows above.
  sweep compiled 25 --configs=wisdm,opportunity --numerics=float32:high --batch_sizes=$b256 \
    --torch_compile --torch_compile_timeout=35 --torch_compile_budget_s=30
  sweep jit 25 --configs=$all --numerics=float32:high --batch_sizes=$b256 --parallelism=shard_map \
    --notorch
  # 3. Large batches, where MFU is won or lost (PAMAP2 first).
  sweep large_bf16 35 --configs=pamap2,$all --numerics=bfloat16 --batch_sizes=$big --notorch
  # 4. Whatever time is left: full float32, and batch 64.
  sweep f32_highest 20 --configs=$all --numerics=float32:highest --batch_sizes=$b256
  sweep b64 15 --configs=$all --numerics=float32:highest,$numerics --batch_sizes=$b64 --notorch
fi

rm -f "$OUT/.stage"
echo "total $(($(date +%s) - START))s of ${LIMIT}s; $([ $failed -eq 0 ] && echo 'all stages passed' ||
  echo 'SOME STAGES FAILED')" | tee -a "$SUMMARY"
exit $failed
