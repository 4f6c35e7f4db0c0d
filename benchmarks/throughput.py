r"""Training and evaluation throughput of DanHAR, with MFU and a PyTorch peer, in one process.

  python benchmarks/throughput.py --config=configs/wisdm.py --batch_sizes=64 \
      --dtypes=float32 --json=benchmarks/results/cpu.json
  python benchmarks/throughput.py --configs=wisdm,opportunity,pamap2 --batch_sizes=64,256
  python benchmarks/throughput.py --config=configs/pamap2.py --config.model.conv_impl=xla

What is timed, for every (config, dtype, batch size, device count, conv impl):

- the trainer's own steps: `train.train_step` and `train.eval_step` mapped with
  `parallel.Parallel('pmap').map` over a `TrainState` from `train.create_train_state`,
  replicated, exactly as `train.Trainer` runs them (benchmarks/jax_steps.py). The batch and the
  eval mask are already on the device(s); each timed repeat runs enough steps to last
  --min_repeat_s (sized from the warmup; --steps fixes it) and then blocks on the outputs. The
  first call (the compile) is reported apart as `compile_s`, never mixed into the rates;
- the input pipeline alone: `input_pipeline.train_indices`, the per-device split of the indices
  and the mapped `train.gather` from the device-resident split, blocked. Training is input-bound
  only if this rate comes near the train step's, so its ratio to the train rate is reported;
- the peers: the same architecture in plain PyTorch (benchmarks/torch_reference.py), built from
  the same config with the same parameter count, Adam and batch, on the same device: eager the
  authors' way, optionally tuned (--torch_tuned) and `torch.compile` of the tuned one, whose
  first calls draw on their own allowance (--torch_compile_budget_s, --torch_compile_timeout).

Contenders are prepared (compiled, warmed up) one after another, the --time_budget_s checked
before each, then timed interleaved, one repeat of each in turn, so the load of anything else on
the machine falls on all of them alike. Every contender's row is written to --json and
--markdown as soon as it is prepared and again after every round of repeats, so a run killed
midway keeps what it measured. Rates are the median over the repeats, with the min–max spread.
FLOPs are analytic (`summary.forward_flops`, conv and Dense multiply-accumulates × 2; a training
step counted as 3× the forward) and, for JAX, also XLA's cost analysis of the compiled train step
(`train_flop_per_window_xla`, `mfu_xla`). MFU divides the achieved FLOP/s by the rate of a large
jitted matmul in the same dtype on the same device, timed interleaved with the steps. Each row
also records the CPU cores other processes used meanwhile (`other_cores_during_timing`): on a
shared machine that, more than anything, moves the numbers.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import importlib
import json
import math
import os
import pathlib
import platform
import resource
import signal
import sys
import time
from typing import Callable

# On a GPU, JAX would otherwise take 75% of the memory before the PyTorch peer gets any.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import flax
import jax
import jax.numpy as jnp
import jaxlib
from ml_collections import config_flags
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from danhar_jax import host_memory  # pylint: disable=g-import-not-at-top
from danhar_jax import input_pipeline
from danhar_jax import models
from danhar_jax import parallel
from danhar_jax import summary
from danhar_jax import train
import jax_steps  # pylint: disable=g-import-not-at-top,wrong-import-order
import peaks  # pylint: disable=g-import-not-at-top,wrong-import-order
import trainer_bench  # pylint: disable=g-import-not-at-top,wrong-import-order

DATASETS = ("wisdm", "pamap2", "unimib_shar", "opportunity", "weakly")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "One dataset config (configs/<name>.py[:arg]); --config.* overrides apply.",
    lock_config=True)
_CONFIGS = flags.DEFINE_list(
    "configs", [], "More configs by name or path, each with an optional :arg (wisdm, "
    "configs/pamap2.py:cnn). Without --config or --configs: all five datasets.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["64"], "Global batch sizes.")
_DTYPES = flags.DEFINE_list("dtypes", [], "Compute dtypes (float32, bfloat16); default: "
                            "the config's config.model.dtype.")
_NUMERICS = flags.DEFINE_list(
    "numerics", [], "dtype:matmul_precision pairs, e.g. float32:highest,float32:high,bfloat16 "
    "(TF32 off, TF32 on, bf16 on a GPU). Overrides --dtypes; a missing precision is the "
    "config's config.matmul_precision. The PyTorch peer is set to the same precision.")
_PARALLELISM = flags.DEFINE_list("parallelism", ["pmap"], "How the JAX steps are mapped: pmap, "
                                 "shard_map (jit of shard_map), or both.")
_TIME_BUDGET = flags.DEFINE_float(
    "time_budget_s", 0, "If > 0, contenders (and rounds of repeats) that would start after this "
    "many seconds are not timed; their rows say 'not run'. torch.compile's first calls are "
    "charged to --torch_compile_budget_s instead.")
_WIDTHS = flags.DEFINE_list("widths", [], "Override config.model.widths of every config, e.g. "
                            "16,32,48: a quick rehearsal of the script on a CPU.")
_APPEND = flags.DEFINE_boolean("append", False, "Add the rows to those already in --json.")
_MARKDOWN = flags.DEFINE_string("markdown", "", "Also write the table of all rows here.")
_CONV_IMPLS = flags.DEFINE_list("conv_impls", [], "config.model.conv_impl values to compare "
                                "(im2col, winograd, xla); default: the config's.")
_DEVICES = flags.DEFINE_list("devices", ["1"], "Local device counts; 'N' or 'all' = every "
                             "local device.")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 0, "If > 0, split the CPU into this many "
                                    "JAX devices (jax_num_cpu_devices), for --devices=1,N.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats; rates are their median.")
_WARMUP = flags.DEFINE_integer("warmup", 1, "Untimed repeats after the first (compiling) call.")
_STEPS = flags.DEFINE_integer("steps", 0, "Steps per timed repeat; 0 sizes each contender's "
                              "repeats by --min_repeat_s from its warmup timing.")
_MIN_REPEAT = flags.DEFINE_float("min_repeat_s", 0.1, "With --steps=0, each repeat runs enough "
                                 "steps to last this long (one accelerator step is too short to "
                                 "time alone).")
_SPLIT = flags.DEFINE_integer("split_windows", 4096, "Windows in the synthetic in-memory split "
                              "the batches are gathered from.")
_PEAK_SIZE = flags.DEFINE_integer("peak_size", 0, "Side of the square matmul that measures the "
                                  "peak; 0 picks 2048 on CPU (~0.1-0.3 s), 8192 elsewhere.")
_TORCH = flags.DEFINE_boolean("torch", True, "Time the PyTorch peer (if torch is installed).")
_TORCH_TUNED = flags.DEFINE_boolean("torch_tuned", False, "Also time the tuned eager peer "
                                    "(fused Adam, the faster layout, cuDNN autotuning).")
_TORCH_COMPILE = flags.DEFINE_boolean("torch_compile", False, "Also time torch.compile of the "
                                      "tuned peer.")
_TORCH_COMPILE_TIMEOUT = flags.DEFINE_integer("torch_compile_timeout", 300, "Seconds allowed "
                                              "for each of torch.compile's first calls.")
_TORCH_COMPILE_BUDGET = flags.DEFINE_float(
    "torch_compile_budget_s", 600, "Seconds all torch.compile first calls of the run may take "
    "together, not charged to --time_budget_s; once spent, later torch_compile peers are not "
    "run. 0: no limit.")
_QUIET_CORES = flags.DEFINE_float("quiet_cores", 0.25, "CPU cores other processes may use "
                                   "before the machine counts as busy.")
_QUIET_WAIT = flags.DEFINE_integer("quiet_wait", 0, "Before timing each setting, wait up to this "
                                   "many seconds for other processes to go quiet (CPU).")
_JSON = flags.DEFINE_string("json", "", "Write the rows here as a JSON list.")
_TRAINER = flags.DEFINE_boolean("trainer", False, "Also time the `trainer` contender, the loop "
                                "users run (benchmarks/trainer_bench.py), per config and batch.")
_BARE = flags.DEFINE_boolean("bare", True, "Time the bare-step settings. --nobare with --trainer "
                             "times the trainer contender alone (it times its own bare step).")
# The trainer's host µs per step are timed over epochs of this many steps whatever the batch:
# the issue's 102,400 windows at batch 256, and a bounded time at small QUICK batches.
TRAINER_HOST_STEPS = 400
_KEEP_FREED_MEMORY = flags.DEFINE_boolean(
    "keep_freed_memory", True, "Keep host memory freed by one step for the next "
    "(danhar_jax/host_memory.py), as main.py does. --nokeep_freed_memory shows glibc's default.")


# ---------------------------------------------------------------------------------------------
# What to run.


def load_configs() -> list[tuple[str, object]]:
  """(label, config) for --config and every --configs entry."""
  out = []
  if _CONFIG.value is not None:
    out.append((config_label(flags.FLAGS["config"].config_filename), _CONFIG.value))
  for spec in dict.fromkeys(_CONFIGS.value):
    path, _, arg = spec.partition(":")
    name = pathlib.Path(path).stem
    module = importlib.import_module(f"configs.{name}")
    out.append((config_label(spec), module.get_config(arg or None)))
  if not out:
    out = [(name, importlib.import_module(f"configs.{name}").get_config()) for name in DATASETS]
  if _WIDTHS.value:
    for _, config in out:
      with config.unlocked():
        config.model.widths = tuple(map(int, _WIDTHS.value))
  return out


def config_label(spec: str) -> str:
  path, _, arg = spec.partition(":")
  return pathlib.Path(path).stem + (f":{arg}" if arg else "")


def device_counts() -> list[int]:
  n = jax.local_device_count()
  counts = [n if c.strip().upper() in ("N", "ALL") else int(c) for c in _DEVICES.value]
  for c in counts:
    if not 1 <= c <= n:
      raise ValueError(f"--devices={c}: this host has {n} local device(s).")
  return list(dict.fromkeys(counts))


def with_model(config, dtype: str, impl: str, precision: str | None = None):
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.dtype, config.model.conv_impl = dtype, models.resolve_conv_impl(impl)
    if precision is not None:
      config.matmul_precision = precision
  return config


def numerics(config) -> list[tuple[str, str]]:
  """(dtype, matmul precision) pairs to time, from --numerics, else --dtypes."""
  default = config.get("matmul_precision", "default")
  if _NUMERICS.value:
    pairs = [(item.partition(":")[0], item.partition(":")[2] or default)
             for item in _NUMERICS.value]
  else:
    pairs = [(dtype, default) for dtype in _DTYPES.value or [config.model.dtype]]
  for dtype, precision in pairs:
    if dtype not in ("float32", "bfloat16") or precision not in train.MATMUL_PRECISIONS:
      raise ValueError(f"--numerics item {dtype}:{precision}: dtype must be float32 or "
                       f"bfloat16, precision one of {', '.join(train.MATMUL_PRECISIONS)}.")
  return pairs


datasheet_tflops = peaks.datasheet_tflops


def is_oom(error: BaseException | str) -> bool:
  text = str(error)
  return ("RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()
          or type(error).__name__ == "OutOfMemoryError")


# ---------------------------------------------------------------------------------------------
# Timing.


class Budget:
  """--time_budget_s, checked before every contender and every round of repeats.

  torch.compile's first calls are not charged to it but to their own allowance
  (--torch_compile_budget_s), so that a slow compile cannot leave the JAX rows unmeasured. 0 means
  no limit, for either.
  """

  def __init__(self, seconds: float, compile_seconds: float = 0, clock=time.perf_counter):
    self.seconds, self.compile_seconds, self.clock = seconds, compile_seconds, clock
    self.start, self.compiling_s = clock(), 0.0

  def spent(self) -> str | None:
    """Why nothing more may start, or None."""
    if self.seconds and self.clock() - self.start - self.compiling_s > self.seconds:
      return f"--time_budget_s={self.seconds:g} spent"
    return None

  def compile_spent(self) -> str | None:
    if self.compile_seconds and self.compiling_s >= self.compile_seconds:
      return f"--torch_compile_budget_s={self.compile_seconds:g} spent"
    return None

  def compile_left(self) -> float | None:
    return self.compile_seconds - self.compiling_s if self.compile_seconds else None

  @contextlib.contextmanager
  def compiling(self):
    start = self.clock()
    try:
      yield
    finally:
      self.compiling_s += self.clock() - start


class CacheEvents:
  """Counts JAX's persistent compilation cache events, to tell whether a compile was a hit."""
  REQUEST = "/jax/compilation_cache/compile_requests_use_cache"
  HIT = "/jax/compilation_cache/cache_hits"

  def __init__(self):
    self.counts = collections.Counter()
    self.installed = False

  def install(self) -> None:
    if not self.installed:
      jax.monitoring.register_event_listener(self.listen)
      self.installed = True

  def listen(self, event: str, **_) -> None:
    if event in (self.REQUEST, self.HIT):
      self.counts[event] += 1

  def snapshot(self) -> tuple[int, int]:
    return self.counts[self.REQUEST], self.counts[self.HIT]

  def hit(self, before: tuple[int, int]) -> bool | None:
    """Since `before`: True if every compile came from the persistent cache, False if one was
    compiled, None if there is no persistent cache (no cache directory, or not listening)."""
    requests, hits = (now - then for now, then in zip(self.snapshot(), before))
    if not self.installed or requests == 0 or not jax.config.jax_compilation_cache_dir:
      return None
    return hits == requests


