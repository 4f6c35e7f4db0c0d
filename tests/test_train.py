"""The trainer on in-memory data: exact resume, NaN guard, bad workdirs, schedules, metrics, devices.

These tests replace `input_pipeline.open_splits` with a small fixed dataset so that they exercise
the loop itself; tests/test_end_to_end.py runs the real builder on real WISDM bytes.
"""

import json
import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import wisdm
from danhar_jax import checkpoints
from danhar_jax import input_pipeline
from danhar_jax import metrics
from danhar_jax import train
from danhar_jax import writers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (48, 3)  # a small DanHAR keeps these loop tests fast; test_end_to_end runs the real one


def fake_splits(n_train=100, n_test=37, seed=0):
  rng = np.random.default_rng(seed)

  def split(n):
    return {"signal": rng.normal(size=(n, *SHAPE)).astype(np.float32),
            "label": rng.integers(0, 6, n).astype(np.int32),
            "subject": rng.integers(1, 5, n).astype(np.int32)}

  return split(n_train), split(n_test), [f"class{i}" for i in range(6)]


@pytest.fixture
def fake_data(monkeypatch):
  data = fake_splits()
  monkeypatch.setattr(input_pipeline, "open_splits", lambda config: data)
  return data


def quick_config(num_epochs=2):
  config = wisdm.get_config("quick")
  config.num_epochs = num_epochs
  config.input_shape, config.model.widths = SHAPE, (16, 16, 16)
  return config


def leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves((state.params, state.batch_stats))]


def eval_tail(workdir):
  return [{k: v for k, v in r.items() if k != "eval_seconds"}
          for r in writers.read_eval_metrics(workdir)]


