#!/usr/bin/env bash
# Downloads into DEST (default .whl/, git-ignored) exactly the wheels listed in
# benchmarks/device/wheels.txt: what the GPU machine's image lacks, for its Python (3.12)
# on manylinux x86-64. That machine has no network; the wheels travel with the device call
# (carry .whl) and benchmarks/device_check.sh installs them with --no-index --no-deps.
#
#   benchmarks/device_wheels.sh                      # .whl/ for the GPU image's Python 3.12
#   PY_VERSION=3.11 benchmarks/device_wheels.sh DIR  # the same list for another Python
#                                                    # (benchmarks/device_rehearsal.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.whl}
PY_VERSION=${PY_VERSION:-3.12}
LIST=benchmarks/device/wheels.txt
mapfile -t WANTED < <(grep -v '^#' "$LIST" | grep -v '^$')
binary=() sdist=()
for spec in "${WANTED[@]}"; do
  case "$spec" in promise==*) sdist+=("$spec") ;; *) binary+=("$spec") ;; esac
done
rm -rf "$DEST"
mkdir -p "$DEST"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" \
  --implementation cp "${platforms[@]}" -d "$DEST" "${binary[@]}"
# promise is published as an sdist only; its wheel is pure Python, good for any version.
[ ${#sdist[@]} -eq 0 ] || python3 -m pip wheel -q --no-deps -w "$DEST" "${sdist[@]}"
count=$(ls "$DEST"/*.whl | wc -l)
if [ "$count" -ne "${#WANTED[@]}" ]; then
  echo "device_wheels: expected ${#WANTED[@]} wheels, got $count in $DEST" >&2
  exit 1
fi
echo "device_wheels: $count wheels for Python $PY_VERSION in $DEST ($(du -sh "$DEST" | cut -f1))"