CACHE = CacheEvents()


@dataclasses.dataclass
class Built:
  parts: dict                      # {'train': run(n), 'eval': ..., 'pipeline': ...}
  info: dict = dataclasses.field(default_factory=dict)  # fields for the row
  after_first: Callable[[], dict] | None = None   # more fields, once the first calls compiled


@dataclasses.dataclass
class Contender:
  who: str                         # 'peak', 'jax:winograd', 'jax:xla:shard_map', 'torch_eager'
  build: Callable[[], Built]
  torch_compile: bool = False      # its first calls compile: bounded, on their own allowance


def steps_for(step_s: float, min_repeat_s: float, most: int = 100_000) -> int:
  """Steps that last at least `min_repeat_s` at `step_s` each."""
  return int(min(max(math.ceil(min_repeat_s / max(step_s, 1e-9)), 1), most))


def prepare(run, *, warmup: int, steps: int, min_repeat_s: float, guard=contextlib.nullcontext):
  """The first two calls of `run` (the first compiles), then `warmup` untimed repeats, sized
  to last `min_repeat_s` from the timing so far unless `steps` fixes it. Returns its timing."""
  before = CACHE.snapshot()
  with guard():
    start = time.perf_counter()
    run(1)
    first = time.perf_counter() - start
    # The second call would compile again if the returned state's layout differed from the
    # replicated one (parallel.replicate avoids that, flax.jax_utils.replicate did not).
    start = time.perf_counter()
    run(1)
    second = time.perf_counter() - start
  hit = CACHE.hit(before)
  n = steps or steps_for(second, min_repeat_s)
  for _ in range(warmup):
    start = time.perf_counter()
    run(n)
    if not steps:
      n = steps_for((time.perf_counter() - start) / n, min_repeat_s)
  return {"run": run, "first_s": first, "second_s": second, "steps": n, "cache_hit": hit,
          "step_s": [], "faults": []}


