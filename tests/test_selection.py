"""The evaluation protocol in the loop: validation beside the test, the selected epoch, early
stopping, class weights, and the statistics every evaluation reports.

The loop tests run in-memory splits (tests/test_train.py's); the data side (how a validation
split is carved) is input_pipeline's and is tested there.
"""

import dataclasses
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from danhar_jax import checkpoints
from danhar_jax import input_pipeline
from danhar_jax import metrics
from danhar_jax import selection
from danhar_jax import train
from danhar_jax import writers
from tests.conftest import ROOT
from tests.test_train import fake_splits, quick_config

# Today's code (fe91b7f's parent, 63e55c4), quick_config(2) on fake_splits(), seed 0, CPU with
# JAX_DEFAULT_MATMUL_PRECISION=highest (conftest), run under each jax version CI has installed:
# the state's digest and its eval records. XLA's rounding differs between versions, patch releases
# included (a loss's last digits, one test window), so each has its own baseline from that commit.
_COMMON = [
    {"epoch": 1, "step": 3, "accuracy": 0.21621621621621623, "best_accuracy": 0.21621621621621623,
     "best_epoch": 1, "train_accuracy": 0.15625, "learning_rate": 0.0010000000474974513,
     "subject_accuracy": {"1": 0.1111111111111111, "2": 0.2222222222222222, "3": 0.3,
                          "4": 0.2222222222222222}},
    {"epoch": 2, "step": 6, "accuracy": 0.21621621621621623, "best_accuracy": 0.21621621621621623,
     "best_epoch": 1, "train_accuracy": 0.25, "learning_rate": 0.0009000000427477062,
     "subject_accuracy": {"1": 0.1111111111111111, "2": 0.2222222222222222, "3": 0.3,
                          "4": 0.2222222222222222}},
]
BASELINES = {
    "0.10.2": ("2881a99361a7b7b284d8b159a16f1fdb8331b49cd466bf4663fa4409c9ce8815", [
        {"macro_f1": 0.17443019943019944, "weighted_f1": 0.18403788403788407,
         "loss": 2.1080360412597656, "train_loss": 2.2615113258361816,
         "confusion": [[0, 2, 0, 0, 1, 1], [1, 0, 0, 4, 2, 0], [0, 0, 1, 4, 2, 0],
                       [0, 1, 0, 4, 2, 0], [0, 0, 0, 4, 2, 0], [0, 1, 1, 3, 0, 1]]},
        {"macro_f1": 0.19132275132275134, "weighted_f1": 0.20344916344916344,
         "loss": 2.092377185821533, "train_loss": 1.825849175453186,
         "confusion": [[0, 2, 0, 0, 1, 1], [1, 0, 0, 4, 2, 0], [0, 0, 2, 4, 1, 0],
                       [0, 1, 0, 3, 2, 1], [0, 0, 0, 4, 2, 0], [0, 1, 1, 3, 0, 1]]}]),
    "0.12.0.1": ("1ca4d4ccf4e8357500bff892ac89dc59e245c1e8cc43f301ec50d0ecf5bebc2b", [
        {"macro_f1": 0.17443019943019944, "weighted_f1": 0.18403788403788407,
         "loss": 2.1079354286193848, "train_loss": 2.2615113258361816,
         "confusion": [[0, 2, 0, 0, 1, 1], [1, 0, 0, 4, 2, 0], [0, 0, 1, 4, 2, 0],
                       [0, 1, 0, 4, 2, 0], [0, 0, 0, 4, 2, 0], [0, 1, 1, 3, 0, 1]]},
        {"macro_f1": 0.1898148148148148, "weighted_f1": 0.20225225225225224,
         "loss": 2.092613935470581, "train_loss": 1.8258490562438965,
         "confusion": [[0, 2, 0, 0, 1, 1], [1, 0, 0, 4, 2, 0], [0, 0, 2, 3, 2, 0],
                       [0, 1, 0, 3, 2, 1], [0, 0, 0, 4, 2, 0], [0, 1, 1, 3, 0, 1]]}]),
}
# jax 0.12.1 moves only the losses' last digits from 0.12.0.1.
BASELINES["0.12.1"] = ("20d7220b2780e1fbd6e9144fd5cd9cb0140520f1fa8a0446c6af58525be50fd2", [
    {**r, "loss": loss} for r, loss in zip(BASELINES["0.12.0.1"][1],
                                           (2.1081087589263916, 2.092397689819336))])


