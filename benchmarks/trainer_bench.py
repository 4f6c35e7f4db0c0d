r"""The `trainer` contender: the loop users run (`train.train_and_evaluate`), timed beside the
block (contenders_jax.Block) it is built from, and the loop's host cost alone.

  python -m benchmarks.trainer_bench --host_windows=102400,409600 --steps_per_call=32

- **the trainer** (`trainer()`, through the benchmark runner): the real loop on a synthetic
  split of the config's real training size, its epochs sized to last `epoch_s`. At every epoch
  end, before the evaluation, the block runs as many steps as the epoch had, in the same
  process, so the two are timed interleaved. `loop_efficiency` is the trainer's training
  windows/s (the epoch's wall time up to its evaluation) over the block's. The epoch boundary
  (evaluation, checkpoint save) is reported apart, in seconds.
- **host µs per step** (`--host`): `train.train_step` and `train.eval_step` are replaced by
  functions of the same pytrees that do near-zero work, so what is left is the loop's own host
  cost, averaged over whole epochs after the first, boundaries included. The windows are 1 × 1
  so that 409,600 of them fit in memory: the step never reads them.

Like main.py, the CLI keeps the host memory a step frees for the next one
(danhar_jax/host_memory.py); the runner's workers do the same.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time

import jax.numpy as jnp
import numpy as np

from benchmarks import contenders_jax
from benchmarks import model_config
from benchmarks import plan
from danhar_jax import checkpoints
from danhar_jax import host_memory
from danhar_jax import input_pipeline
from danhar_jax import metrics as metrics_lib
from danhar_jax import parallel
from danhar_jax import train

# Steps per timed epoch at the least: one-step epochs made PAMAP2's CPU loop_efficiency swing
# from 0.48 to 1.70 between epochs.
MIN_STEPS = 3
NULL_CLASSES = [17]  # the classes of the null steps' logits: set from the config being timed


def null_train_step(state, batch, class_weights=None):
  """The pytrees of `train.train_step` at near-zero cost: the state's step advances, the rest is
  returned as it came; the metrics are computed from all-zero logits."""
  labels = batch["label"]
  logits = jnp.zeros((labels.shape[0], NULL_CLASSES[0]), jnp.float32)
  loss = batch["signal"].reshape(labels.shape[0], -1)[:, 0]  # reads the batch, so it is gathered
  return state.replace(step=state.step + 1), metrics_lib.TrainMetrics.of(
      loss=loss, logits=logits, labels=labels).psum(parallel.AXIS)


def null_eval_step(state, batch):
  del state
  labels = batch["label"]
  logits = jnp.zeros((labels.shape[0], NULL_CLASSES[0]), jnp.float32)
  return metrics_lib.EvalMetrics.of(
      loss=jnp.zeros(labels.shape, jnp.float32), logits=logits, labels=labels,
      mask=batch["mask"], subject_onehot=batch.get("subject_onehot")).psum(parallel.AXIS)


@contextlib.contextmanager
def patched(module, **attrs):
  old = {k: getattr(module, k) for k in attrs}
  for k, v in attrs.items():
    setattr(module, k, v)
  try:
    yield
  finally:
    for k, v in old.items():
      setattr(module, k, v)


class EpochClock:
  """Records, per epoch, when training reached the evaluation and how long the evaluation and
  the checkpoint save took, by wrapping `Trainer.evaluate` and `checkpoints.save`."""

  def __init__(self, between=None):
    self.train_s, self.eval_s, self.save_s, self.ends, self.steps_per_call = [], [], [], [], None
    self.between = between  # called at each epoch end before the evaluation (the bare step)
    self.mark = None

  @contextlib.contextmanager
  def installed(self):
    evaluate, save = train.Trainer.evaluate, checkpoints.save
    clock = self

    def timed_evaluate(trainer, pstate):
      now = time.perf_counter()
      if clock.mark is not None:
        clock.train_s.append(now - clock.mark)
      clock.steps_per_call = getattr(trainer, "steps_per_call", 1)
      if clock.between is not None:
        clock.between(trainer.steps_per_epoch)
      t0 = time.perf_counter()
      out = evaluate(trainer, pstate)
      clock.eval_s.append(time.perf_counter() - t0)
      clock.ends.append(time.perf_counter())
      clock.mark = clock.ends[-1]
      return out

    def timed_save(*args, **kwargs):
      t0 = time.perf_counter()
      out = save(*args, **kwargs)
      clock.save_s.append(time.perf_counter() - t0)
      clock.mark = time.perf_counter()
      return out

    with patched(train.Trainer, evaluate=timed_evaluate), patched(checkpoints, save=timed_save):
      yield self


def bench_config(config, batch: int, epochs: int, steps_per_epoch: int,
                 steps_per_call: int | None = None):
  config = config.copy_and_resolve_references()
  config.batch_size, config.num_epochs = batch, epochs
  config.steps_per_epoch = steps_per_epoch
  if steps_per_call is not None:
    config.steps_per_call = steps_per_call
  return config


def host_us_per_step(config, windows: int, batch: int = 256, steps_per_call=None, epochs=4,
                     n_test: int = 4096) -> dict:
  """Host µs per step of the real loop with the step's compute removed, averaged over epochs
  2..`epochs` (boundaries included)."""
  config = bench_config(config, batch, epochs, -1, steps_per_call)
  config.evaluators = ()  # they run the model itself, which 1 × 1 windows cannot feed
  NULL_CLASSES[0] = config.num_classes
  splits = (contenders_jax.synthetic(windows, (1, 1), config.num_classes, 0),
            contenders_jax.synthetic(n_test, (1, 1), config.num_classes, 1), [])
  clock = EpochClock()
  with tempfile.TemporaryDirectory() as workdir, clock.installed(), \
      patched(input_pipeline, open_splits=lambda _: splits), \
      patched(train, train_step=null_train_step, eval_step=null_eval_step):
    train.train_and_evaluate(config, workdir)
  steps = windows // batch
  per_epoch = np.diff(clock.ends)  # epoch e's end to epoch e+1's end: one whole epoch
  return {"windows": windows, "batch_size": batch, "steps_per_epoch": steps,
          "steps_per_call": clock.steps_per_call, "epochs_timed": len(per_epoch),
          "host_us_per_step": float(per_epoch.mean() / steps * 1e6),
          "host_us_per_step_epochs": [round(float(s / steps * 1e6), 1) for s in per_epoch],
          "eval_s": float(np.median(clock.eval_s)),
          "checkpoint_s": float(np.median(clock.save_s)) if clock.save_s else None,
          "checkpoints_saved": len(clock.save_s)}


def trainer(setting: plan.Setting, config, split_windows: int = 0, epoch_s: float = 3.0,
            epochs: int = 3) -> dict:
  """The trainer's row fields: the loop on the real split size, paired with its block."""
  n_train = contenders_jax.train_windows(setting, split_windows)
  block = contenders_jax.Block(config, n_train)
  start = time.perf_counter()
  block.run(1)  # compiles
  compile_s = time.perf_counter() - start
  start = time.perf_counter()
  block.run(2)
  step_s = (time.perf_counter() - start) / 2
  full = n_train // setting.batch
  steps_per_epoch = int(np.clip(round(epoch_s / step_s), MIN_STEPS, full))
  config = bench_config(config, setting.batch, 1 + epochs, steps_per_epoch)
  # One eval batch holds the whole synthetic test split: padding it to 1,024 windows cost
  # PAMAP2's CPU process 17.7 GB of im2col temporaries, beside the block's.
  config.eval_batch_size = contenders_jax.TEST_WINDOWS
  train_split, test_split = contenders_jax.splits(config, n_train)
  block_s = []

  def between(steps):
    t0 = time.perf_counter()
    block.run(steps)
    block_s.append(time.perf_counter() - t0)

  clock = EpochClock(between)
  with tempfile.TemporaryDirectory() as workdir, clock.installed(), \
      patched(input_pipeline, open_splits=lambda _: (train_split, test_split, [])):
    train.train_and_evaluate(config, workdir)
  # Epoch 1 compiles; each later epoch is paired with the block run that follows it.
  trainer_s, paired = np.array(clock.train_s), np.array(block_s[1:])
  windows = setting.batch * steps_per_epoch
  ms = trainer_s / steps_per_epoch * 1e3
  return {"windows_per_s": float(windows / np.median(trainer_s)),
          "ms_per_step": float(np.median(ms)), "ms_min": float(ms.min()),
          "ms_max": float(ms.max()), "repeats": len(trainer_s),
          "steps_per_repeat": steps_per_epoch, "compile_s": compile_s,
          "extra": {"loop_efficiency": float(np.median(paired / trainer_s)),
                    "loop_efficiency_epochs": [round(float(x), 3) for x in paired / trainer_s],
                    "block_windows_per_s": float(windows / np.median(paired)),
                    "eval_s": float(np.median(clock.eval_s[1:])),
                    "checkpoint_s": float(np.median(clock.save_s)) if clock.save_s else None,
                    "steps_per_epoch": steps_per_epoch,
                    "steps_per_call": clock.steps_per_call, "train_windows": n_train}}


def main():
  p = argparse.ArgumentParser(description="Host µs per step of main.py's loop, compute removed.")
  p.add_argument("--config", default="opportunity", choices=plan.CONFIGS)
  p.add_argument("--batch_size", type=int, default=256)
  p.add_argument("--steps_per_call", type=int, default=None, help="default: the config's")
  p.add_argument("--epochs", type=int, default=4)
  p.add_argument("--host_windows", default="102400,409600")
  p.add_argument("--json", default="")
  a = p.parse_args()
  # As main.py does, before the first computation: freed host memory stays for the next step.
  kept = host_memory.keep_freed_memory_on_cpu()
  config = model_config.config_for(plan.Setting(a.config, "trainer", "f32", a.batch_size))
  out = []
  for windows in map(int, a.host_windows.split(",")):
    r = dict(host_us_per_step(config, windows, a.batch_size, a.steps_per_call, a.epochs),
             freed_memory_kept=kept)
    print(json.dumps(r), flush=True)
    out.append(r)
  if a.json:
    with open(a.json, "w", encoding="utf-8") as f:
      f.write(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
  main()