def time_contenders(contenders: list[Contender], budget: Budget, *, repeats: int, warmup: int,
                    steps: int, min_repeat_s: float, compile_timeout: float = 0,
                    on_update=lambda records, others: None) -> tuple[dict, float | None]:
  """Prepares each contender in turn, then times all of them interleaved, one repeat of each in
  turn, so that the load of anything else on the machine falls on all alike.

  The torch.compile peers come in a second phase, after the others' repeats are done (a killed
  or slow compile leaves those rows whole); their repeats are interleaved with more of the
  others'. Returns ({who: record}, the CPU cores other processes used while timing). A record is
  {'parts': {part: timing}, 'info': {...}}, {'error': reason} or {'not_run': reason}; one with
  fewer than `repeats` repeats also has 'cut'. `on_update` is called after every contender and
  every round, so that what was measured can be written before anything else runs.
  """
  records, clock = {}, {"before": None, "others": None}
  phases = ([c for c in contenders if not c.torch_compile],
            [c for c in contenders if c.torch_compile])
  for p, phase in enumerate(phases):
    why = None
    for i, contender in enumerate(phase):
      why = budget.spent()
      if why:
        for rest in [*phase[i:], *(c for later in phases[p + 1:] for c in later)]:
          records[rest.who] = {"not_run": why}
        on_update(records, clock["others"])
        break
      if contender.torch_compile and budget.compile_spent():
        records[contender.who] = {"not_run": budget.compile_spent()}
        on_update(records, clock["others"])
        continue
      records[contender.who] = prepared(contender, budget, warmup, steps, min_repeat_s,
                                        compile_timeout)
      on_update(records, clock["others"])
    if any("parts" in records.get(c.who, {}) for c in phase):
      timed_rounds(records, budget, repeats, clock, on_update)
    if why:
      break
  return records, clock["others"]


