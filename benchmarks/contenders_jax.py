"""The JAX contenders, each a `timing.Prepared` built from a Setting and its config.

- `block`: `train.Trainer.train_steps`, the device call `main.py` makes: up to K steps
  (config.steps_per_call) in one call, each gathering its batch from the device-resident split.
  The split has the config's real training size (synthetic values), since what a call costs may
  grow with it. This is the ceiling of `main.py`'s loop.
- `step`: the same with K = 1, one step per call.
- `latency`: batch-1 inference, one window per call, each call timed alone.
- `trainer` lives in trainer_bench.py: it runs the whole loop, with a block beside it.
"""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import plan
from benchmarks import timing
from danhar_jax import evaluators
from danhar_jax import models
from danhar_jax import parallel
from danhar_jax import summary
from danhar_jax import train

TEST_WINDOWS = 256  # the Trainer needs a test split; the block never evaluates it
RUNS_FOREVER = 10 ** 6  # epochs: a block contender never reaches the end of its run


def synthetic(n: int, shape, num_classes: int, seed: int) -> dict:
  """n windows of standard-normal signal of `shape` and uniform labels."""
  rng = np.random.default_rng(seed)
  return {"signal": rng.standard_normal((n, *shape), np.float32),
          "label": rng.integers(0, num_classes, n).astype(np.int32)}


def with_segments(config, test: dict) -> dict:
  """Test windows with a target segment each, for configs whose evaluators score localisation."""
  if any(s.name == "localization" for s in evaluators.scheduled(config.evaluators)):
    length, n = config.input_shape[0], len(test["label"])
    start = np.random.default_rng(2).integers(0, length - length // 4, n).astype(np.int32)
    test = dict(test, segment_start=start, segment_end=start + length // 4)
  return test


def splits(config, train_windows: int) -> tuple[dict, dict]:
  shape = tuple(config.input_shape)
  return (synthetic(max(train_windows, config.batch_size), shape, config.num_classes, 0),
          with_segments(config, synthetic(TEST_WINDOWS, shape, config.num_classes, 1)))


def train_windows(setting: plan.Setting, split_windows: int = 0) -> int:
  return split_windows or plan.TRAIN_WINDOWS[setting.config.partition(":")[0]]


class Block:
  """A Trainer on synthetic splits, and run(n): n of its train steps in its own device calls."""

  def __init__(self, config, n_train: int):
    config = config.copy_and_resolve_references()
    config.num_epochs = RUNS_FOREVER
    train_split, test_split = splits(config, n_train)
    self.trainer = t = train.Trainer(config, train_split, test_split)
    state = train.create_train_state(config, t.model, t.steps_per_epoch)
    self.pstate, self.tally, self.step = t.par.replicate(state), t.empty_tally, 0

  def run(self, n: int) -> None:
    t, end = self.trainer, self.step + n
    while self.step < end:
      done = t.block_end(self.step, stops=(end,))
      self.pstate, self.tally = t.train_steps(self.pstate, self.tally, self.step, done)
      self.step = done
      if done % t.steps_per_epoch == 0:  # the trainer, too, starts each epoch's tally afresh
        self.tally = t.empty_tally
    jax.block_until_ready((self.pstate, self.tally))


def block(setting: plan.Setting, config, split_windows: int = 0) -> timing.Prepared:
  if setting.contender == "step":
    config = config.copy_and_resolve_references()
    config.steps_per_call = 1
  b = Block(config, train_windows(setting, split_windows))
  info = {"steps_per_call": b.trainer.steps_per_call, "train_windows": b.trainer.n_train,
          "conv_impl_resolved": b.trainer.model.conv_impl,
          "split_mb": round(b.trainer.n_train * math.prod(config.input_shape) * 4 / 2 ** 20, 1)}
  return timing.Prepared(b.run, setting.batch, info,
                         finish=lambda: {**memory(), **cost(config, setting)})


def latency(setting: plan.Setting, config, split_windows: int = 0) -> timing.Prepared:
  del split_windows
  model = models.create_model(config)
  variables = models.init_variables(model, config.input_shape, config.seed)
  apply = jax.jit(train.with_matmul_precision(
      lambda v, x: model.apply(v, x, train=False), config.matmul_precision))
  x = jnp.asarray(synthetic(1, config.input_shape, config.num_classes, 0)["signal"])

  def run(n):
    for _ in range(n):
      out = apply(variables, x)
    out.block_until_ready()

  return timing.Prepared(run, 1, {"conv_impl_resolved": model.conv_impl}, finish=memory,
                         latency=True)


PREPARE = {"block": block, "step": block, "latency": latency}


def probe() -> dict:
  """Where this process's JAX runs."""
  device = jax.local_devices()[0]
  return {"platform": jax.default_backend(), "device": device.device_kind,
          "local_devices": jax.local_device_count()}


def memory() -> dict:
  """The device's peak bytes in use so far (GPU, TPU); {} where JAX reports none (CPU)."""
  stats = jax.local_devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return {"peak_memory_bytes": int(peak), "memory_kind": "device"} if peak else {}


def cost(config, setting: plan.Setting) -> dict:
  """XLA's FLOPs and bytes accessed for one train step on one device, and the analytic FLOPs.

  Compiled apart (a single mapped step on its own batch), since a block's while loop runs a
  trip count XLA cannot see.
  """
  forward = summary.forward_flops(models.create_model(config), config.input_shape)
  out = {"train_flop_per_window": 3.0 * forward}
  n_dev = jax.local_device_count()
  par = parallel.Parallel(setting.mapping)
  model = models.create_model(config, bn_axis_name=parallel.AXIS)
  state = par.replicate(train.create_train_state(config, model, 1))
  batch = par.replicate(synthetic(setting.batch // n_dev, config.input_shape,
                                  config.num_classes, 0))
  p_train = par.map(train.with_matmul_precision(train.train_step, config.matmul_precision),
                    in_replicated=(True, True), out_replicated=(True, True))
  try:
    analysis = p_train.lower(state, batch).compile().cost_analysis()
  except Exception as e:  # pylint: disable=broad-except
    return dict(out, xla_cost_error=f"{type(e).__name__}: {e}"[:200])
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per module
    analysis = analysis[0] if analysis else {}
  analysis = analysis or {}
  flops, bytes_ = analysis.get("flops"), analysis.get("bytes accessed")
  out["xla_flop_per_step"] = float(flops) if flops and flops > 0 else None
  out["xla_bytes_per_step"] = float(bytes_) if bytes_ and bytes_ > 0 else None
  return out


def matmul_tflops(numerics: str, seconds: float = 0.5) -> float:
  """TFLOP/s of a large square matmul in these numerics on one device: the measured peak that
  MFU is also reported against (2048² on a CPU, 8192² elsewhere)."""
  dtype, precision = plan.NUMERICS[numerics]
  size = 2048 if jax.default_backend() == "cpu" else 8192
  a, b = (jax.random.normal(k, (size, size), dtype) for k in jax.random.split(jax.random.key(0)))
  matmul = jax.jit(train.with_matmul_precision(jnp.matmul, precision))
  matmul(a, b).block_until_ready()
  times = []
  deadline = time.perf_counter() + seconds
  while not times or (time.perf_counter() < deadline and len(times) < 50):
    start = time.perf_counter()
    matmul(a, b).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2 * size ** 3 / float(np.median(times)) / 1e12
