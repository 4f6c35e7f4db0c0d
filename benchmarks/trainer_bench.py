r"""The `trainer` contender: the loop users run (`train.train_and_evaluate`), timed beside the
bare step it is built from.

  python benchmarks/trainer_bench.py --host --host_windows=102400,409600 --steps_per_call=32
  python benchmarks/trainer_bench.py --configs=wisdm,pamap2,unimib_shar,opportunity,weakly \
      --batch_size=64 --json=benchmarks/results/trainer_cpu.json

Two measurements, both of the real `train_and_evaluate` on in-memory synthetic splits:

- **host µs per step** (`--host`): `train.train_step` and `train.eval_step` are replaced by
  functions of the same pytrees that do near-zero work, so that what is left is the loop's own
  host cost: index computation, dispatch, metric reads, logging, evaluation and checkpoint
  bookkeeping. It is averaged over whole epochs after the first (which compiles), epoch
  boundaries included. The windows are 1 × 1 so that 409,600 of them fit in memory: the step
  never reads them, and the loop's host cost does not depend on their size.
- **loop efficiency** (default): at every epoch end, before the evaluation, the bare mapped step
  (`train.train_step` on a batch already on the device, as benchmarks/throughput.py times it)
  runs as many steps as the epoch had, so the two are timed interleaved. `loop_efficiency` is the
  trainer's training windows/s (the epoch's wall time up to its evaluation) over the bare step's.
  The epoch boundary (evaluation, checkpoint save) is reported apart, in seconds. Each row also
  carries the host µs per step of the same config and batch, measured as above.

Like main.py, it keeps the host memory a step frees for the next one (danhar_jax/host_memory.py);
without that, glibc unmaps each bare step's large temporaries, and the bare step (ten calls per
epoch) loses more to it than the trainer (one).

Works against any version of the trainer whose loop calls `Trainer.evaluate` once per epoch and
`checkpoints.save` for each save; `steps_per_call` is set only where the config has it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from danhar_jax import checkpoints  # pylint: disable=g-import-not-at-top
from danhar_jax import host_memory
from danhar_jax import input_pipeline
from danhar_jax import metrics as metrics_lib
from danhar_jax import parallel
from danhar_jax import train
import jax_steps  # pylint: disable=g-import-not-at-top,wrong-import-order

DATASETS = ("wisdm", "pamap2", "unimib_shar", "opportunity", "weakly")
NULL_CLASSES = [17]  # the classes of the null steps' logits: set from the config being timed


def null_train_step(state, batch):
  """The pytrees of `train.train_step` at near-zero cost: the state's step advances, the rest is
  returned as it came; the metrics are computed from all-zero logits."""
  labels = batch["label"]
  logits = jnp.zeros((labels.shape[0], NULL_CLASSES[0]), jnp.float32)
  loss = batch["signal"].reshape(labels.shape[0], -1)[:, 0]  # reads the batch, so it is gathered
  return state.replace(step=state.step + 1), metrics_lib.TrainMetrics.gather_from_model_output(
      axis_name=parallel.AXIS, loss=loss, logits=logits, labels=labels)


def null_eval_step(state, batch):
  del state
  labels = batch["label"]
  logits = jnp.zeros((labels.shape[0], NULL_CLASSES[0]), jnp.float32)
  by_subject = {"subject_onehot": batch["subject_onehot"]} if "subject_onehot" in batch else {}
  collection = metrics_lib.EvalMetricsBySubject if by_subject else metrics_lib.EvalMetrics
  return collection.gather_from_model_output(
      axis_name=parallel.AXIS, loss=jnp.zeros(labels.shape, jnp.float32), logits=logits,
      labels=labels, mask=batch["mask"], **by_subject)


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


def bench_config(config, batch: int, steps_per_call: int | None, epochs: int,
                 steps_per_epoch: int, save_every_s: float | None):
  config = config.copy_and_resolve_references()
  config.batch_size, config.num_epochs = batch, epochs
  config.steps_per_epoch = steps_per_epoch
  if steps_per_call is not None and "steps_per_call" in config:
    config.steps_per_call = steps_per_call
  if save_every_s is not None and "checkpoint_every_seconds" in config:
    config.checkpoint_every_seconds = save_every_s
  return config


def synthetic_splits(config, n_train: int, n_test: int, shape) -> tuple:
  """In-memory (train, test, []) splits; where `config.evaluators` scores localisation (weakly),
  the test windows carry segments, a quarter of the window long, for it to score against."""
  test = jax_steps.synthetic(n_test, shape, config.num_classes, 1)
  if "localization" in config.evaluators:
    length = shape[0]
    start = np.random.default_rng(2).integers(0, length - length // 4, n_test)
    test.update(segment_start=start.astype(np.int32),
                segment_end=(start + length // 4).astype(np.int32))
  return jax_steps.synthetic(n_train, shape, config.num_classes, 0), test, []


def host_us_per_step(config, windows: int, batch: int = 256, steps_per_call=None, epochs=4,
                     n_test: int = 4096, save_every_s=None) -> dict:
  """Host µs per step of the real loop with the step's compute removed, averaged over epochs
  2..`epochs` (boundaries included)."""
  config = bench_config(config, batch, steps_per_call, epochs, -1, save_every_s)
  config.evaluators = ()  # they run the model itself, which 1 × 1 windows cannot feed
  NULL_CLASSES[0] = config.num_classes
  splits = synthetic_splits(config, windows, n_test, (1, 1))
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


def bare_step(config, batch: int, n_train: int):
  """run(n): n bare mapped steps on a batch already on the device, then block (the ceiling)."""
  return jax_steps.mapped_steps(config, batch, jax.local_device_count(), config.parallelism,
                                split_windows=batch, steps_per_epoch=n_train // batch,
                                batch_flag="--batch_size").run_train


def loop_efficiency(label: str, config, batch: int = 64, steps_per_call=None, epochs: int = 4,
                    steps_per_epoch: int = 10, n_test: int = 512, save_every_s=None) -> dict:
  config = bench_config(config, batch, steps_per_call, epochs, steps_per_epoch, save_every_s)
  n_train = batch * steps_per_epoch
  splits = synthetic_splits(config, n_train, n_test, config.input_shape)
  run = bare_step(config, batch, n_train)
  run(2)  # compiles
  bare_s = []

  def between(steps):
    t0 = time.perf_counter()
    run(steps)
    bare_s.append(time.perf_counter() - t0)

  clock = EpochClock(between)
  with tempfile.TemporaryDirectory() as workdir, clock.installed(), \
      patched(input_pipeline, open_splits=lambda _: splits):
    train.train_and_evaluate(config, workdir)
  # Epoch 1 compiles; later epochs pair the trainer's epoch with the bare run that follows it.
  trainer_s, bare = np.array(clock.train_s), np.array(bare_s[1:])
  windows = batch * steps_per_epoch
  return {"config": label, "dataset": config.dataset, "contender": "trainer",
          "batch_size": batch, "devices": jax.device_count(), "backend": jax.default_backend(),
          "steps_per_epoch": steps_per_epoch, "steps_per_call": clock.steps_per_call,
          "trainer_windows_per_s": float(windows / np.median(trainer_s)),
          "bare_windows_per_s": float(windows / np.median(bare)),
          "loop_efficiency": float(np.median(bare / trainer_s)),
          "loop_efficiency_epochs": [round(float(x), 3) for x in bare / trainer_s],
          "eval_s": float(np.median(clock.eval_s[1:])),
          "checkpoint_s": float(np.median(clock.save_s)) if clock.save_s else None}


def load(name: str):
  path, _, arg = name.partition(":")
  return importlib.import_module(f"configs.{pathlib.Path(path).stem}").get_config(arg or None)


def rows(configs, batch: int, steps_per_call=None, epochs: int = 4, steps_per_epoch: int = 10,
         host_windows: int = 102_400) -> list[dict]:
  """One `trainer` row per (label, config): loop efficiency, boundaries, host µs per step."""
  out = []
  for label, config in configs:
    row = loop_efficiency(label, config, batch, steps_per_call, epochs, steps_per_epoch)
    host = host_us_per_step(config, host_windows, batch, steps_per_call, epochs=3)
    row.update(host_us_per_step=host["host_us_per_step"], host_windows=host_windows)
    print(json.dumps(row), flush=True)
    out.append(row)
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--configs", default=",".join(DATASETS))
  p.add_argument("--batch_size", type=int, default=None,
                 help="default: 64 (loop efficiency), 256 (--host)")
  p.add_argument("--steps_per_call", type=int, default=None, help="default: the config's")
  p.add_argument("--epochs", type=int, default=4)
  p.add_argument("--steps_per_epoch", type=int, default=10)
  p.add_argument("--host", action="store_true", help="host µs per step only")
  p.add_argument("--host_windows", default="102400,409600")
  p.add_argument("--save_every_s", type=float, default=None,
                 help="config.checkpoint_every_seconds, where the config has it")
  p.add_argument("--json", default="")
  a = p.parse_args()
  # As main.py does, before the first computation: freed host memory stays for the next step.
  kept = host_memory.keep_freed_memory_on_cpu()
  print(f"freed host memory kept (danhar_jax/host_memory.py): {kept}", flush=True)
  out = []
  if a.host:
    for windows in map(int, a.host_windows.split(",")):
      r = host_us_per_step(load("opportunity"), windows, a.batch_size or 256, a.steps_per_call,
                           a.epochs, save_every_s=a.save_every_s)
      print(json.dumps(r), flush=True)
      out.append(r)
  else:
    configs = [(c, load(c)) for c in a.configs.split(",")]
    out = rows(configs, a.batch_size or 64, a.steps_per_call, a.epochs, a.steps_per_epoch)
  if a.json:
    out = [dict(r, freed_memory_kept=kept) for r in out]
    pathlib.Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  main()
