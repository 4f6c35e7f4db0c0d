#!/usr/bin/env bash
# Runs the device calls on this CPU the way the GPU machine runs them, with QUICK sizes. It must
# pass before any GPU run. The recipe call is rehearsed when runs/recipe_tfds holds the prepared
# WISDM-2019 dataset (see benchmarks/device_check.sh).
#
#   bash benchmarks/device_rehearsal.sh        # about 10 minutes; everything under .rehearsal/
#
# - A fresh venv of Python 3.12 (the image's) holding only packages of the GPU image
#   (benchmarks/device/image_packages.txt) at the image's versions: jax/jaxlib 0.11.2 (CPU: the
#   CUDA plugins are left out), numpy 2.5.2, torch 2.11.0 (the registry's CUDA 13 build, run on
#   the CPU: it has no CPU-only one), flax 0.12.12, optax 0.2.8, orbax-checkpoint 0.12.8; what
#   else pip brings is removed again. REHEARSAL_PYTHON=PATH picks another 3.12 interpreter.
# - The GPU's wheels (.whl/, Python 3.12) built by benchmarks/device_wheels.sh, carried into the
#   copy as the device tool carries .whl, and installed --no-index --no-deps --target as there.
# - A copy of the working tree as the device tool sends it (tracked and untracked-not-ignored
#   files), with no shared/ beside it; `python3` alone on PATH, no `python`; no network
#   (`unshare -n`); a bare environment and an empty compilation cache.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
R=$ROOT/.rehearsal
t0=$(date +%s)
if [ "${REHEARSAL_REUSE_VENV:-0}" = 1 ] && [ -x "$R/venv/bin/python3" ]; then
  # The last rehearsal's venv, as it left it: for reruns after a fix outside the venv.
  find "$R" -mindepth 1 -maxdepth 1 ! -name venv -exec rm -rf {} +
  mkdir -p "$R/tree" "$R/home"
  echo "== venv: the last rehearsal's, reused (REHEARSAL_REUSE_VENV=1)"
else
rm -rf "$R"
mkdir -p "$R/tree" "$R/home"

echo "== venv with the image's packages (Python 3.12)"
if [ -n "${REHEARSAL_PYTHON:-}" ]; then
  mkvenv() { "$REHEARSAL_PYTHON" -m venv "$@"; }
else  # pyenv's 3.12, without touching the project's default python
  mkvenv() { PYENV_VERSION=${REHEARSAL_PYENV:-3.12.1} python -m venv "$@"; }
fi
if ! mkvenv "$R/venv" >"$R/venv.log" 2>&1 ||
   ! "$R/venv/bin/python3" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
  echo "rehearsal: no Python 3.12 for the venv (the GPU image's); install one or set" \
    "REHEARSAL_PYTHON=/path/to/python3.12 ($(tail -n 1 "$R/venv.log" 2>/dev/null))" >&2
  exit 1
fi
# The image's packages the project uses, and what they pull, at the image's versions.
if ! "$R/venv/bin/python3" -m pip install -q --disable-pip-version-check \
    jax==0.11.2 jaxlib==0.11.2 flax==0.12.12 optax==0.2.8 orbax-checkpoint==0.12.8 \
    numpy==2.5.2 torch==2.11.0 chex scipy scikit-learn matplotlib absl-py etils pyarrow psutil \
    requests tqdm wrapt pyyaml protobuf packaging pytest pytest-timeout hypothesis \
    >"$R/pip.log" 2>&1; then
  grep -v "is ignored" "$R/pip.log" | tail -n 20
  echo "rehearsal: installing the image's packages FAILED (all of it in $R/pip.log)" >&2
  exit 1
fi
# Anything pip brought that the image's list lacks (python-dateutil's tzdata) is removed again,
# so code that needed it fails here as it would there.
extra=$(cd "$R" && "$R/venv/bin/python3" - "$ROOT/benchmarks/device/image_packages.txt" <<'PYEOF'
import importlib.metadata, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
image = {norm(s.partition("==")[0]) for line in open(sys.argv[1])
         for s in line.split("#")[0].split()}
print(" ".join(sorted({norm(d.metadata["Name"]) for d in importlib.metadata.distributions()}
                      - image)))
PYEOF
)
if [ -n "$extra" ]; then
  echo "   not in the image, removed: $extra"
  "$R/venv/bin/python3" -m pip uninstall -q -y $extra
fi
fi