@pytest.mark.slow
def test_interrupted_then_resumed_run_is_bit_identical(fake_data, tmp_path):
  whole = train.train_and_evaluate(quick_config(2), str(tmp_path / "whole"))
  # The same command, stopped after one epoch, then re-run to the end.
  train.train_and_evaluate(quick_config(1), str(tmp_path / "resumed"))
  assert len(writers.read_eval_metrics(tmp_path / "resumed")) == 1
  resumed = train.train_and_evaluate(quick_config(2), str(tmp_path / "resumed"))
  for a, b in zip(leaves(whole), leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  assert eval_tail(tmp_path / "whole") == eval_tail(tmp_path / "resumed")
  record = writers.read_eval_metrics(tmp_path / "whole")[-1]
  assert {"epoch", "step", "accuracy", "macro_f1", "weighted_f1"} <= set(record)
  assert (record["epoch"], record["step"]) == (2, 6)
  assert np.sum(record["confusion"]) == 37  # every test window, none dropped by padding
  assert os.listdir(tmp_path / "whole" / "tensorboard")


@pytest.mark.slow
def test_eval_lines_after_the_checkpoint_are_redone_not_duplicated(fake_data, tmp_path):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(quick_config(1), workdir)
  # A crash between logging epoch 2 and committing its checkpoint leaves a line with no checkpoint.
  with open(os.path.join(workdir, "eval_metrics.jsonl"), "a") as f:
    f.write(json.dumps({"epoch": 2, "step": 6, "accuracy": -1.0}) + "\n")
  train.train_and_evaluate(quick_config(2), workdir)
  records = writers.read_eval_metrics(workdir)
  assert [r["step"] for r in records] == [3, 6] and records[-1]["accuracy"] >= 0


@pytest.mark.slow
def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(monkeypatch, tmp_path):
  workdir = str(tmp_path / "run")
  monkeypatch.setattr(input_pipeline, "open_splits", lambda config: fake_splits())
  train.train_and_evaluate(quick_config(1), workdir)
  mngr = checkpoints.manager(workdir)
  before = mngr.latest_step()
  good = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  poisoned = fake_splits()
  poisoned[0]["signal"][:] = np.nan
  monkeypatch.setattr(input_pipeline, "open_splits", lambda config: poisoned)
  with pytest.raises(train.NonFiniteLossError, match=r"became nan at step 4\b"):
    train.train_and_evaluate(quick_config(2), workdir)
  assert before == 3
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == good
  assert checkpoints.manager(workdir).latest_step() == 3


def test_best_accuracy_is_the_earliest_highest():
  records = [{"epoch": e, "accuracy": a} for e, a in enumerate([0.5, 0.7, 0.6, 0.7], start=1)]
  assert writers.best_accuracy(records) == (0.7, 2)
  assert writers.best_accuracy([]) is None


@pytest.mark.slow
def test_best_accuracy_and_epoch_continue_across_a_resume(fake_data, tmp_path, monkeypatch):
  accuracies = iter([0.6, 0.4, 0.5, 0.6, 0.8])
  evaluate = train.Trainer.evaluate

  def scripted(self, pstate):  # the real evaluation, with the accuracy this test chooses
    return {**evaluate(self, pstate), "accuracy": next(accuracies)}

  monkeypatch.setattr(train.Trainer, "evaluate", scripted)
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(quick_config(2), workdir)
  # A new process: the best so far can only come from the records in eval_metrics.jsonl.
  train.train_and_evaluate(quick_config(5), workdir)
  records = writers.read_eval_metrics(workdir)
  assert [r["accuracy"] for r in records] == [0.6, 0.4, 0.5, 0.6, 0.8]
  assert [r["best_accuracy"] for r in records] == [0.6, 0.6, 0.6, 0.6, 0.8]
  assert [r["best_epoch"] for r in records] == [1, 1, 1, 1, 5]


def test_unwritable_workdir_fails_before_any_compute(tmp_path, monkeypatch):
  monkeypatch.setattr(input_pipeline, "open_splits",
                      lambda config: pytest.fail("data was loaded before the workdir check"))
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  with pytest.raises(PermissionError, match="is not a writable directory"):
    train.train_and_evaluate(quick_config(1), str(blocker / "run"))


@pytest.mark.slow
def test_resume_with_another_batch_size_is_refused(fake_data, tmp_path):
  train.train_and_evaluate(quick_config(1), str(tmp_path))
  config = quick_config(2)
  config.batch_size = 16
  with pytest.raises(ValueError, match="batch_size: 32 stored, 16 given"):
    train.train_and_evaluate(config, str(tmp_path))


@pytest.mark.parametrize("schedule,gamma,step_epochs,expected", [
    ("constant", 1.0, 1, [1e-3] * 4),
    ("exponential", 0.9, 1, [1e-3, 1e-3, 0.9e-3, 0.9e-3]),    # ExponentialLR(0.9), 2 steps/epoch
    ("step", 0.1, 2, [1e-3, 1e-3, 1e-3, 1e-3]),               # StepLR(2, 0.1): epochs 0, 1
])
def test_learning_rate_is_stepped_per_epoch(schedule, gamma, step_epochs, expected):
  config = quick_config()
  config.lr_schedule, config.lr_decay_rate, config.lr_step_epochs = schedule, gamma, step_epochs
  fn = train.learning_rate_schedule(config, steps_per_epoch=2)
  np.testing.assert_allclose([float(fn(s)) for s in range(4)], expected, rtol=1e-6)
  if schedule == "step":
    assert abs(float(fn(4)) - 1e-4) < 1e-10


def test_weight_decay_is_coupled_l2_like_pytorch_adam():
  config = quick_config()
  config.lr_schedule, config.weight_decay, config.learning_rate = "constant", 0.5, 0.1
  tx = train.make_optimizer(config, steps_per_epoch=1)
  params = {"w": np.array([2.0], np.float32)}
  updates, _ = tx.update({"w": np.array([0.0], np.float32)}, tx.init(params), params)
  # Adam on g + wd·p = 1.0 moves by lr·sign: -0.1 (AdamW would move by -lr·wd·p = -0.1 plus 0).
  np.testing.assert_allclose(updates["w"], [-0.1], rtol=1e-4)
  updates, _ = tx.update({"w": np.array([-1.0], np.float32)}, tx.init(params), params)
  np.testing.assert_allclose(updates["w"], [0.0], atol=1e-6)  # g + wd·p = 0: no step at all


def test_f1_scores_match_hand_computation():
  cm = np.array([[5, 1, 0], [2, 2, 0], [0, 0, 0]])  # class 2 never occurs nor is predicted
  result = metrics.f1_scores(cm)
  f1_0, f1_1 = 2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6), 2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4)
  assert result["accuracy"] == pytest.approx(0.7)
  assert result["macro_f1"] == pytest.approx((f1_0 + f1_1) / 2)
  assert result["weighted_f1"] == pytest.approx((6 * f1_0 + 4 * f1_1) / 10)


