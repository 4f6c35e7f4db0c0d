"""Where and with what a row was measured: package versions, step code, git, CPU, GPU clocks.

Imports neither jax nor torch, at import or inside: the orchestrator that writes rows runs
without them, so versions come from importlib.metadata and the GPU from nvidia-smi.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata
import os
import pathlib
import platform
import re
import resource
import statistics
import subprocess
import sys
import threading

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The packages whose code computes a step: a row measured with other versions is another row.
_PACKAGES = {
    "jax": ("jax", "jaxlib", "flax", "optax", "numpy", "jax-cuda*-plugin", "jax-cuda*-pjrt",
            "libtpu"),
    "torch": ("torch", "numpy", "nvidia-cudnn-cu*", "nvidia-cuda-runtime-cu*", "triton"),
}

# The files whose contents compute a step: a docs or README commit leaves the step code alone.
_STEP_FILES = {
    "jax": ("danhar_jax/models.py", "danhar_jax/train.py", "danhar_jax/parallel.py",
            "danhar_jax/input_pipeline.py", "danhar_jax/splits.py", "danhar_jax/selection.py",
            "danhar_jax/metrics.py", "danhar_jax/checkpoints.py", "danhar_jax/host_memory.py",
            "danhar_jax/ops/*.py", "configs/*.py", "benchmarks/contenders_jax.py",
            "benchmarks/trainer_bench.py", "benchmarks/worker.py", "benchmarks/timing.py",
            "benchmarks/model_config.py"),
    "torch": ("benchmarks/torch_reference.py", "benchmarks/contenders_torch.py",
              "benchmarks/worker.py", "benchmarks/timing.py", "benchmarks/model_config.py",
              "configs/*.py"),
}


def _framework(framework: str) -> None:
  if framework not in _PACKAGES:
    raise ValueError(f"framework {framework!r} is not one of: {', '.join(_PACKAGES)}")


def _canonical(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: nvidia_cudnn_cu12 is nvidia-cudnn-cu12


def versions(framework: str) -> dict:
  """{package: version} of python and the installed packages that compute `framework`'s step."""
  _framework(framework)
  installed = {}
  for dist in importlib.metadata.distributions():
    if dist.metadata["Name"]:
      installed.setdefault(_canonical(dist.metadata["Name"]), dist.version)
  out = {"python": platform.python_version()}
  for pattern in _PACKAGES[framework]:
    for name in sorted(n for n in installed if fnmatch.fnmatchcase(n, pattern)):
      out[name] = installed[name]
  return out


def step_code(framework: str, root: pathlib.Path = ROOT) -> str:
  """16 hex digits of sha256 over the step files' paths and contents (a missing one hashed as
  missing), sorted, so that the same code hashes the same in any checkout."""
  _framework(framework)
  root = pathlib.Path(root)
  paths = set()
  for pattern in _STEP_FILES[framework]:
    found = sorted(root.glob(pattern))
    paths |= {p.relative_to(root).as_posix() for p in found} if found else {pattern}
  digest = hashlib.sha256()
  for rel in sorted(paths):
    path = root / rel
    data = path.read_bytes() if path.is_file() else b"\0missing"
    digest.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
  return digest.hexdigest()[:16]


def _run(args: list[str], timeout: float = 10.0) -> str | None:
  """stdout of a command that succeeded, or None (absent, failed or hung)."""
  try:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return None


def git(root: pathlib.Path = ROOT) -> dict:
  """The checkout's commit and whether any tracked file differs from it (None outside git)."""
  sha = _run(["git", "-C", str(root), "rev-parse", "HEAD"])
  if sha is None:
    return {"git_sha": None, "git_dirty": None}
  status = _run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"])
  return {"git_sha": sha.strip(), "git_dirty": None if status is None else bool(status.strip())}


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "cpu model") and value.strip():
          return value.strip()
  except OSError:  # not Linux
    pass
  return platform.processor() or platform.machine() or "unknown"


def slug(text: str) -> str:
  text = re.sub(r"\((r|tm|c)\)", " ", text.lower())  # Intel(R) Xeon(TM): marks, not names
  return re.sub(r"[^a-z0-9]+", "_", text).strip("_") or "unknown"


def device_slug(device_name: str, platform_name: str) -> str:
  """The ledger's file name. A CPU's holds its model and core count: a Xeon's rows are not an
  EPYC's, nor 2 cores' those of 64."""
  if platform_name == "cpu":
    return f"cpu_{slug(device_name or cpu_model())}_{os.cpu_count()}c"
  return slug(device_name)


def _numbers(csv_line: str) -> list[float | str]:
  out = []
  for value in (v.strip() for v in csv_line.split(",")):
    try:
      out.append(float(value))
    except ValueError:
      out.append(value)  # "[N/A]", "[Not Supported]", names
  return out


# nvidia-smi field → its key in a row's env (beside git's and the CPU's, so named and in units)
_STATIC = {"name": "gpu_name", "driver_version": "gpu_driver", "memory.total": "gpu_memory_mib",
           "clocks.max.sm": "gpu_max_sm_clock_mhz", "power.limit": "gpu_power_limit_w"}


def gpu_static() -> dict:
  """The first GPU's name, driver, memory, max SM clock and power limit; {} without nvidia-smi."""
  out = _run(["nvidia-smi", f"--query-gpu={','.join(_STATIC)}", "--format=csv,noheader,nounits"])
  lines = (out or "").strip().splitlines()
  if not lines:
    return {}
  name, driver, numbers = lines[0].split(",", 2)  # a driver "550.90" is text, not a number
  return dict(zip(_STATIC.values(), [name.strip(), driver.strip(), *_numbers(numbers)]))


class GpuSampler:
  """Samples clocks, power, temperature and utilisation every `interval_s` while timing runs:
  one short nvidia-smi call each, not one `-lms` process, whose piped output may sit in its
  buffer until it exits; a call that hangs is cut by its own timeout."""

  FIELDS = ("clocks.sm", "clocks.mem", "power.draw", "temperature.gpu", "utilization.gpu")

  def __init__(self, interval_s: float = 0.5, gpu: int | None = None):
    self.interval_s, self.gpu = interval_s, gpu
    self.samples: dict[str, list[float]] = {f: [] for f in self.FIELDS}
    self._stop = threading.Event()
    self._thread: threading.Thread | None = None

  def _sample(self) -> bool:
    args = ["nvidia-smi", f"--query-gpu={','.join(self.FIELDS)}", "--format=csv,noheader,nounits"]
    out = _run(args + [f"--id={self.gpu}"] * (self.gpu is not None),
               timeout=max(2.0, 4 * self.interval_s))
    if out is None:
      return False
    for line in out.strip().splitlines():  # one line per GPU: all of them pooled
      for field, value in zip(self.FIELDS, _numbers(line)):
        if isinstance(value, float):
          self.samples[field].append(value)
    return True

  def _loop(self) -> None:
    while not self._stop.wait(self.interval_s):
      self._sample()

  def __enter__(self) -> "GpuSampler":
    if self._sample():  # no nvidia-smi: nothing to sample, no thread
      self._thread = threading.Thread(target=self._loop, name="GpuSampler", daemon=True)
      self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=15)
      self._sample()  # the state at the end of timing, however short it was

  def summary(self) -> dict:
    return {f: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}
            for f, v in self.samples.items() if v}


def peak_rss_bytes() -> int:
  """This process's peak resident set size (Linux reports KiB, macOS bytes)."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(peak if sys.platform == "darwin" else peak * 1024)
