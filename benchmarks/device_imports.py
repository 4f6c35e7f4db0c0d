"""Every module the project needs, imported in seconds: the device check's first stage.

  python3 -m benchmarks.device_imports

It reads the project's own files (ast, no import) for their third-party imports, including
`pytest.importorskip("...")`, then imports each of them and every module of the project. If any
import fails it prints the whole list of what is missing, with the exception of each, and exits
1, so a machine without a package fails here, before any test or timing has spent its time.
`tests/test_device_packages.py` uses the same scan to check, on the CPU, that every third-party
import is in the GPU image's package list or among the carried wheels.
"""

from __future__ import annotations

import ast
import importlib
import pathlib
import sys
import time
import traceback

if not __package__:  # run as a file, the packages are not importable
  sys.exit("run it from the repository root as: python -m benchmarks.device_imports")

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROJECT_DIRS = ("danhar_jax", "tfds_builders", "configs", "benchmarks", "experiments", "tests")
# Modules the project imports only behind a guard, and why they may be absent on the device.
OPTIONAL = {
    "tensorflow": "TFDS's own builder test cases; the tfds-cli extra",
    "jax_plugins": "the namespace of installed accelerator plugins; imported inside try",
    "tfds_builders._testing": "TFDS's builder test case, which needs TensorFlow",
    "jax2onnx": "ONNX export, the export extra; StableHLO export needs only jax",
    "onnxruntime": "checks the ONNX export, the export extra",
}


def project_files() -> list[pathlib.Path]:
  files = [p for d in PROJECT_DIRS for p in sorted((ROOT / d).rglob("*.py"))]
  return files + [ROOT / "main.py"]


def local_names() -> set[str]:
  """Top-level names that are the project's own: packages, and the scripts beside each other."""
  names = set(PROJECT_DIRS) | {"main"}
  for d in PROJECT_DIRS:
    names |= {p.stem for p in (ROOT / d).glob("*.py")}
  return names


def imported_modules(path: pathlib.Path) -> set[str]:
  """Top-level modules `path` imports: import statements and pytest.importorskip('...')."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      found.add(node.module)
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr == "importorskip" and node.args
          and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
      found.add(node.args[0].value)
  return {name.split(".")[0] for name in found}


def third_party_imports() -> dict[str, list[str]]:
  """{top-level module: [files importing it]} for every non-stdlib, non-project import."""
  local, out = local_names(), {}
  for path in project_files():
    for name in imported_modules(path):
      if name not in sys.stdlib_module_names and name not in local and name != "__future__":
        out.setdefault(name, []).append(str(path.relative_to(ROOT)))
  return dict(sorted(out.items()))


def project_modules() -> list[str]:
  """The importable modules of the library, the builders and the configs."""
  names = []
  for d in ("danhar_jax", "tfds_builders", "configs"):
    for path in sorted((ROOT / d).rglob("*.py")):
      parts = path.relative_to(ROOT).with_suffix("").parts
      if "dummy_data" in parts or parts[-1].startswith(("make_", "test_")) or parts[-1].endswith(
          "_test") or parts[-1] == "__main__":
        continue
      names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
  return names


def main() -> int:
  start = time.perf_counter()
  missing = []
  wanted = [m for m in [*third_party_imports(), *project_modules()] if m not in OPTIONAL]
  for name in wanted:
    try:
      importlib.import_module(name)
    except Exception as e:  # pylint: disable=broad-except
      missing.append((name, f"{type(e).__name__}: {e}".splitlines()[0][:200]))
      if "-v" in sys.argv:
        traceback.print_exc()
  for name, why in OPTIONAL.items():
    try:
      importlib.import_module(name)
      print(f"optional {name}: present")
    except ImportError:
      print(f"optional {name}: absent ({why})")
  took = time.perf_counter() - start
  if missing:
    print(f"MISSING: {len(missing)} of {len(wanted)} imports failed in {took:.1f} s:")
    for name, why in missing:
      print(f"  {name}: {why}")
    return 1
  print(f"imports: all {len(wanted)} modules import ({took:.1f} s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
