"""The trainer's mapped steps on synthetic data, flag-free: what throughput.py times and what
trainer_bench.py runs as the bare step beside the real loop.

`train.train_step`, `train.eval_step` and `train.gather`, mapped with `parallel.Parallel(mode)`
over a replicated `train.create_train_state` on the first `n_dev` local devices, exactly as
`train.Trainer` runs them, fed from a device-resident synthetic split.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from danhar_jax import input_pipeline
from danhar_jax import models
from danhar_jax import parallel
from danhar_jax import train


def synthetic(n: int, shape, num_classes: int, seed: int) -> dict:
  """n windows of standard-normal signal of `shape` and uniform labels."""
  rng = np.random.default_rng(seed)
  return {"signal": rng.standard_normal((n, *shape), np.float32),
          "label": rng.integers(0, num_classes, n).astype(np.int32)}


@dataclasses.dataclass
class MappedSteps:
  """run(n) closures (n steps, then block) over the mapped steps, and what they close over."""
  p_train: Callable
  p_eval: Callable
  box: dict            # {'state': the replicated TrainState}, updated by run_train
  train_batch: dict
  eval_batch: dict
  run_train: Callable[[int], None]
  run_eval: Callable[[int], None]
  run_pipeline: Callable[[int], None]

  def train_flops(self) -> float | None:
    """FLOPs of one compiled train step per device, from XLA's cost analysis (None if XLA
    gives none). Compiles the step again, ahead of time: call it after the timed first call."""
    analysis = self.p_train.lower(self.box["state"], self.train_batch).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per module
      analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def mapped_steps(config, batch: int, n_dev: int, mode: str = "pmap", split_windows: int = 4096,
                 steps_per_epoch: int | None = None,
                 batch_flag: str = "--batch_sizes") -> MappedSteps:
  """The trainer's mapped steps on the first `n_dev` local devices (pmap maps over the leading
  axis, so replicating to n devices is all it takes to use n; shard_map takes all of them)."""
  train.check_batch_divides(batch, n_dev, batch_flag)
  if mode == "shard_map" and n_dev != jax.local_device_count():
    raise ValueError(f"shard_map maps over all {jax.local_device_count()} local devices, "
                     f"not {n_dev}")
  devices = jax.local_devices()[:n_dev]
  par = parallel.Parallel(mode)
  replicate = lambda tree: par.replicate(tree, devices)
  model = models.create_model(config, bn_axis_name=parallel.AXIS)
  n_split = max(split_windows, batch)
  data = replicate(synthetic(n_split, config.input_shape, config.num_classes, 0))
  precision = config.get("matmul_precision", "default")
  p_gather = par.map(train.gather, in_replicated=(True, False), out_replicated=False)
  p_train = par.map(train.with_matmul_precision(train.train_step, precision),
                    in_replicated=(True, False), out_replicated=(True, True), donate_argnums=(0,))
  p_eval = par.map(train.with_matmul_precision(train.eval_step, precision),
                   in_replicated=(True, False), out_replicated=True)
  split_steps = n_split // batch
  box = {"state": replicate(train.create_train_state(config, model,
                                                     steps_per_epoch or split_steps))}

  def device_batch(step: int):
    epoch, s = divmod(step, split_steps)
    idx = input_pipeline.train_indices(config.seed, epoch, s, n_split, batch)
    return p_gather(data, par.shard(idx.reshape(n_dev, -1)))

  train_batch = device_batch(0)
  # Put on the device once, laid out as the gathered batch: a host array here would be copied
  # to the device on every eval step, which the trainer's evaluation does not time.
  mask = jax.device_put(np.ones((n_dev, batch // n_dev), bool).reshape(
      train_batch["label"].shape), train_batch["label"].sharding)
  eval_batch = dict(train_batch, mask=mask)
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

  return MappedSteps(p_train, p_eval, box, train_batch, eval_batch, run_train, run_eval,
                     run_pipeline)
