#!/usr/bin/env bash
# Stages the device call `device_check.sh recipe`, which carries the prepared WISDM-2019 dataset
# (33 MiB). With the pretrained model's binaries (25 MiB, unused by the recipe) and the wheels
# (10 MiB), the call would pass the device tool's 64 MiB, so they are left behind for it.
#
#   bash experiments/device_recipe_stage.sh DATA_DIR   # DATA_DIR/wisdm2019 built by the builder
#   # the device call: device_check.sh recipe "$OUT", carry .whl and runs/recipe_tfds
#   bash experiments/device_recipe_stage.sh --restore  # at once after the call
#
# The binaries stay on disk untouched: staging only takes them out of git's index and ignores
# them (.git/info/exclude), so they do not travel; --restore puts both back. Commit nothing while
# staged, or the commit deletes them.
set -euo pipefail
cd "$(dirname "$0")/.."
EXCLUDE=$(git rev-parse --git-path info/exclude)
MARK="# device_recipe_stage.sh: pretrained binaries left behind"
mapfile -t BINARIES < <(git ls-tree -r --name-only HEAD pretrained |
                        grep -E '\.(npz|stablehlo)$' || true)

unstage() {
  [ ${#BINARIES[@]} -eq 0 ] || git reset -q HEAD -- "${BINARIES[@]}"
  if [ -f "$EXCLUDE" ] && grep -qF "$MARK" "$EXCLUDE"; then
    # The block is the marker line and the paths after it, up to a blank line.
    awk -v m="$MARK" '$0 == m {skip = 1; next} skip && $0 == "" {skip = 0; next} !skip' \
      "$EXCLUDE" >"$EXCLUDE.tmp" && mv "$EXCLUDE.tmp" "$EXCLUDE"
  fi
}

if [ "${1:-}" = --restore ]; then
  unstage
  echo "restored: ${#BINARIES[@]} pretrained binaries are tracked again"
  git status --short -- pretrained
  exit 0
fi
DATA=${1:?usage: experiments/device_recipe_stage.sh DATA_DIR | --restore}
info="$DATA/wisdm2019/1.0.0/dataset_info.json"
if [ ! -f "$info" ]; then
  echo "device_recipe_stage: $info is missing; build it first: python -m tfds_builders build" \
    "wisdm2019 --data_dir=$DATA --manual_dir=<wisdm_2019 folder>" >&2
  exit 1
fi
if [ ! -d .whl ]; then
  echo "device_recipe_stage: no .whl/; run bash benchmarks/device_wheels.sh first" >&2
  exit 1
fi
if [ "$(cd "$DATA" && pwd)" != "$PWD/runs/recipe_tfds" ]; then
  rm -rf runs/recipe_tfds/wisdm2019 && mkdir -p runs/recipe_tfds
  cp -r "$DATA/wisdm2019" runs/recipe_tfds/
fi
unstage  # staging twice leaves one block
git rm -q --cached -- "${BINARIES[@]}"
{ echo "$MARK"; printf '/%s\n' "${BINARIES[@]}"; echo; } >>"$EXCLUDE"

# What the tool will send: the working tree as git lists it, the wheels and the data.
tree_kb=$(git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- |
          tail -1 | cut -f1)
kb=$((tree_kb + $(du -sk .whl | cut -f1) + $(du -sk runs/recipe_tfds | cut -f1)))
echo "staged: $((kb / 1024)) MiB travel with the recipe call (limit 64):" \
  "tree $((tree_kb / 1024)), .whl and runs/recipe_tfds; ${#BINARIES[@]} pretrained binaries" \
  "left behind. Run it with --restore after the call, before any commit."
if [ "$kb" -gt $((64 * 1024)) ]; then
  unstage
  echo "device_recipe_stage: still over 64 MiB; nothing staged" >&2
  exit 1
fi