def prepared(contender: Contender, budget: Budget, warmup: int, steps: int,
             min_repeat_s: float, compile_timeout: float) -> dict:
  """The contender built and its parts prepared: its record, or {'error': why}."""
  guard = ((lambda: bounded_compile(budget, compile_timeout)) if contender.torch_compile
           else contextlib.nullcontext)
  try:
    built = contender.build()
    record = {"parts": {}, "info": dict(built.info)}
    for part, run in built.parts.items():
      record["parts"][part] = prepare(run, warmup=warmup, steps=steps,
                                      min_repeat_s=min_repeat_s, guard=guard)
    if built.after_first is not None:
      record["info"].update(built.after_first())
    return record
  except Exception as e:  # pylint: disable=broad-except
    # One line: Inductor's errors carry the whole graph after the first.
    lines = str(e).strip().splitlines() or [""]
    record = {"error": "OOM" if is_oom(e) else f"{type(e).__name__}: {lines[0]}"[:300]}
    print(f"  {contender.who}: unavailable: {record['error']}", flush=True)
    return record


def timed_rounds(records: dict, budget: Budget, repeats: int, clock: dict, on_update) -> None:
  """`repeats` rounds of one timed repeat of every prepared part, the budget checked before
  each round but the first (without one, their compiles were wasted)."""
  live = [timing for record in records.values() for timing in record.get("parts", {}).values()]
  if clock["before"] is None:
    clock["before"] = cpu_seconds()
  for done in range(repeats):
    why = budget.spent() if done else None
    if why:
      for record in records.values():
        if any(len(t["step_s"]) < repeats for t in record.get("parts", {}).values()):
          record["cut"] = f"{why} after {done} of {repeats} repeats"
      on_update(records, clock["others"])
      return
    for timing in live:
      run, n = timing["run"], timing["steps"]
      faults, start = minor_faults(), time.perf_counter()
      run(n)
      timing["step_s"].append((time.perf_counter() - start) / n)
      timing["faults"].append((minor_faults() - faults) / n)
    clock["others"] = other_cores(clock["before"], cpu_seconds())
    on_update(records, clock["others"])


class bounded_compile:  # pylint: disable=invalid-name
  """torch.compile's first calls: charged to --torch_compile_budget_s, not --time_budget_s,
  and stopped (TimeoutError in the main thread, by SIGALRM) after --torch_compile_timeout or
  what is left of that budget, whichever comes first."""

  def __init__(self, budget: Budget, timeout: float):
    left = budget.compile_left()
    limits = [s for s in (timeout, left) if s]
    self.seconds = max(math.ceil(min(limits)), 1) if limits else 0
    self.budget = budget

  def __enter__(self):
    self.compiling = self.budget.compiling()
    self.compiling.__enter__()
    if self.seconds:
      def expire(*_):
        raise TimeoutError(f"torch.compile took over {self.seconds} s (--torch_compile_timeout"
                           " or what was left of --torch_compile_budget_s)")
      self.previous = signal.signal(signal.SIGALRM, expire)
      signal.alarm(self.seconds)

  def __exit__(self, *exc):
    if self.seconds:
      signal.alarm(0)
      signal.signal(signal.SIGALRM, self.previous)
    self.compiling.__exit__(*exc)