def test_batch_order_is_a_pure_function_of_seed_epoch_and_step():
  a = input_pipeline.train_indices(0, 3, 2, 1000, 64)
  np.testing.assert_array_equal(a, input_pipeline.train_indices(0, 3, 2, 1000, 64))
  assert not np.array_equal(a, input_pipeline.train_indices(0, 4, 2, 1000, 64))
  halves = [input_pipeline.train_indices(0, 3, 2, 1000, 64, 2, p) for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate(halves), a)  # two hosts feed the same global batch


def test_eval_batches_pad_and_mask_never_drop():
  seen = [(idx, mask) for idx, mask in input_pipeline.eval_batches(37, 16)]
  assert [len(i) for i, _ in seen] == [16, 16, 16]
  assert sorted(np.concatenate([i[m] for i, m in seen]).tolist()) == list(range(37))


class CountingSource:
  """A data source like tfds's array_record one, remembering which records were read."""

  def __init__(self, split):
    self.split, self.read = split, []

  def __len__(self):
    return len(self.split["label"])

  def __getitems__(self, records):
    self.read.extend(records)
    return [{k: v[r] for k, v in self.split.items()} for r in records]


def test_a_split_reads_only_the_rows_asked_for():
  train_split, test_split, _ = fake_splits()
  sources = [CountingSource(train_split), CountingSource(test_split)]
  # Positions 0..4 are train records 10..14, positions 5..7 test records 0, 2 and 4.
  split = input_pipeline.Split([(sources[0], np.arange(10, 15)), (sources[1], [0, 2, 4])])
  assert len(split) == 8
  got = split.read([1, 4, 6])
  np.testing.assert_array_equal(got["signal"], np.stack([
      train_split["signal"][11], train_split["signal"][14], test_split["signal"][2]]))
  assert sources[0].read == [11, 14] and sources[1].read == [2]


def test_each_process_holds_only_its_shard_of_an_epoch_and_of_the_test_split():
  steps, n, batch = 5, 1000, 64
  shards = [input_pipeline.epoch_rows(0, 3, steps, n, batch, 2, p) for p in (0, 1)]
  assert [len(s) for s in shards] == [steps * batch // 2] * 2
  assert not np.intersect1d(*shards).size  # disjoint: each window is read by one process
  everything = np.sort(np.concatenate([input_pipeline.train_indices(0, 3, s, n, batch)
                                       for s in range(steps)]))
  np.testing.assert_array_equal(np.union1d(*shards), everything)
  tests = [input_pipeline.eval_rows(37, 16, 2, p) for p in (0, 1)]
  assert not np.intersect1d(*tests).size
  np.testing.assert_array_equal(np.union1d(*tests), np.arange(37))


@pytest.mark.parametrize("n_test,eval_batch,procs", [(1024, 32, 2), (37, 16, 2), (43, 12, 4)])
def test_every_process_holds_as_many_test_windows(n_test, eval_batch, procs):
  """Unequal held shapes compile a different program per process (1024 rows: 512 and 513)."""
  rows = [input_pipeline.ProcessRows(seed=0, n_train=10, n_test=n_test, global_batch=procs,
                                     eval_batch=eval_batch, steps_per_epoch=1,
                                     num_processes=procs, process_index=p) for p in range(procs)]
  size = rows[0].held_test_size()
  assert size == max(len(r.test()) for r in rows) and all(r.held_test_size() == size for r in rows)
  for r in rows:
    held = input_pipeline.take({"label": np.arange(n_test)}, r.test())
    padded = input_pipeline.pad_rows(held, size)["label"]
    assert len(padded) == size and set(padded[len(held["label"]):]) <= {held["label"][0]}
    np.testing.assert_array_equal(padded[:len(held["label"])], r.test())
  with pytest.raises(ValueError, match=r"^pad_rows: 3 windows do not fit in 2\.$"):
    input_pipeline.pad_rows({"label": np.arange(3)}, 2)


def test_subject_mask_selects_the_listed_subjects():
  train_split, test_split, _ = fake_splits()
  subjects = np.concatenate([train_split["subject"], test_split["subject"]])
  is_test = input_pipeline.test_subject_mask(subjects, "2, 3")
  assert set(subjects[is_test].tolist()) == {2, 3} and set(subjects[~is_test].tolist()) == {1, 4}
  with pytest.raises(ValueError, match=r"test_subjects \[99\] are not in the dataset"):
    input_pipeline.test_subject_mask(subjects, "99")


DEVICES_SCRIPT = """
import jax, numpy as np
from danhar_jax import input_pipeline, train
from tests.test_train import fake_splits, quick_config
input_pipeline.open_splits = lambda config: fake_splits()
out = {{}}
for mode in {modes!r}:
  config = quick_config(2)
  config.parallelism = mode
  state = train.train_and_evaluate(config, {workdir!r} + "/" + mode)
  out[mode] = np.concatenate([np.ravel(x) for x in jax.tree.leaves((state.params, state.batch_stats))])
np.savez({workdir!r} + "/params_%d.npz" % jax.device_count(), **out)
"""


def run_on_devices(n, modes, workdir):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
  code = DEVICES_SCRIPT.format(modes=modes, workdir=str(workdir))
  subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT, timeout=600)
  return dict(np.load(os.path.join(workdir, f"params_{n}.npz")))


