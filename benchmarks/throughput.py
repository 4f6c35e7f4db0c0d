r"""Training and evaluation throughput of DanHAR, with MFU and a PyTorch peer, in one process.

  python benchmarks/throughput.py --config=configs/wisdm.py --batch_sizes=64 \
      --dtypes=float32 --json=benchmarks/results/cpu.json
  python benchmarks/throughput.py --configs=wisdm,opportunity,pamap2 --batch_sizes=64,256
  python benchmarks/throughput.py --config=configs/pamap2.py --config.model.conv_impl=xla

What is timed, for every (config, dtype, batch size, device count, conv impl):

- the trainer's own steps: `train.train_step` and `train.eval_step` mapped with
  `parallel.Parallel('pmap').map` over a `TrainState` from `train.create_train_state`,
  replicated, exactly as `train.Trainer` runs them. The batch is already on the device(s); each
  timed repeat runs `--steps` steps and then blocks on the outputs. The first two calls (the
  compile plus two steps) are reported apart as `compile_s`, never mixed into the rates;
- the input pipeline alone: `input_pipeline.train_indices`, the per-device split of the indices
  and the mapped `train.gather` from the device-resident split, blocked. Training is input-bound
  only if this rate comes near the train step's, so its ratio to the train rate is reported;
- the peer: the same architecture in plain PyTorch eager (benchmarks/torch_reference.py), built
  from the same config with the same parameter count, Adam and batch, on the same device, and
  `torch.compile` of it where that works (its compile time is bounded by --torch_compile_timeout).

All contenders of one setting are timed interleaved, one repeat of each in turn, so the load of
anything else on the machine falls on all of them alike. Rates are the median over --repeats
after --warmup untimed repeats, with the min–max spread. FLOPs are analytic
(`summary.forward_flops`, conv and Dense multiply-accumulates × 2); a training step is counted
as 3× the forward (forward, and the two matmuls of the backward per layer). MFU divides the
achieved FLOP/s by the rate of a large jitted matmul in the same dtype on the same device, timed
interleaved with the steps. Each row also records the CPU cores other processes used meanwhile
(`other_cores_during_timing`): on a shared machine that, more than anything, moves the numbers.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pathlib
import platform
import resource
import signal
import sys
import time

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
_TIME_BUDGET = flags.DEFINE_float("time_budget_s", 0, "If > 0, settings that would start after "
                                  "this many seconds are recorded as not run, not timed.")
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
_STEPS = flags.DEFINE_integer("steps", 0, "Steps per timed repeat; 0 picks 1 on CPU, 20 on "
                              "accelerators (where one step is too short to time alone).")
_SPLIT = flags.DEFINE_integer("split_windows", 4096, "Windows in the synthetic in-memory split "
                              "the batches are gathered from.")
_PEAK_SIZE = flags.DEFINE_integer("peak_size", 0, "Side of the square matmul that measures the "
                                  "peak; 0 picks 2048 on CPU (~0.1-0.3 s), 8192 elsewhere.")
_TORCH = flags.DEFINE_boolean("torch", True, "Time the PyTorch peer (if torch is installed).")
_TORCH_COMPILE = flags.DEFINE_boolean("torch_compile", False, "Also time torch.compile.")
_TORCH_COMPILE_TIMEOUT = flags.DEFINE_integer("torch_compile_timeout", 300, "Seconds allowed "
                                              "for torch.compile's first call.")
_QUIET_CORES = flags.DEFINE_float("quiet_cores", 0.25, "CPU cores other processes may use "
                                   "before the machine counts as busy.")
_QUIET_WAIT = flags.DEFINE_integer("quiet_wait", 0, "Before timing each setting, wait up to this "
                                   "many seconds for other processes to go quiet (CPU).")
_JSON = flags.DEFINE_string("json", "", "Write the rows here as a JSON list.")
_TRAINER = flags.DEFINE_boolean("trainer", False, "Also time the `trainer` contender, the loop "
                                "users run (benchmarks/trainer_bench.py), per config and batch.")
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


def interleaved(runs: dict, repeats: int, warmup: int, steps: int) -> dict:
  """Times each `run(n)` (n steps, blocked) in turn, `repeats` times; first calls apart.

  Returns ({name: {'first_s': seconds of the first two calls, 'step_s': [per-step seconds of each
  repeat]}} or {name: {'error': reason}} if its first call failed, the CPU cores other
  processes used during the timed repeats).
  """
  out, live = {}, {}
  for name, run in runs.items():
    start = time.perf_counter()
    try:
      # Two calls, both outside the timed repeats: the first compiles; the second would
      # compile again if the returned state's layout differed from the replicated one
      # (parallel.replicate avoids that, flax.jax_utils.replicate did not).
      run(1)
      run(1)
    except Exception as e:  # pylint: disable=broad-except
      out[name] = {"error": "OOM" if is_oom(e) else f"{type(e).__name__}: {e}"[:300]}
      print(f"  {name}: unavailable: {out[name]['error']}", flush=True)
      continue
    out[name] = {"first_s": time.perf_counter() - start, "step_s": []}
    live[name] = run
  for _ in range(warmup):
    for run in live.values():
      run(steps)
  before = cpu_seconds()
  for _ in range(repeats):
    for name, run in live.items():
      faults, start = minor_faults(), time.perf_counter()
      run(steps)
      out[name]["step_s"].append((time.perf_counter() - start) / steps)
      out[name].setdefault("faults", []).append((minor_faults() - faults) / steps)
  return out, other_cores(before, cpu_seconds())


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
  """Windows/s and ms/step (median, min, max, IQR) from one contender's timing."""
  if "error" in timing:
    return {f"{prefix}_error": timing["error"]}
  ms = np.array(timing["step_s"]) * 1e3
  med = float(np.median(ms))
  q1, q3 = np.percentile(ms, [25, 75])
  return {f"{prefix}_windows_per_s": batch / med * 1e3, f"{prefix}_ms": med,
          f"{prefix}_ms_min": float(ms.min()), f"{prefix}_ms_max": float(ms.max()),
          f"{prefix}_ms_iqr": float(q3 - q1),
          f"{prefix}_page_faults_per_step": float(np.median(timing["faults"])),
          f"{prefix}_compile_s": max(timing["first_s"] - 2 * med / 1e3, 0.0)}


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
# The JAX contenders: the trainer's pmapped steps.


