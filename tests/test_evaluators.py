"""The evaluators: which run (config.evaluators on top of the protocol's), on which split, when,
and how their fields reach the eval record."""

import pytest

from danhar_jax import evaluators
from danhar_jax import input_pipeline
from danhar_jax import train
from danhar_jax import writers
from tests.test_train import fake_splits, quick_config

Scheduled = evaluators.Scheduled


def test_the_protocol_runs_whatever_is_listed_and_a_name_is_test_every_epoch():
  assert evaluators.scheduled(()) == evaluators.PROTOCOL
  listed = evaluators.scheduled(("localization", ("classification", "test", 5),
                                 ["localization", "test", 3]))
  # One per (name, split): the protocol's every-epoch classification and the first listing win.
  assert listed == (*evaluators.PROTOCOL, Scheduled("localization", "test", 1))
  assert evaluators.scheduled([("localization", "test", 4)])[-1].every == 4


@pytest.mark.parametrize("entry", ["pointing", ("localization", "validation", 1),
                                   ("per_subject", "validation", 1),
                                   ("classification", "test", 0), ("classification", "test"),
                                   ("classification", "test", True), 3])
def test_a_bad_entry_is_named_with_what_is_allowed(entry):
  with pytest.raises(ValueError, match=r"is not a name among classification, per_subject, "
                     r"localization, nor \(name, split, every epochs >= 1\)") as raised:
    evaluators.parse(entry)
  assert repr(entry) in str(raised.value)


def test_due_on_the_schedule_and_at_the_last_epoch():
  every3 = Scheduled("localization", "test", 3)
  assert [e for e in range(1, 9) if every3.due(e, last_epoch=8)] == [3, 6, 8]
  assert Scheduled("classification", "validation").prefix == "validation_"
  assert Scheduled("classification", "test").prefix == ""


def test_a_scheduled_evaluator_adds_its_prefixed_fields_on_its_epochs(monkeypatch, tmp_path):
  """A probe evaluator every 2nd epoch of 3: its fields in the records of epochs 2 and 3 (the
  last), prefixed by its split; the protocol's fields in every record."""
  probe = lambda ctx: {"probe_loss": float(ctx.eval_pass["loss"])}
  monkeypatch.setitem(evaluators.EVALUATORS, "probe", (probe, evaluators.SPLITS))
  tr, te, names = fake_splits()
  val = fake_splits(n_train=29, n_test=1, seed=1)[0]
  monkeypatch.setattr(input_pipeline, "open_split_set",
                      lambda config: input_pipeline.SplitSet(tr, te, names, validation=val))
  config = quick_config(3)
  config.evaluators = (("probe", "validation", 2),)
  train.train_and_evaluate(config, str(tmp_path))
  records = writers.read_eval_metrics(tmp_path)
  assert ["validation_probe_loss" in r for r in records] == [False, True, True]
  for r in records:
    assert {"accuracy", "macro_f1", "confusion", "per_class_recall", "subject_accuracy",
            "validation_accuracy", "validation_kappa"} <= set(r)
    assert "validation_confusion" not in r  # the per-class report is the test split's
  assert records[1]["validation_probe_loss"] == records[1]["validation_loss"]