def minor_faults() -> int:
  """Page faults of this process so far: memory it touched for the first time (or again,
  after giving it back), which the kernel had to map and zero."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def cpu_seconds() -> tuple[float, float, float] | None:
  """(wall clock, CPU seconds the whole machine was busy, CPU seconds of this process).

  Linux only (None elsewhere). Their differences tell how much of the CPU other processes took
  while we timed: on a shared 2-core machine that is what makes timings drift.
  """
  try:
    with open("/proc/stat") as f:
      ticks = [int(v) for v in f.readline().split()[1:9]]
  except OSError:
    return None
  busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return time.perf_counter(), busy, usage.ru_utime + usage.ru_stime


def other_cores(before, after) -> float | None:
  """CPU cores that other processes kept busy, on average, between two cpu_seconds() samples."""
  if before is None or after is None or after[0] <= before[0]:
    return None
  others = (after[1] - before[1]) - (after[2] - before[2])
  return max(others, 0.0) / (after[0] - before[0])


def wait_until_quiet(max_cores: float, timeout: float) -> float | None:
  """Waits (up to `timeout` s) until other processes use under `max_cores`; returns their use."""
  deadline, load = time.perf_counter() + timeout, None
  while True:
    before = cpu_seconds()
    time.sleep(2.0)
    load = other_cores(before, cpu_seconds())
    if load is None or load < max_cores or time.perf_counter() > deadline:
      return load


def stats(timing: dict, batch: int, prefix: str) -> dict:
  """Windows/s and ms/step (median, min, max, IQR) from one part's timing, with its compile."""
  out = {f"{prefix}_steps_per_repeat": timing["steps"], f"{prefix}_repeats": len(timing["step_s"]),
         f"{prefix}_compile_cache_hit": timing["cache_hit"]}
  if not timing["step_s"]:
    return dict(out, **{f"{prefix}_compile_s": max(timing["first_s"] - timing["second_s"], 0.0)})
  ms = np.array(timing["step_s"]) * 1e3
  med = float(np.median(ms))
  q1, q3 = np.percentile(ms, [25, 75])
  return dict(out, **{
      f"{prefix}_windows_per_s": batch / med * 1e3, f"{prefix}_ms": med,
      f"{prefix}_ms_min": float(ms.min()), f"{prefix}_ms_max": float(ms.max()),
      f"{prefix}_ms_iqr": float(q3 - q1),
      f"{prefix}_page_faults_per_step": float(np.median(timing["faults"])),
      # The first call less one step: what compiling cost.
      f"{prefix}_compile_s": max(timing["first_s"] - med / 1e3, 0.0)})


def peak_size() -> int:
  return _PEAK_SIZE.value or (2048 if jax.default_backend() == "cpu" else 8192)


def matmul_run(dtype: str, size: int, precision: str = "default"):
  """run(n): n jitted square matmuls in `dtype` and `precision` on the default device. Its
  FLOP/s, timed among the model's steps, is the MFU denominator: the same device, numerics and
  machine load."""
  key_a, key_b = jax.random.split(jax.random.key(0))
  a = jax.random.normal(key_a, (size, size), dtype)
  b = jax.random.normal(key_b, (size, size), dtype)
  matmul = jax.jit(train.with_matmul_precision(jnp.matmul, precision))

  def run(n):
    for _ in range(n):
      out = matmul(a, b)
    out.block_until_ready()

  return run


# ---------------------------------------------------------------------------------------------
# The contenders.


