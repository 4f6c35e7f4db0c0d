"""A block of train steps (one device call) must not copy the device-resident split.

With windows that had a size-1 dim, pmap's XLA copied the whole train split into every block
call, to change its layout for the loop (at 120 MB: ~40 ms and a page fault per 4 KiB of split,
per call); the devices now hold splits flat (`train.flat_windows`). The numbers, at two split
sizes: `python -m tests.test_block_split [pmap] [shard_map]`.
"""

import re
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from danhar_jax import metrics as metrics_lib
from danhar_jax import parallel
from danhar_jax import train
from tests.test_train import quick_config

WINDOW = (48, 1)  # (time, one sensor): the size-1 dim that made pmap copy the split


def splits(n_train, n_test, window, seed=0):
  rng = np.random.default_rng(seed)

  def split(n):
    return {"signal": rng.normal(size=(n, *window)).astype(np.float32),
            "label": rng.integers(0, 6, n).astype(np.int32)}

  return split(n_train), split(n_test)


def null_step(state, batch, class_weights=None):
  labels = batch["label"]
  loss = batch["signal"].reshape(labels.shape[0], -1).sum(1)  # reads the whole batch
  return state.replace(step=state.step + 1), metrics_lib.TrainMetrics.of(
      loss=loss, logits=jnp.zeros((labels.shape[0], 6)), labels=labels).psum(parallel.AXIS)


def null_eval_step(state, batch):
  del state
  labels = batch["label"]
  return metrics_lib.EvalMetrics.of(
      loss=batch["signal"].reshape(labels.shape[0], -1).sum(1),
      logits=jnp.zeros((labels.shape[0], 6)), labels=labels, mask=batch["mask"]).psum(
          parallel.AXIS)


def split_sized(hlo: str, shape) -> list[tuple[str, str]]:
  """(opcode, line) of each instruction of optimized HLO whose result has `shape` (size-1 dims
  ignored). Any opcode but a parameter, a bitcast or a tuple element writes a copy."""
  squeeze = lambda dims: tuple(d for d in dims if d != 1)
  found = []
  for line in hlo.splitlines():
    m = re.match(r"\s*(?:ROOT )?%\S+ = \w+\[([\d,]*)\](?:\{[^}]*\})? ([\w-]+)\(", line)
    if m and squeeze(int(d) for d in m.group(1).split(",") if d) == squeeze(shape):
      found.append((m.group(2), line.strip()[:160]))
  return found


@pytest.mark.parametrize("mode", ["pmap", "shard_map"])
def test_block_and_eval_calls_do_not_copy_the_split(mode, monkeypatch):
  # Near-zero steps compile in a second; the copy was the loop's, whatever the step computes.
  monkeypatch.setattr(train, "train_step", null_step)
  monkeypatch.setattr(train, "eval_step", null_eval_step)
  config = quick_config(1)
  config.input_shape, config.parallelism = WINDOW, mode
  train_split, test_split = splits(1009, 331, WINDOW)
  t = train.Trainer(config, train_split, test_split)
  pstate = t.par.replicate(train.create_train_state(config, t.model, t.steps_per_epoch))
  order = t.epoch_order(0)
  where = t.par.replicate(np.array([0, 2], np.int32))
  block = t.p_train_steps.lower(pstate, t.empty_tally, t.train_data, order, where)
  evaluate = t.p_eval_steps.lower(pstate, t.test_data, t.eval_batches)
  for hlo, split in ((block.compile().as_text(), train_split),
                     (evaluate.compile().as_text(), test_split)):
    for name, array in split.items():
      found = split_sized(hlo, array.shape)
      assert "parameter" in dict(found), (name, found)  # the parser still reads this HLO
      copies = [line for op, line in found
                if op not in ("parameter", "bitcast", "get-tuple-element")]
      assert not copies, (name, copies)


def test_flat_windows_gather_the_same_batches():
  data = {"signal": np.arange(5 * 3 * 1 * 2, dtype=np.float32).reshape(5, 3, 1, 2),
          "label": np.arange(5, dtype=np.int32), "one": np.ones((5, 1, 1), np.float32)}
  flat, shapes = train.flat_windows(data)
  assert {k: v.shape for k, v in flat.items()} == {"signal": (5, 6), "label": (5,),
                                                   "one": (5,)}
  idx = jnp.array([[4, 0], [2, 2]])
  for k, v in train.gather(flat, idx, shapes).items():
    np.testing.assert_array_equal(v, data[k][np.asarray(idx)])


# ---------------------------------------------------------------------------------------------
# Not a test: ms and minor page faults per block call with a near-zero step, at two split sizes.


def block_cost(window, megabytes, mode="pmap", steps=20, calls=30):
  """(windows, ms per call, minor page faults per call) of `steps`-step blocks of batch 64."""
  n = int(megabytes * 2**20 / (4 * np.prod(window) + 4))
  rng = np.random.default_rng(0)
  signal = np.resize(rng.normal(size=(4096, *window)).astype(np.float32), (n, *window))
  train_split = {"signal": signal, "label": rng.integers(0, 6, n).astype(np.int32)}
  config = quick_config(1)
  config.input_shape, config.parallelism = window, mode
  config.batch_size, config.steps_per_call, config.steps_per_epoch = 64, steps, 200
  old, train.train_step = train.train_step, null_step
  try:
    t = train.Trainer(config, train_split, splits(100, 100, window)[1])
  finally:
    train.train_step = old
  small = quick_config(1)  # the null step ignores the model: any state of the right pytree
  pstate = t.par.replicate(train.create_train_state(small, train.models.create_model(small), 1))
  times = []
  for i in range(calls + 3):
    if i == 3:
      faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    pstate, tally = t.train_steps(pstate, t.empty_tally, 0, steps)
    jax.block_until_ready(tally)
    times.append(time.perf_counter() - start)
  faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / calls
  return n, 1e3 * float(np.median(times[3:])), faults


if __name__ == "__main__":
  modes = sys.argv[1:] or ["pmap", "shard_map"]
  print("| mode | window | split MB | windows | ms per call | minor faults per call | "
        "split pages |\n|---|---|---|---|---|---|---|")
  for mode in modes:
    for window, mb in (((1, 17), 2), ((1, 17), 120), ((64, 107), 100), ((64, 107), 400)):
      n, ms, faults = block_cost(window, mb, mode)
      print(f"| {mode} | {window[0]}x{window[1]} | {mb} | {n} | {ms:.2f} | {faults:.0f} | "
            f"{n * (4 * np.prod(window) + 4) // 4096} |", flush=True)
