#!/usr/bin/env bash
# The full-size recipe comparison on an accelerator: 3 seeds × cnn, resnet, channel, temporal,
# temporal_channel, danhar (the Table VII rows and their baselines, each with its authors'
# objective) plus danhar_no_ln, 100 epochs each, on WISDM-2019 subject-wise (test 1608-1611).
# Prepared, not yet run.
#
# It needs no raw data on the machine: the built TFDS dataset (the `wisdm2019/` folder of a
# data_dir where `python benchmarks/recipe_comparison.py --plan_only` or any wisdm2019 run built
# it; 33 MiB, 4,893 train + 2,417 test windows) is carried in an ignored folder of the worktree:
#
#   mkdir -p runs/recipe_tfds && cp -r <data_dir>/wisdm2019 runs/recipe_tfds/
#   # device tool: carry=["runs/recipe_tfds"], command="bash benchmarks/recipe_comparison_gpu.sh"
#
# Results (.md, .json, curves PNG) and every run's eval_metrics.jsonl go to $OUT (or ./runs/).
# Size: 21 runs × 100 epochs × 23 steps of batch 210 = 48,300 steps, plus 2,100 evaluations of
# 2,417 windows and 21 process start-ups with compilation; --jobs runs several at once on one
# chip (small models, the chip is far from full). Time it on the device first with
# EPOCHS=2 SEEDS=0 before the full run; resumable: rerunning skips finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs}"
DATA_DIR="${DATA_DIR:-runs/recipe_tfds}"
if [[ ! -f "$DATA_DIR/wisdm2019/1.0.0/dataset_info.json" ]]; then
  echo "No prepared wisdm2019 in $DATA_DIR (carry it; see the top of $0)." >&2
  exit 1
fi
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" python benchmarks/recipe_comparison.py \
  --cells=cnn,resnet,channel,temporal,temporal_channel,danhar,danhar_no_ln \
  --seeds="${SEEDS:-0,1,2}" --epochs="${EPOCHS:-100}" --jobs="${JOBS:-4}" \
  --data_dir="$DATA_DIR" --manual_dir="" \
  --runs_dir="$OUT/recipe_gpu" --out_dir="$OUT/recipe_gpu/results" --name=recipe_wisdm2019_gpu