def split_set(validation=True):
  """fake_splits() as a SplitSet; the validation part is another draw of the same shapes."""
  tr, te, names = fake_splits()
  val = fake_splits(n_train=29, n_test=1, seed=1)[0] if validation else None
  return input_pipeline.SplitSet(tr, te, names, validation=val)


def test_validation_off_keeps_todays_parameters_and_records(monkeypatch, tmp_path):
  audited = dataclasses.replace(split_set(False), audit={"split": "default", "test_windows": 37})
  monkeypatch.setattr(input_pipeline, "open_split_set", lambda config: audited)
  if jax.__version__ not in BASELINES:
    pytest.skip(f"no baseline for jax {jax.__version__}: record one from 63e55c4 as the comment says")
  digest, per_version = BASELINES[jax.__version__]
  expected = [{**c, **r} for c, r in zip(_COMMON, per_version)]
  state = train.train_and_evaluate(quick_config(2), str(tmp_path))
  assert writers.read_split_audit(tmp_path) == audited.audit  # for a study to read
  assert checkpoints.digest((state.params, state.batch_stats)) == digest
  records = writers.read_eval_metrics(tmp_path)
  assert [{k: r[k] for k in b} for r, b in zip(records, expected)] == expected
  assert [r["selected_on"] for r in records] == ["test", "test"]
  assert records[-1]["test_accuracy_at_selected"] == records[-1]["best_accuracy"]
  assert not any(k.startswith("validation_") for k in records[-1])


def scripted_validation(monkeypatch, scores):
  """The real validation pass, with the macro-F1 this test chooses per call."""
  real, it = train.Trainer.evaluate_validation, iter(scores)

  def scripted(self, pstate):
    out = real(self, pstate)
    assert set(out) >= {"validation_accuracy", "validation_loss", "validation_kappa"}
    return {**out, "validation_macro_f1": next(it)}

  monkeypatch.setattr(train.Trainer, "evaluate_validation", scripted)


def selecting_config(num_epochs=6):
  config = quick_config(num_epochs)
  config.select_on, config.early_stopping_patience = "validation_macro_f1", 2
  config.max_checkpoints_to_keep = 1
  return config


def test_selects_on_validation_stops_early_and_keeps_the_selected_checkpoint(
    monkeypatch, tmp_path):
  monkeypatch.setattr(input_pipeline, "open_split_set", lambda config: split_set())
  # A tie is not an improvement; the last two serve the evaluations after training.
  scripted_validation(monkeypatch, [0.3, 0.5, 0.5, 0.4, 0.0, 0.0])
  workdir = str(tmp_path)
  train.train_and_evaluate(selecting_config(), workdir)
  records = writers.read_eval_metrics(workdir)
  assert [r["epoch"] for r in records] == [1, 2, 3, 4]  # stopped: 2 epochs without better
  assert [r["stopped_early"] for r in records] == [False, False, False, True]
  last = records[-1]
  assert (last["selected_on"], last["selected_epoch"], last["best_epoch"]) == (
      "validation_macro_f1", 2, 2)
  assert last["best_accuracy"] == last["test_accuracy_at_selected"] == records[1]["accuracy"]
  assert last["test_macro_f1_at_selected"] == records[1]["macro_f1"]
  # The selected epoch's checkpoint beside the latest, max_checkpoints_to_keep=1.
  assert sorted(int(n) for n in os.listdir(tmp_path / "checkpoints") if n.isdigit()) == [6, 12]
  assert train.evaluate(selecting_config(), workdir)["step"] == 6
  latest = train.evaluate(selecting_config(), workdir, "latest")
  assert latest["step"] == 12 and latest["accuracy"] == last["accuracy"]
  assert latest["validation_accuracy"] == last["validation_accuracy"]
  # Rerun: a stopped run has nothing left to do.
  train.train_and_evaluate(selecting_config(), workdir)
  assert writers.read_eval_metrics(workdir) == records
  # A resumed run under another protocol is refused, naming the field.
  changed = selecting_config()
  changed.select_on = "validation_loss"
  with pytest.raises(checkpoints.ConfigMismatchError, match="select_on"):
    train.train_and_evaluate(changed, workdir)