def jax_contender(config, batch: int, n_dev: int, mode: str):
  """build() for the trainer's mapped train and eval steps and the input pipeline."""

  def build():
    steps = jax_steps.mapped_steps(config, batch, n_dev, mode, _SPLIT.value)

    def xla_flops():
      try:
        flops = steps.train_flops()  # per device, for its share of the batch
      except Exception as e:  # pylint: disable=broad-except
        # A backend without cost analysis loses this number, not the row's timings.
        return {"train_flop_per_window_xla": None,
                "xla_cost_analysis_error": f"{type(e).__name__}: {e}"[:200]}
      return {"train_flop_per_window_xla": flops / (batch // n_dev) if flops else None}

    return Built({"train": steps.run_train, "eval": steps.run_eval,
                  "pipeline": steps.run_pipeline}, after_first=xla_flops)

  return build


def torch_modules():
  """(torch, torch_reference), imported on first use since torch is optional; None without."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
    import torch_reference  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return torch, torch_reference


def torch_skip_reason() -> str | None:
  """Why the PyTorch peers cannot run beside JAX here, or None."""
  modules = torch_modules()
  if modules is None:
    return "torch not installed: peer skipped"
  platform_, device = jax.default_backend(), modules[1].default_device()
  if (platform_ == "gpu") != (device == "cuda"):
    return f"JAX runs on {platform_}, torch on {device}: peer skipped"
  return None


PEERS = ("torch_eager", "torch_tuned", "torch_compile")


def torch_contender(config, batch: int, peer: str, layout: dict):
  """build() for one PyTorch peer: the authors'-style eager one, the tuned eager one, or
  torch.compile of the tuned one. `layout` caches the tuned peers' faster layout per setting."""

  def build():
    torch, ref = torch_modules()
    precision = ref.set_matmul_precision(config.get("matmul_precision", "default"))
    device = ref.default_device()
    torch.manual_seed(0)
    if peer == "torch_eager":
      train_step, eval_step = ref.make_steps(ref.build(config, device), config, batch, device)
      info = {}
    else:
      if not layout:
        layout["channels_last"], layout["torch_layout_s"] = ref.faster_layout(config, batch,
                                                                               device)
      torch.manual_seed(0)
      train_step, eval_step, info = ref.tuned_steps(
          ref.build(config, device), config, batch, device,
          channels_last=layout["channels_last"],
          compile_mode="max-autotune-no-cudagraphs" if peer == "torch_compile" else None)
      info["torch_layout_s"] = layout["torch_layout_s"]

    def runner(step):
      def run(n):
        for _ in range(n):
          step()
        ref.sync(device)
      return run

    return Built({"train": runner(train_step), "eval": runner(eval_step)},
                 {**precision, **info})

  return build


# ---------------------------------------------------------------------------------------------
# One setting → rows.


def contenders_of(config, dtype: str, batch: int, n_dev: int, impls: list[str],
                  peers: list[str], precision: str) -> list[Contender]:
  """The peak first (every MFU needs it), then the JAX impls × mappings, then the peers."""
  size = peak_size()
  out = [Contender("peak", lambda: Built({"matmul": matmul_run(dtype, size, precision)}))]
  modes = [m for m in _PARALLELISM.value if m != "shard_map" or n_dev == jax.local_device_count()]
  for impl in dict.fromkeys(models.resolve_conv_impl(i) for i in impls):
    for mode in modes:
      who = f"jax:{impl}" + ("" if mode == "pmap" else f":{mode}")
      out.append(Contender(who, jax_contender(with_model(config, dtype, impl, precision), batch,
                                              n_dev, mode)))
  layout = {}
  for peer in peers if n_dev == 1 else ():
    out.append(Contender(peer, torch_contender(with_model(config, dtype, impls[0], precision),
                                               batch, peer, layout),
                         torch_compile=peer == "torch_compile"))
  return out


def identity(who: str) -> dict:
  parts = who.split(":")
  if parts[0] != "jax":
    return {"impl": who, "parallelism": None, "peer": True}
  return {"impl": parts[1], "parallelism": parts[2] if len(parts) > 2 else "pmap", "peer": False}


def setting_rows(records: dict, base: dict, flops: float, size: int, n_dev: int,
                 sheet: float | None, others: float | None) -> list[dict]:
  """The rows of one setting from what has been measured of it so far."""
  base = dict(base, other_cores_during_timing=others)
  peak = records.get("peak", {}).get("parts", {}).get("matmul", {}).get("step_s")
  peak = 2 * size ** 3 / float(np.median(peak)) * n_dev if peak else None
  rows = []
  for who, record in records.items():
    if who == "peak":
      continue
    row = dict(base, **identity(who))
    if "parts" not in record:
      rows.append(dict(row, **record))  # its error or why it was not run
      continue
    row.update(record["info"], forward_mflop_per_window=flops / 1e6,
               train_flop_per_window=3 * flops,
               peak_tflops=peak / 1e12 if peak else None,
               datasheet_tflops=sheet * n_dev if sheet else None)
    if "cut" in record:
      row["cut"] = record["cut"]
    for part in ("train", "eval"):
      if part in record["parts"]:
        row.update(stats(record["parts"][part], base["batch_size"], part))
      rate = row.get(f"{part}_windows_per_s")
      factor = 3 if part == "train" else 1
      row[f"{part}_tflops"] = rate * factor * flops / 1e12 if rate else None
    xla = row.get("train_flop_per_window_xla")
    row["train_tflops_xla"] = (row["train_windows_per_s"] * xla / 1e12
                               if xla and row["train_tflops"] else None)
    row["xla_over_analytic_flops"] = xla / (3 * flops) if xla else None
    for key, tflops in (("mfu", "train_tflops"), ("eval_mfu", "eval_tflops"),
                        ("mfu_xla", "train_tflops_xla")):
      row[key] = row[tflops] * 1e12 / peak if row[tflops] and peak else None
    row["mfu_datasheet"] = (row["train_tflops"] / row["datasheet_tflops"]
                            if row["train_tflops"] and sheet else None)
    if "pipeline" in record["parts"]:
      pipe = stats(record["parts"]["pipeline"], base["batch_size"], "pipeline")
      row["pipeline_windows_per_s"] = pipe.get("pipeline_windows_per_s")
      row["pipeline_steps_per_repeat"] = pipe["pipeline_steps_per_repeat"]
      if row.get("train_windows_per_s") and row["pipeline_windows_per_s"]:
        row["pipeline_over_train"] = row["pipeline_windows_per_s"] / row["train_windows_per_s"]
    rows.append(row)
  add_ratios(rows)
  return rows


def measure(label: str, config, dtype: str, batch: int, n_dev: int, impls: list[str],
            peers: list[str], precision: str, budget: Budget, machine: dict,
            emit=lambda rows: None) -> list[dict]:
  """Rows for the JAX impls (and, on one device, the peers) of one setting, timed together;
  `emit(rows)` gets them after every contender and every round of repeats."""
  device_kind = jax.devices()[0].device_kind
  base = {"config": label, "dataset": config.dataset, "variant": config.model.backbone + "/" +
          config.model.attention, "dtype": dtype, "matmul_precision": precision,
          "batch_size": batch, "devices": n_dev, "device": device_kind,
          "platform": jax.default_backend(), **machine}
  flops = summary.forward_flops(models.create_model(with_model(config, dtype, impls[0])),
                               config.input_shape)
  size, sheet = peak_size(), datasheet_tflops(device_kind, dtype, precision)
  contenders = contenders_of(config, dtype, batch, n_dev, impls, peers, precision)
  if _QUIET_WAIT.value and not budget.spent():
    waited = wait_until_quiet(_QUIET_CORES.value, _QUIET_WAIT.value)
    print(f"  other processes use {fmt(waited, '.2f')} cores before timing", flush=True)
  rows_of = lambda records, others: setting_rows(records, base, flops, size, n_dev, sheet,
                                                 others)
  records, others = time_contenders(
      contenders, budget, repeats=_REPEATS.value, warmup=_WARMUP.value, steps=_STEPS.value,
      min_repeat_s=_MIN_REPEAT.value, compile_timeout=_TORCH_COMPILE_TIMEOUT.value,
      on_update=lambda records, others: emit(rows_of(records, others)))
  if others is not None and others > _QUIET_CORES.value:
    print(f"  WARNING: other processes used {others:.2f} CPU cores while this was timed; "
          "rates are lower than on an idle machine (PyTorch's OpenMP loses most).", flush=True)
  if "error" in records.get("peak", {}):
    raise RuntimeError(f"The {size}² matmul failed: {records['peak']['error']}")
  rows = rows_of(records, others)
  peak = next((r["peak_tflops"] for r in rows if r.get("peak_tflops")), None)
  if peak:
    print(f"  matmul peak ({size}×{size} @ {size}×{size}, {dtype}, median, interleaved with the "
          f"steps): {peak / n_dev:.4f} TFLOP/s per device", flush=True)
  return rows


def add_ratios(rows: list[dict]) -> None:
  """JAX / peer windows/s on the same setting, for train and eval, into each JAX row."""
  peers = {r["impl"]: r for r in rows if r["peer"]}
  for row in rows:
    if row["peer"]:
      continue
    for name, peer in peers.items():
      for part in ("train", "eval"):
        mine, theirs = row.get(f"{part}_windows_per_s"), peer.get(f"{part}_windows_per_s")
        if mine and theirs:
          row[f"{part}_over_{name}"] = mine / theirs


# ---------------------------------------------------------------------------------------------
# Reporting.


def versions() -> dict:
  out = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
         "python": platform.python_version(), "device": jax.devices()[0].device_kind,
         "platform": jax.default_backend(), "local_devices": jax.local_device_count(),
         "cpu_count": os.cpu_count(), "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}
  modules = torch_modules()
  if modules is None:
    out["torch"] = None
  else:
    out.update(modules[1].versions())
  return out


def fmt(value, spec=".1f") -> str:
  return "-" if value is None else format(value, spec)


def print_rows(rows: list[dict]) -> None:
  print(table(rows))


def table(rows: list[dict]) -> str:
  """The rows as a Markdown table: one line per contender of each setting."""
  head = ("config", "numerics", "batch", "dev", "impl", "train win/s", "ms/step [min-max]",
          "eval win/s", "ms/step [min-max]", "TFLOP/s", "MFU (measured peak)", "MFU (XLA FLOPs)",
          "MFU (datasheet)", "compile s", "vs peer", "others' cores")
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    numerics_ = f"{r.get('dtype', '-')}/{r.get('matmul_precision', 'default')}"
    impl = (r.get("impl") or r.get("contender", "-")) + (
        f" ({r['parallelism']})" if r.get("parallelism") not in (None, "pmap") else "") + (
        " (cut)" if "cut" in r else "")
    if "error" in r or "not_run" in r:
      why = f"unavailable: {r['error']}" if "error" in r else f"not run: {r['not_run']}"
      lines.append(f"| {r['config']} | {numerics_} | {r['batch_size']} | {r.get('devices', '-')} "
                   f"| {impl} | {why} |")
      continue
    spread = lambda p: (f"{fmt(r.get(p + '_ms'))} [{fmt(r.get(p + '_ms_min'), '.0f')}-"
                        f"{fmt(r.get(p + '_ms_max'), '.0f')}]")
    ratios = ", ".join(f"{k.split('_over_')[1]} ×{v:.2f} ({k.split('_')[0]})"
                       for k, v in r.items() if "_over_torch" in k)
    if r.get("contender") == "trainer":  # its own bare step, host cost and epoch boundary
      ratios = (f"loop_efficiency {fmt(r.get('loop_efficiency'), '.2f')}, host "
                f"{fmt(r.get('host_us_per_step'), '.0f')} µs/step, eval {fmt(r.get('eval_s'), '.2f')}"
                f" s, checkpoint {fmt(r.get('checkpoint_s'), '.2f')} s")
    cells = (r["config"], numerics_, r["batch_size"], r["devices"], impl,
             fmt(r.get("train_windows_per_s", r.get("trainer_windows_per_s"))), spread("train"),
             fmt(r.get("eval_windows_per_s")), spread("eval"),
             fmt(r.get("train_tflops"), ".4f"), fmt(r.get("mfu"), ".1%"),
             fmt(r.get("mfu_xla"), ".1%"), fmt(r.get("mfu_datasheet"), ".1%"),
             fmt(r.get("train_compile_s"), ".1f"),
             ratios or "-", fmt(r.get("other_cores_during_timing"), ".2f"))
    lines.append("| " + " | ".join(map(str, cells)) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  # Before the first computation, which starts JAX's threads (host_memory explains why).
  kept = _KEEP_FREED_MEMORY.value and host_memory.keep_freed_memory_on_cpu()
  if _CPU_DEVICES.value:
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
  if not (_BARE.value or _TRAINER.value):
    raise app.UsageError("--nobare without --trainer: nothing to time.")
  for flag in (_MIN_REPEAT, _TORCH_COMPILE_BUDGET, _TIME_BUDGET):
    if flag.value < 0:
      raise app.UsageError(f"--{flag.name}={flag.value:g}: must be 0 or more.")
  CACHE.install()
  info = dict(versions(), freed_memory_kept=kept)
  print("versions: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
  # What a datasheet peak assumes of the GPU, in every row (None off a GPU).
  smi = peaks.nvidia_smi() if jax.default_backend() == "gpu" else {}
  machine = {"nvidia_smi_clocks_max_sm": smi.get("nvidia_smi_clocks_max_sm"),
             "nvidia_smi_power_limit": smi.get("nvidia_smi_power_limit")}
  configs = load_configs()
  peers = []
  if _TORCH.value:
    skipped = torch_skip_reason()
    if skipped:
      print(skipped)
    else:
      peers = [p for p, on in zip(PEERS, (True, _TORCH_TUNED.value, _TORCH_COMPILE.value)) if on]
  for label, config in configs:
    flops = summary.forward_flops(models.create_model(config), config.input_shape)
    print(f"{label}: input {tuple(config.input_shape)}, {config.num_classes} classes, "
          f"forward {flops / 1e6:,.0f} MFLOP/window (train step counted as 3× = "
          f"{3 * flops / 1e6:,.0f})")
    if config.dataset.startswith("opportunity") and tuple(config.input_shape) != (64, 107):
      authors = config.copy_and_resolve_references()
      authors.input_shape = (64, 107)  # the classes are already the paper's 17 (or :challenge's 18)
      print(f"  (at the authors' 107-channel shape: "
            f"{summary.forward_flops(models.create_model(authors), (64, 107)) / 1e6:,.0f} "
            "MFLOP/window)")
  rows = previous_rows()
  budget = Budget(_TIME_BUDGET.value, _TORCH_COMPILE_BUDGET.value)
  with_info = lambda new: [dict(row, versions=info) for row in new]
  for label, config in configs if _BARE.value else ():
    impls = _CONV_IMPLS.value or [config.model.conv_impl]
    for dtype, precision in numerics(config):
      for batch in map(int, _BATCH_SIZES.value):
        for n_dev in device_counts():
          print(f"== {label} {dtype}/{precision} batch {batch} on {n_dev} device(s): "
                f"{', '.join(impls)}", flush=True)
          # Written as each contender is measured, so a run killed midway keeps its rows.
          new = measure(label, config, dtype, batch, n_dev, impls, peers, precision, budget,
                        machine, emit=lambda part: write_json(rows + with_info(part)))
          gc.collect()  # an OOM setting's buffers go before the next one allocates
          print_rows(new)
          rows.extend(with_info(new))
          write_json(rows)
  if _TRAINER.value:
    for batch in map(int, _BATCH_SIZES.value):
      for label, config in configs:
        why = budget.spent()
        new = ([{"config": label, "dataset": config.dataset, "contender": "trainer",
                 "batch_size": batch, "impl": "trainer", "peer": False, "not_run": why}]
               if why else trainer_bench.rows([(label, config)], batch,
                                              host_windows=TRAINER_HOST_STEPS * batch))
        rows.extend(with_info(new))
        write_json(rows)
  print("\nAll rows:")
  print_rows(rows)
  pipe = [r for r in rows if r.get("pipeline_over_train") and r["dataset"] == "pamap2"]
  for r in pipe:
    print(f"input pipeline on {r['config']} ({r['dtype']}, batch {r['batch_size']}, "
          f"{r['impl']}): {r['pipeline_windows_per_s']:,.0f} windows/s = "
          f"{r['pipeline_over_train']:,.0f}× the train step (needs ≥ 10×)")
  if _JSON.value:
    print(f"wrote {len(rows)} rows to {_JSON.value}")


def previous_rows() -> list[dict]:
  """With --append, the rows already in --json (a sweep split over several invocations)."""
  if _APPEND.value and _JSON.value and pathlib.Path(_JSON.value).exists():
    return json.loads(pathlib.Path(_JSON.value).read_text())
  return []


def write_json(rows: list[dict]) -> None:
  """--json and --markdown, each replaced whole (a temporary file renamed over it), so that a
  process killed while writing leaves the previous version, never half a file."""
  if _JSON.value:
    write_atomic(pathlib.Path(_JSON.value), json.dumps(rows, indent=1))
  if _MARKDOWN.value:
    write_atomic(pathlib.Path(_MARKDOWN.value), table(rows) + "\n")


def write_atomic(path: pathlib.Path, text: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_text(text)
  os.replace(tmp, path)


if __name__ == "__main__":
  # Accept GNU-style --no-torch as well as absl's --notorch.
  app.run(main, argv=[a.replace("--no-", "--no", 1) if a.startswith("--no-") else a
                      for a in sys.argv])