echo "== wheels"
benchmarks/device_wheels.sh .whl 2>&1 | grep -v "is ignored" || true
ls .whl/*.whl >/dev/null 2>&1 || { echo "rehearsal: no wheels in .whl/" >&2; exit 1; }

# What the wheels need from the image (promise needs six, ...) goes into the venv as well.
needs=$("$R/venv/bin/python3" - "$ROOT/benchmarks/device/image_packages.txt" .whl/*.whl <<'PYEOF'
import re, sys, zipfile
from email.parser import Parser
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
image = {norm(s.partition("==")[0]) for line in open(sys.argv[1])
         for s in line.split("#")[0].split()}
needs = set()
for wheel in sys.argv[2:]:
  with zipfile.ZipFile(wheel) as z:
    meta = Parser().parsestr(z.read(next(n for n in z.namelist()
                                         if n.endswith(".dist-info/METADATA"))).decode())
  for req in meta.get_all("Requires-Dist") or []:
    if "extra ==" not in req:
      name = norm(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
      needs |= {name} & image
print(" ".join(sorted(needs)))
PYEOF
)
echo "   the wheels need from the image: $needs"
"$R/venv/bin/python3" -m pip install -q --disable-pip-version-check $needs 2>&1 | grep -v "is ignored" || true

echo "== the working tree, as the device tool copies it"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$R/tree/" 2>/dev/null ||
  git ls-files -z --cached --others --exclude-standard | (cd "$ROOT" && xargs -0 tar cf -) | tar xf - -C "$R/tree"
cp -r .whl "$R/tree/.whl"  # as `carry: [".whl"]` sends it
echo "   $(du -sh "$R/tree" | cut -f1) ($(du -sh "$R/tree/.whl" | cut -f1) of wheels)"

# The GPU machine has python3 and no python. The venv's python3 links to its python: point it
# at the interpreter itself first, or PATH would fall through to the system's python3.
ln -sf "$(readlink -f "$R/venv/bin/python3")" "$R/venv/bin/python3"
rm -f "$R/venv/bin/python" "$R/venv/bin/python3.12" "$R/venv/bin/pip"*

bare() {  # bare COMMAND...: python3 only, no network, a bare environment
  env -i PATH="$R/venv/bin:/usr/bin:/bin" HOME="$R/home" LANG=C.UTF-8 \
    ${OPENBLAS_CORETYPE:+OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE} \
    ${OPENBLAS_L2_SIZE:+OPENBLAS_L2_SIZE=$OPENBLAS_L2_SIZE} \
    QUICK=1 DEVICE_SITE="$R/site" JAX_COMPILATION_CACHE_DIR="$R/xla_cache" unshare -n "$@"
}
bare bash -c '! command -v python >/dev/null' || { echo "rehearsal: a python on PATH"; exit 1; }
bare python3 -c 'import sys; assert sys.prefix == sys.argv[1] and sys.version_info[:2] == (3, 12)' \
  "$R/venv" || { echo "rehearsal: python3 on PATH is not the venv's Python 3.12" >&2; exit 1; }

# The device tool sends at most 64 MiB: the tree and the wheels; for the recipe call also its
# data, less the pretrained binaries that experiments/device_recipe_stage.sh leaves behind.
size=$(du -sk "$R/tree" | cut -f1)
sizes="$((size / 1024)) MiB travel with the device call"
if [ -d runs/recipe_tfds ]; then
  recipe=$((size + $(du -sk runs/recipe_tfds | cut -f1)
            - $(cd "$R/tree" && du -ck pretrained/*/*.npz pretrained/*/*.stablehlo 2>/dev/null |
                tail -1 | cut -f1)))
  sizes="$sizes, $((recipe / 1024)) MiB with the recipe call"
  [ "$recipe" -gt "$size" ] && size=$recipe
fi
if [ "$size" -gt $((64 * 1024)) ]; then
  echo "rehearsal: $((size / 1024)) MiB would travel to the device, over its 64 MiB ($sizes)"
  exit 1
fi
echo "   $sizes (limit 64)"
status=0
echo "== device_check.sh (correctness, then the plan)"
(cd "$R/tree" && bare bash benchmarks/device_check.sh "$R/out_plan") || status=1
if [ -f runs/recipe_tfds/wisdm2019/1.0.0/dataset_info.json ]; then  # carried as on the device
  mkdir -p "$R/tree/runs" && cp -r runs/recipe_tfds "$R/tree/runs/"
  echo "== device_check.sh recipe"
  (cd "$R/tree" && bare bash benchmarks/device_check.sh recipe "$R/out_recipe") || status=1
fi
echo "rehearsal: $([ $status -eq 0 ] && echo PASSED || echo FAILED) in $(($(date +%s) - t0))s;" \
  "outputs in $R/out_*"
exit $status