@pytest.mark.parametrize("field,value,line", [
    ("select_on", "validation_accuracy", "config.select_on='validation_accuracy' needs a "
     "validation split"),
    ("early_stopping_patience", 3, "config.early_stopping_patience=3 needs a validation split"),
])
def test_a_validation_protocol_without_a_validation_split_is_refused(
    field, value, line, monkeypatch, tmp_path):
  monkeypatch.setattr(input_pipeline, "open_split_set", lambda config: split_set(False))
  config = quick_config(1)
  config[field] = value
  with pytest.raises(ValueError, match=line):
    train.train_and_evaluate(config, str(tmp_path))


def test_early_stopping_with_selection_on_the_test_split_is_refused():
  config = quick_config(1)
  config.early_stopping_patience = 2  # select_on '': stopping would select on the test split
  with pytest.raises(ValueError, match="early_stopping_patience=2 needs"):
    selection.check(config, has_validation=True)


@pytest.mark.parametrize("field,value", [
    ("split", "subjects"), ("validation_subjects", "1601"), ("validation_fraction", 0.2),
    ("select_on", "validation_loss"), ("class_weights", "balanced"),
    ("early_stopping_patience", 3)])
def test_a_resumed_run_with_another_protocol_is_refused_naming_the_field(field, value):
  stored = quick_config(1).to_dict()
  given = {**stored, field: value}
  with pytest.raises(checkpoints.ConfigMismatchError, match=f"{field}: "):
    checkpoints.check_config("runs/x", stored, given)


# ---------------------------------------------------------------------------------------------
# Statistics and class weights.

CONFUSION = np.array([[5, 1, 0, 2], [2, 7, 1, 0], [0, 0, 0, 0], [1, 0, 3, 4]])  # class 2: no label


def test_class_statistics_match_scikit_learn():
  sklearn_metrics = pytest.importorskip("sklearn.metrics")
  true, pred = zip(*[(t, p) for (t, p), n in np.ndenumerate(CONFUSION) for _ in range(n)])
  import warnings
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # y_pred has a class y_true lacks: sklearn says so
    balanced = sklearn_metrics.balanced_accuracy_score(true, pred)
  got = metrics.class_statistics(CONFUSION)
  assert got["balanced_accuracy"] == pytest.approx(balanced, abs=1e-12)
  assert got["kappa"] == pytest.approx(sklearn_metrics.cohen_kappa_score(true, pred), abs=1e-12)
  np.testing.assert_allclose(got["per_class_recall"], sklearn_metrics.recall_score(
      true, pred, labels=range(4), average=None, zero_division=0), atol=1e-12)


def test_balanced_weights_count_the_training_labels_and_give_an_absent_class_0(caplog):
  labels = np.array([0, 0, 0, 1, 3, 3])  # class 2 absent: 0, not inf
  with caplog.at_level("WARNING"):
    weights = metrics.resolve_class_weights("balanced", labels, 4)
  assert weights == pytest.approx((6 / 12, 6 / 4, 0.0, 6 / 8))
  assert "classes [2] have no training window" in caplog.text
  assert metrics.resolve_class_weights("none", labels, 4) is None
  assert metrics.resolve_class_weights("1,2,0,0.5", None, 4) == (1.0, 2.0, 0.0, 0.5)


def linear_state(seed=0):
  """A TrainState whose model is one matrix: the weighted loss, not the network, under test."""
  w = jax.random.normal(jax.random.key(seed), (5, 4))

  def apply_fn(variables, x, train, mutable):
    del train, mutable
    return x @ variables["params"]["w"], {"batch_stats": variables["batch_stats"]}

  return train.TrainState.create(apply_fn=apply_fn, params={"w": w}, batch_stats={},
                                 tx=optax.sgd(1.0))


def run_on_shards(state, batch, weights, shards):
  """train_step on `shards` devices (vmap with the collectives' axis), the global batch split."""
  split = jax.tree.map(lambda a: a.reshape(shards, -1, *a.shape[1:]), batch)
  new, m = jax.vmap(lambda b: train.train_step(state, b, weights), axis_name=train.AXIS,
                    out_axes=0)(split)
  return jax.tree.map(lambda a: a[0], new), float(jax.tree.map(lambda a: a[0], m).loss.compute())


