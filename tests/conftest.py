"""Shared test fixtures and where the real data lives (setup.cfg puts the root on sys.path)."""

import os
import pathlib
import shutil
import tempfile

import pytest

# One persistent XLA compilation cache for the whole session, subprocesses included (they inherit
# the environment): the trainer tests compile the same steps many times, and a cached executable
# is the same program, so bit-exact comparisons are unaffected.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="danhar_xla_cache_")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# Tests compare numbers: full float32 matmuls and convs everywhere, subprocesses included (a GPU
# would otherwise use TF32). JAX reads this when it is first imported, after this file.
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")


# CI installs the test extra, PyTorch and scikit-learn included: a fidelity check that skips
# there for want of either has silently stopped checking anything, so the run fails.
FIDELITY_MODULES = ("torch", "sklearn")
_skipped_fidelity = []


def pytest_runtest_logreport(report):
  # pytest.importorskip's reason: "could not import 'torch': ..."
  if report.skipped and any(f"could not import '{m}" in str(report.longrepr)
                            for m in FIDELITY_MODULES):
    _skipped_fidelity.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
  del exitstatus
  if "_CACHE" in globals():  # ours, not one the caller named: about 25 MB per run
    shutil.rmtree(_CACHE, ignore_errors=True)
  if os.environ.get("CI") == "true" and _skipped_fidelity:
    print(f"\nCI: {len(_skipped_fidelity)} torch/sklearn tests skipped: "
          f"{', '.join(_skipped_fidelity)}")
    session.exitstatus = 1


ROOT = pathlib.Path(__file__).resolve().parents[1]
# CI clones the repository and puts shared/ beside it, as on the developers' machines.
SHARED_DATA = ROOT.parent / "shared" / "data"


def one_error_line(stderr: str) -> str:
  """The one `error: ` line a failed main.py ends with, checked to be the only one: no
  traceback, and no interpreter-shutdown noise ("Exception ignored in atexit ...", which
  Python 3.12+ prints when an exit hook starts a thread) under it or anywhere else."""
  lines = stderr.strip().splitlines()
  assert lines, "nothing on stderr"
  errors = [l for l in lines if l.startswith("error: ")]
  assert errors == [lines[-1]], stderr[-3000:]
  assert "Traceback (most recent call last)" not in stderr, stderr[-3000:]
  assert "Exception ignored" not in stderr, stderr[-3000:]
  return lines[-1]


@pytest.fixture
def shared_data():
  if not SHARED_DATA.exists():
    pytest.skip(f"real data not found at {SHARED_DATA}")
  return SHARED_DATA


def pytest_collection_modifyitems(config, items):
  """On an accelerator, tests that split the CPU into several JAX devices cannot run: say so."""
  del config
  from danhar_jax import host_memory  # pylint: disable=import-outside-toplevel
  platform = host_memory.expected_platform()
  if platform == "cpu":
    return
  skip = pytest.mark.skip(reason=f"needs several host CPU devices (xla_force_host_platform_"
                          f"device_count); JAX runs on {platform} here")
  for item in items:
    if "host_devices" in item.keywords:
      item.add_marker(skip)