@pytest.mark.slow
@pytest.mark.host_devices
def test_pmap_and_shard_map_on_two_devices_match_one_device(tmp_path):
  """Same global batch (32) on 1 and 2 CPU devices: synchronised BatchNorm, averaged gradients.

  Tolerance: Adam moves each parameter by at most lr per step, and a near-zero gradient whose
  sign differs in the last bit moves it the other way, so over 6 steps a parameter may differ by
  up to 2·lr·6. The bulk must agree far more closely: relative L2 distance below 2e-3. Without
  synchronised BatchNorm statistics the distance is orders of magnitude larger.
  """
  one = run_on_devices(1, ["pmap"], tmp_path)["pmap"]
  two = run_on_devices(2, ["pmap", "shard_map"], tmp_path)
  lr_bound = 2 * 1e-3 * 6
  for mode, params in two.items():
    assert np.abs(params - one).max() <= lr_bound, mode
    assert np.linalg.norm(params - one) / np.linalg.norm(one) < 2e-3, mode


def test_the_train_step_compiles_once():
  """The replicated state must have the layout the step returns, or the step's second call, on
  its own output, misses the compile cache and compiles again (10-15 s per run on this CPU)."""
  messages = []
  handler = logging.Handler()
  handler.emit = lambda record: messages.append(record.getMessage())
  logging.getLogger("jax").addHandler(handler)
  train_split, test_split, names = fake_splits()
  config = quick_config(1)
  t = train.Trainer(config, train_split, test_split)
  pstate = t.par.replicate(train.create_train_state(config, t.model, t.steps_per_epoch))
  pstate, _ = t.train_steps(pstate, t.empty_tally, 0, 1)
  jax.block_until_ready(pstate)
  try:
    with jax.log_compiles(True):
      for step, end in ((1, 2), (2, 3), (3, 6)):  # another block length, and the next epoch
        pstate, _ = t.train_steps(pstate, t.empty_tally, step, end)
      jax.block_until_ready(pstate)
  finally:
    logging.getLogger("jax").removeHandler(handler)
  assert not [m for m in messages if m.startswith("Compiling")], messages


def block_config(steps_per_call, num_epochs=2, **fields):
  """10 steps per epoch of batch 8, logged every 5: blocks of 1, 4 (not dividing 10) or 16."""
  config = quick_config(num_epochs)
  config.batch_size, config.steps_per_epoch, config.log_every_steps = 8, 10, 5
  config.steps_per_call = steps_per_call
  config.update(fields)
  return config


class Interrupted(Exception):
  pass