def synthetic_split(config, n: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  return {"signal": rng.standard_normal((n, *config.input_shape), np.float32),
          "label": rng.integers(0, config.num_classes, n).astype(np.int32)}


def jax_runs(config, batch: int, n_dev: int, mode: str = "pmap") -> dict:
  """{'train', 'eval', 'pipeline'}: run(n) closures over the trainer's mapped functions.

  Mirrors `train.Trainer` on the first `n_dev` local devices (pmap maps over the leading axis,
  so replicating to n devices is all it takes to use n; shard_map takes all local devices).
  """
  train.check_batch_divides(batch, n_dev, "--batch_sizes")
  if mode == "shard_map" and n_dev != jax.local_device_count():
    raise ValueError(f"shard_map maps over all {jax.local_device_count()} local devices, "
                     f"not {n_dev}")
  devices = jax.local_devices()[:n_dev]
  par = parallel.Parallel(mode)
  replicate = lambda tree: par.replicate(tree, devices)
  model = models.create_model(config, bn_axis_name=parallel.AXIS)
  n_split = max(_SPLIT.value, batch)
  data = replicate(synthetic_split(config, n_split))
  precision = config.get("matmul_precision", "default")
  p_gather = par.map(train.gather, in_replicated=(True, False), out_replicated=False)
  p_train = par.map(train.with_matmul_precision(train.train_step, precision),
                    in_replicated=(True, False), out_replicated=(True, True), donate_argnums=(0,))
  p_eval = par.map(train.with_matmul_precision(train.eval_step, precision),
                   in_replicated=(True, False), out_replicated=True)
  steps_per_epoch = n_split // batch
  box = {"state": replicate(train.create_train_state(config, model, steps_per_epoch))}

  def device_batch(step: int):
    epoch, s = divmod(step, steps_per_epoch)
    idx = input_pipeline.train_indices(config.seed, epoch, s, n_split, batch)
    return p_gather(data, par.shard(idx.reshape(n_dev, -1)))

  train_batch = device_batch(0)
  eval_batch = dict(train_batch, mask=par.shard(np.ones((n_dev, batch // n_dev), bool)))
  counter = iter(range(10 ** 9))

  def run_train(n):
    for _ in range(n):
      box["state"], metrics = p_train(box["state"], train_batch)
    jax.block_until_ready((box["state"], metrics))

  def run_eval(n):
    for _ in range(n):
      metrics = p_eval(box["state"], eval_batch)
    jax.block_until_ready(metrics)

  def run_pipeline(n):
    for _ in range(n):
      out = device_batch(next(counter))
    jax.block_until_ready(out)

  return {"train": run_train, "eval": run_eval, "pipeline": run_pipeline}


# ---------------------------------------------------------------------------------------------
# The PyTorch peer.


def torch_runs(config, batch: int, compile_: bool) -> tuple[dict, dict]:
  """({'torch_eager/train': run, ...}, info), or ({}, info with the reason it is skipped)."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
    import torch_reference  # pylint: disable=import-outside-toplevel
  except ImportError:
    return {}, {"skipped": "torch not installed: peer skipped"}
  precision = torch_reference.set_matmul_precision(config.get("matmul_precision", "default"))
  platform_ = jax.default_backend()
  device = torch_reference.default_device()
  if (platform_ == "gpu") != (device == "cuda"):
    return {}, {"skipped": f"JAX runs on {platform_}, torch on {device}: peer skipped"}
  runs = {}
  for peer in ("torch_eager",) + (("torch_compile",) if compile_ else ()):
    torch.manual_seed(0)
    model = torch_reference.build(config, device)
    if peer == "torch_eager":  # the authors' style
      train_step, eval_step = torch_reference.make_steps(model, config, batch, device)
    else:
      train_step, eval_step, _ = torch_reference.tuned_steps(
          model, config, batch, device, compile_mode="max-autotune-no-cudagraphs")
    bound = peer == "torch_compile"
    runs[f"{peer}/train"] = repeat(train_step, device, bound)
    runs[f"{peer}/eval"] = repeat(eval_step, device, bound)
  return runs, {**torch_reference.versions(), **precision}


def repeat(step, device: str, bounded: bool):
  """run(n) for a PyTorch step; the first call is bounded in time if it compiles."""
  import torch_reference  # pylint: disable=import-outside-toplevel
  first = [True]

  def run(n):
    if first[0] and bounded:
      first[0] = False
      with alarm(_TORCH_COMPILE_TIMEOUT.value):
        step()
      return
    first[0] = False
    for _ in range(n):
      step()
    torch_reference.sync(device)

  return run


class alarm:  # pylint: disable=invalid-name
  """Raises TimeoutError in the main thread after `seconds` (bounds torch.compile)."""

  def __init__(self, seconds: int):
    self.seconds = seconds

  def __enter__(self):
    def expire(*_):
      raise TimeoutError(f"torch.compile took over {self.seconds} s")
    self.previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(self.seconds)

  def __exit__(self, *exc):
    signal.alarm(0)
    signal.signal(signal.SIGALRM, self.previous)


# ---------------------------------------------------------------------------------------------
# One setting → rows.


def measure(label: str, config, dtype: str, batch: int, n_dev: int, impls: list[str],
            torch_ok: bool, precision: str = "default") -> tuple[list[dict], dict]:
  """Rows for the JAX impls (and, on one device, the peers) of one setting, timed together."""
  device_kind = jax.devices()[0].device_kind
  base = {"config": label, "dataset": config.dataset, "variant": config.model.backbone + "/" +
          config.model.attention, "dtype": dtype, "matmul_precision": precision,
          "batch_size": batch, "devices": n_dev, "device": device_kind,
          "platform": jax.default_backend()}
  flops = summary.forward_flops(models.create_model(with_model(config, dtype, impls[0])),
                               config.input_shape)
  runs, meta = {}, {}
  modes = [m for m in _PARALLELISM.value if m != "shard_map" or n_dev == jax.local_device_count()]
  for impl in dict.fromkeys(models.resolve_conv_impl(i) for i in impls):
    for mode in modes:
      who = f"jax:{impl}" + ("" if mode == "pmap" else f":{mode}")
      try:
        for part, run in jax_runs(with_model(config, dtype, impl, precision), batch, n_dev,
                                  mode).items():
          runs[f"{who}/{part}"] = run
      except Exception as e:  # pylint: disable=broad-except
        meta[who] = "OOM" if is_oom(e) else f"{type(e).__name__}: {e}"[:300]
  if torch_ok and n_dev == 1:
    try:
      peer_runs, info = torch_runs(with_model(config, dtype, impls[0], precision), batch,
                                   _TORCH_COMPILE.value)
    except Exception as e:  # pylint: disable=broad-except
      peer_runs, info = {}, {"skipped": "OOM" if is_oom(e) else f"{type(e).__name__}: {e}"[:300]}
    runs.update(peer_runs)
    meta.update(info)
  size = peak_size()
  runs["peak/matmul"] = matmul_run(dtype, size, precision)
  steps = _STEPS.value or (1 if jax.default_backend() == "cpu" else 20)
  if _QUIET_WAIT.value:
    waited = wait_until_quiet(_QUIET_CORES.value, _QUIET_WAIT.value)
    print(f"  other processes use {fmt(waited, '.2f')} cores before timing", flush=True)
  timing, others = interleaved(runs, _REPEATS.value, _WARMUP.value, steps)
  if others is not None and others > _QUIET_CORES.value:
    print(f"  WARNING: other processes used {others:.2f} CPU cores while this was timed; "
          "rates are lower than on an idle machine (PyTorch's OpenMP loses most).", flush=True)
  base["other_cores_during_timing"] = others
  if "error" in timing["peak/matmul"]:
    raise RuntimeError(f"The {size}² matmul failed: {timing['peak/matmul']['error']}")
  peak = 2 * size ** 3 / float(np.median(timing["peak/matmul"]["step_s"]))
  print(f"  matmul peak ({size}×{size} @ {size}×{size}, {dtype}, median of {_REPEATS.value}, "
        f"interleaved with the steps): {peak / 1e12:.4f} TFLOP/s per device", flush=True)
  peak *= n_dev
  sheet = datasheet_tflops(device_kind, dtype, precision)
  rows = []
  for who in dict.fromkeys(name.split("/")[0] for name in runs if name != "peak/matmul"):
    parts = who.split(":")
    row = dict(base, impl=parts[1] if len(parts) > 1 else parts[0],
               parallelism=(parts[2] if len(parts) > 2 else "pmap") if len(parts) > 1 else None,
               peer=not who.startswith("jax:"), forward_mflop_per_window=flops / 1e6,
               train_flop_per_window=3 * flops, peak_tflops=peak / 1e12,
               datasheet_tflops=sheet * n_dev if sheet else None)
    if row["peer"]:
      row.update({k: v for k, v in meta.items() if k.startswith("torch_allow")})
    for part in ("train", "eval"):
      if f"{who}/{part}" in timing:
        row.update(stats(timing[f"{who}/{part}"], batch, part))
      rate = row.get(f"{part}_windows_per_s")
      factor = 3 if part == "train" else 1
      row[f"{part}_tflops"] = rate * factor * flops / 1e12 if rate else None
    row["mfu"] = row["train_tflops"] * 1e12 / peak if row["train_tflops"] else None
    row["eval_mfu"] = row["eval_tflops"] * 1e12 / peak if row["eval_tflops"] else None
    row["mfu_datasheet"] = (row["train_tflops"] / row["datasheet_tflops"]
                            if row["train_tflops"] and sheet else None)
    if f"{who}/pipeline" in timing:
      pipe = stats(timing[f"{who}/pipeline"], batch, "pipeline")
      row["pipeline_windows_per_s"] = pipe.get("pipeline_windows_per_s")
      if row.get("train_windows_per_s") and row["pipeline_windows_per_s"]:
        row["pipeline_over_train"] = row["pipeline_windows_per_s"] / row["train_windows_per_s"]
    rows.append(row)
  for key, why in meta.items():
    if key.startswith("jax:"):
      parts = key.split(":")
      rows.append(dict(base, impl=parts[1], peer=False, error=why,
                       parallelism=parts[2] if len(parts) > 2 else "pmap"))
  add_ratios(rows)
  return rows, meta


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
  try:
    import torch_reference  # pylint: disable=import-outside-toplevel
    out.update(torch_reference.versions())
  except ImportError:
    out["torch"] = None
  return out


def fmt(value, spec=".1f") -> str:
  return "-" if value is None else format(value, spec)


def print_rows(rows: list[dict]) -> None:
  print(table(rows))


def table(rows: list[dict]) -> str:
  """The rows as a Markdown table: one line per contender of each setting."""
  head = ("config", "numerics", "batch", "dev", "impl", "train win/s", "ms/step [min-max]",
          "eval win/s", "ms/step [min-max]", "TFLOP/s", "MFU (measured peak)",
          "MFU (datasheet)", "compile s", "vs peer", "others' cores")
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    numerics_ = f"{r['dtype']}/{r.get('matmul_precision', 'default')}"
    impl = r["impl"] + (f" ({r['parallelism']})" if r.get("parallelism") not in (None, "pmap")
                        else "")
    if "error" in r or "not_run" in r:
      why = f"unavailable: {r['error']}" if "error" in r else f"not run: {r['not_run']}"
      lines.append(f"| {r['config']} | {numerics_} | {r['batch_size']} | {r['devices']} | "
                   f"{impl} | {why} |")
      continue
    spread = lambda p: (f"{fmt(r.get(p + '_ms'))} [{fmt(r.get(p + '_ms_min'), '.0f')}-"
                        f"{fmt(r.get(p + '_ms_max'), '.0f')}]")
    ratios = ", ".join(f"{k.split('_over_')[1]} ×{v:.2f} ({k.split('_')[0]})"
                       for k, v in r.items() if "_over_torch" in k)
    cells = (r["config"], numerics_, r["batch_size"], r["devices"], impl,
             fmt(r.get("train_windows_per_s")), spread("train"),
             fmt(r.get("eval_windows_per_s")), spread("eval"),
             fmt(r.get("train_tflops"), ".4f"), fmt(r.get("mfu"), ".1%"),
             fmt(r.get("mfu_datasheet"), ".1%"), fmt(r.get("train_compile_s"), ".1f"),
             ratios or "-", fmt(r.get("other_cores_during_timing"), ".2f"))
    lines.append("| " + " | ".join(map(str, cells)) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  # Before the first computation, which starts JAX's threads (host_memory explains why).
  kept = _KEEP_FREED_MEMORY.value and host_memory.keep_freed_memory_on_cpu()
  if _CPU_DEVICES.value:
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)
  info = dict(versions(), freed_memory_kept=kept)
  print("versions: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
  configs = load_configs()
  torch_ok = _TORCH.value
  if torch_ok and info.get("torch") is None:
    print("torch not installed: peer skipped")
    torch_ok = False
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
  started = time.perf_counter()
  for label, config in configs:
    impls = _CONV_IMPLS.value or [config.model.conv_impl]
    for dtype, precision in numerics(config):
      for batch in map(int, _BATCH_SIZES.value):
        for n_dev in device_counts():
          print(f"== {label} {dtype}/{precision} batch {batch} on {n_dev} device(s): "
                f"{', '.join(impls)}", flush=True)
          if _TIME_BUDGET.value and time.perf_counter() - started > _TIME_BUDGET.value:
            new = [{"config": label, "dataset": config.dataset, "dtype": dtype,
                    "matmul_precision": precision, "batch_size": batch, "devices": n_dev,
                    "impl": "all", "peer": False,
                    "not_run": f"--time_budget_s={_TIME_BUDGET.value:g} spent"}]
          else:
            new, meta = measure(label, config, dtype, batch, n_dev, impls, torch_ok, precision)
            if "skipped" in meta:
              print("  " + meta["skipped"])
            gc.collect()  # an OOM setting's buffers go before the next one allocates
          print_rows(new)
          rows.extend(dict(row, versions=info) for row in new)
          write_json(rows)  # after every setting, so a run cut short keeps what it measured
  if _TRAINER.value:
    for batch in map(int, _BATCH_SIZES.value):
      rows.extend(dict(r, versions=info) for r in trainer_bench.rows(configs, batch))
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
  if _JSON.value:
    path = pathlib.Path(_JSON.value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
  if _MARKDOWN.value:
    path = pathlib.Path(_MARKDOWN.value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table(rows) + "\n")


if __name__ == "__main__":
  # Accept GNU-style --no-torch as well as absl's --notorch.
  app.run(main, argv=[a.replace("--no-", "--no", 1) if a.startswith("--no-") else a
                      for a in sys.argv])
