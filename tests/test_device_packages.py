"""The GPU machine has no network: every package the project imports must be in its image or
among the carried wheels (benchmarks/device/), checked statically here on the CPU."""

import importlib.metadata
import pathlib
import re

import pytest
from packaging.requirements import Requirement

from benchmarks import device_imports

ROOT = pathlib.Path(__file__).resolve().parents[1]

DEVICE = ROOT / "benchmarks" / "device"


def normalize(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def listed(path: pathlib.Path) -> dict[str, str | None]:
  """{normalized name: version or None} of a whitespace- or line-separated package list."""
  out = {}
  for line in path.read_text().splitlines():
    for spec in line.split("#")[0].split():
      name, _, version = spec.partition("==")
      out[normalize(name)] = version or None
  return out


IMAGE, WHEELS = listed(DEVICE / "image_packages.txt"), listed(DEVICE / "wheels.txt")


def distributions_of(module: str) -> list[str]:
  return [normalize(d) for d in importlib.metadata.packages_distributions().get(module, [])]


def test_every_third_party_import_is_in_the_image_or_the_wheels():
  unknown, absent = [], []
  for module, files in device_imports.third_party_imports().items():
    if module in device_imports.OPTIONAL:
      continue
    dists = distributions_of(module)
    if not dists:
      unknown.append(f"{module} (imported by {files[0]}) is not installed here")
    elif not any(d in IMAGE or d in WHEELS for d in dists):
      absent.append(f"{module} ({'/'.join(dists)}, imported by {files[0]})")
  assert not unknown, unknown
  assert not absent, (f"not in the GPU image and not in {DEVICE / 'wheels.txt'}: {absent}")


def test_the_wheels_are_exactly_what_the_image_lacks_and_bring_their_dependencies():
  assert not set(WHEELS) & set(IMAGE), set(WHEELS) & set(IMAGE)
  assert all(WHEELS.values()), "pin every wheel (name==version)"
  missing = []
  for name in WHEELS:
    try:
      requires = importlib.metadata.requires(name) or []
    except importlib.metadata.PackageNotFoundError:
      continue  # not installed here: its dependencies were checked where it was added
    for text in requires:
      req = Requirement(text)
      # What pip would install for it on the GPU machine's Python, without extras.
      if req.marker and not req.marker.evaluate({"python_version": "3.12", "extra": ""}):
        continue
      if normalize(req.name) not in IMAGE and normalize(req.name) not in WHEELS:
        missing.append(f"{name} needs {req.name}")
  assert not missing, missing


def test_the_scan_finds_imports_and_importorskip(tmp_path):
  source = tmp_path / "probe.py"
  source.write_text("import numpy as np\nfrom jax import numpy\nimport os\n"
                    "def f(pytest):\n  pytest.importorskip('sklearn')\n")
  assert device_imports.imported_modules(source) == {"numpy", "jax", "os", "sklearn"}


@pytest.mark.parametrize("module", ["jax", "flax", "optax", "torch", "ml_collections",
                                    "tensorflow_datasets", "array_record", "sklearn"])
def test_the_scan_sees_the_packages_the_device_run_needs(module):
  assert module in device_imports.third_party_imports()


@pytest.mark.parametrize("package,version,python", [
    ("jax", "0.10.2", "3.11"), ("jax", "0.11.2", "3.12"), ("jax", "0.12.0.1", "3.13"),
    ("flax", "0.12.8", "3.11"), ("flax", "0.12.12", "3.12"), ("optax", "0.2.8", "3.11"),
    ("orbax-checkpoint", "0.12.8", "3.11")])
def test_the_bounds_admit_every_jax_a_user_may_have_installed(package, version, python):
  """jax 0.10.2 (what this registry serves) through 0.12 (the GPU image has 0.11.2): installing
  the package after jax[cuda13] or jax[tpu] must never downgrade them."""
  import configparser  # pylint: disable=import-outside-toplevel
  cfg = configparser.ConfigParser()
  cfg.read(ROOT / "setup.cfg")
  requires = [Requirement(line) for line in cfg["options"]["install_requires"].splitlines()
              if line.strip() and not line.strip().startswith("#")]
  applying = [r for r in requires if normalize(r.name) == package
               and (r.marker is None or r.marker.evaluate({"python_version": python}))]
  assert applying
  for req in applying:
    assert req.specifier.contains(version), (str(req), version, python)
  if (package, python) == ("flax", "3.11"):  # and the flax that breaks on jax 0.11+ is refused
    newer = [r for r in requires if normalize(r.name) == "flax" and r.marker is not None
             and r.marker.evaluate({"python_version": "3.12"})]
    assert newer and not all(r.specifier.contains(version) for r in newer)


def test_the_rehearsal_installs_the_images_pinned_versions_on_its_python():
  """benchmarks/device_rehearsal.sh rehearses on the image's versions, not stand-ins: every
  version image_packages.txt pins (but the CUDA plugins, of no use on a CPU) is the one its venv
  installs, and the venv is Python 3.12, the image's."""
  script = (ROOT / "benchmarks" / "device_rehearsal.sh").read_text()
  pins = dict(re.findall(r"\b([a-z][a-z0-9-]*)==([0-9][0-9.]*)\b", script))
  for name, version in IMAGE.items():
    if version and not name.startswith("jax-cuda"):
      assert pins.get(name) == version, (name, version, pins.get(name))
  assert "sys.version_info[:2] != (3, 12)" in script and "PYENV_VERSION" in script