@pytest.mark.slow
def test_steps_per_call_changes_nothing_bit_for_bit(fake_data, tmp_path, monkeypatch):
  """K = 1, 4 and 16 group the same steps into device calls differently, and compute the same
  parameters, BatchNorm statistics and eval records, bit for bit; so does a run stopped at a
  checkpoint inside a block (step 3 of a K = 16 block 0-5) and resumed with another K."""
  runs = {k: train.train_and_evaluate(block_config(k), str(tmp_path / f"k{k}"))
          for k in (1, 4, 16)}
  save = checkpoints.save

  def save_then_stop(mngr, step, *args, **kwargs):
    save(mngr, step, *args, **kwargs)
    if step == 3:
      raise Interrupted

  monkeypatch.setattr(checkpoints, "save", save_then_stop)
  with pytest.raises(Interrupted):
    train.train_and_evaluate(block_config(4, checkpoint_every_steps=3), str(tmp_path / "cut"))
  monkeypatch.setattr(checkpoints, "save", save)
  runs["resumed"] = train.train_and_evaluate(block_config(16), str(tmp_path / "cut"))
  for name, state in runs.items():
    for a, b in zip(leaves(runs[1]), leaves(state)):
      np.testing.assert_array_equal(a, b, err_msg=str(name))
    assert eval_tail(tmp_path / "k1") == eval_tail(
        tmp_path / ("cut" if name == "resumed" else f"k{name}")), name
  assert [r["step"] for r in writers.read_eval_metrics(tmp_path / "k16")] == [10, 20]
  # The cadence: quick configs save every epoch end; the resumed run saved its last step.
  assert sorted(checkpoints.manager(str(tmp_path / "k4")).all_steps()) == [10, 20]


@pytest.mark.slow
def test_a_nan_inside_a_block_names_its_step_and_saves_nothing_after(monkeypatch, tmp_path):
  config = block_config(4, num_epochs=1, checkpoint_every_steps=5)
  data = fake_splits()
  rows = input_pipeline.ProcessRows(seed=config.seed, n_train=100, n_test=37, global_batch=8,
                                    eval_batch=256, steps_per_epoch=10)
  data[0]["signal"][rows.train_epoch(0)[6, 0]] = np.nan  # read first by step 7: in block 5-9
  monkeypatch.setattr(input_pipeline, "open_splits", lambda config: data)
  workdir = str(tmp_path / "run")
  with pytest.raises(train.NonFiniteLossError, match=r"became nan at step 7\b") as raised:
    train.train_and_evaluate(config, workdir)
  assert "\n" not in str(raised.value)
  assert checkpoints.manager(workdir).all_steps() == [5]


def test_the_epoch_matrix_is_the_batches_of_every_step():
  for procs in (1, 2):
    for p in range(procs):
      rows = input_pipeline.ProcessRows(seed=3, n_train=101, n_test=9, global_batch=12,
                                        eval_batch=4, steps_per_epoch=8, num_processes=procs,
                                        process_index=p)
      np.testing.assert_array_equal(rows.train_epoch(2), np.stack(
          [rows.train_batch(2, s) for s in range(8)]))


def test_blocks_end_at_log_steps_epoch_ends_checkpoints_and_stops():
  train_split, test_split, _ = fake_splits()
  t = train.Trainer(block_config(4, checkpoint_every_steps=7), train_split, test_split)
  ends, step = [], 0
  while step < t.total_steps:
    step = t.block_end(step, stops=(1, 12))
    ends.append(step)
  assert ends == [1, 5, 7, 10, 12, 14, 15, 19, 20]
  assert t.resolved["steps_per_call"] == 4


@pytest.mark.parametrize("value", [-1, 1.5, "2", True])
def test_steps_per_call_must_be_zero_or_a_positive_integer(value):
  with pytest.raises(ValueError, match=r"^config\.steps_per_call=.* is not allowed: expected 0 "
                     r"\(auto: picked per backend\) or an integer >= 1"):
    train.resolve_steps_per_call(value, "cpu")
  assert train.resolve_steps_per_call(0, "cpu") == train.STEPS_PER_CALL["cpu"]
  assert train.resolve_steps_per_call(0, "unknown") == 1