def test_weighted_loss_is_pytorchs_and_the_same_on_1_and_2_devices():
  rng = np.random.default_rng(0)
  batch = {"signal": rng.normal(size=(8, 5)).astype(np.float32),
           "label": np.array([0, 0, 0, 1, 1, 3, 3, 3], np.int32)}  # unbalanced halves
  weights = (0.5, 2.0, 1.0, 0.25)
  state = linear_state()
  one, loss1 = run_on_shards(state, batch, weights, 1)
  two, loss2 = run_on_shards(state, batch, weights, 2)
  logits = batch["signal"] @ np.asarray(state.params["w"])
  ce = -jax.nn.log_softmax(logits)[np.arange(8), batch["label"]]
  w = np.asarray(weights)[batch["label"]]
  assert loss1 == pytest.approx(float((w * ce).sum() / w.sum()), rel=1e-6)  # CrossEntropyLoss
  assert loss2 == pytest.approx(loss1, rel=1e-6)
  np.testing.assert_allclose(two.params["w"], one.params["w"], rtol=1e-6, atol=1e-7)
  # Equal weights are the unweighted mean.
  plain, _ = run_on_shards(state, batch, None, 2)
  ones, _ = run_on_shards(state, batch, (1.0,) * 4, 2)
  np.testing.assert_allclose(ones.params["w"], plain.params["w"], rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Kill -9 during the selected checkpoint's save, then resume: bit-identical.

def runner_cmd(workdir):
  code = (
      "import logging, sys\n"
      "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
      "from danhar_jax import train\n"
      "from tests import test_selection as ts\n"
      "ts.patch_for_subprocess()\n"
      f"train.train_and_evaluate(ts.selecting_config(8), {str(workdir)!r})\n")
  return [sys.executable, "-c", code]


def patch_for_subprocess():
  """In the runner process: in-memory splits, and a validation macro-F1 fixed per epoch."""
  input_pipeline.open_split_set = lambda config: split_set()
  real = train.Trainer.evaluate_validation
  scores = [0.3, 0.5, 0.4, 0.45, 0.2, 0.6, 0.6, 0.6]

  def scripted(self, pstate):
    out = real(self, pstate)
    # The epoch is the one just ended: its number comes from the step the run has reached.
    epoch = int(jax.device_get(self.par.unreplicate(pstate.step))) // self.steps_per_epoch
    return {**out, "validation_macro_f1": scores[epoch - 1]}

  train.Trainer.evaluate_validation = scripted


@pytest.mark.slow
def test_kill_9_during_the_selected_checkpoints_save_then_resume_is_bit_identical(tmp_path):
  from tests.test_end_to_end import env, kill_when  # pylint: disable=import-outside-toplevel

  def run(workdir):
    proc = subprocess.run(runner_cmd(workdir), cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

  whole, killed = tmp_path / "whole", tmp_path / "killed"
  run(whole)
  ckpt = killed / "checkpoints"
  # Epoch 2 is the selected one. Saves run one at a time: with step 3 committed and step 6 not,
  # a temporary folder is step 6's save in progress.
  saving_6 = lambda line: (line is None and (ckpt / "3").is_dir() and not (ckpt / "6").is_dir()
                           and any("tmp" in n for n in os.listdir(ckpt)))
  if not kill_when(runner_cmd(killed), saving_6, must_kill=False):
    pytest.skip("the selected checkpoint's save was not caught in progress (timing)")
  assert not (ckpt / "6").is_dir()
  run(killed)
  strip = lambda rs: [{k: v for k, v in r.items() if k != "eval_seconds"} for r in rs]
  records = writers.read_eval_metrics(whole)
  assert strip(writers.read_eval_metrics(killed)) == strip(records)
  assert [r["epoch"] for r in records] == [1, 2, 3, 4] and records[-1]["selected_epoch"] == 2
  for workdir in (whole, killed):
    assert sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit()) == [6, 12]
  for step in (6, 12):
    assert stored_digest(whole, step) == stored_digest(killed, step)


def stored_digest(workdir, step: int) -> str:
  """The sha256 of the state saved at `step`, as its checkpoint records it."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  mngr = checkpoints.manager(str(workdir))
  try:
    return mngr.restore(step, args=ocp.args.Composite(
        pipeline=ocp.args.JsonRestore())).pipeline["state_sha256"]
  finally:
    mngr.close()
