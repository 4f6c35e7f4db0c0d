"""Which epoch a run reports, and when it stops: `config.select_on` and `early_stopping_patience`.

The authors pick the best epoch on the test split (select_on ''), which is optimistic: a maximum
over noisy test estimates. Selecting on a validation split held out of training, and reporting
the test at that epoch, is the convention (docs/reliability.md). Every record names what its
best epoch was selected on, so that a test-selected number cannot pass for a validated one.
"""

from __future__ import annotations

import dataclasses

# select_on → (the evaluation's key, whether larger is better).
CRITERIA = {"": ("accuracy", True), "validation_accuracy": ("validation_accuracy", True),
            "validation_macro_f1": ("validation_macro_f1", True),
            "validation_loss": ("validation_loss", False)}


def check(config, has_validation: bool) -> None:
  """One line naming the field when the protocol asks for a validation split the run lacks."""
  select_on = config.get("select_on", "")
  if select_on and not has_validation:
    raise ValueError(f"config.select_on={config.select_on!r} needs a validation split: set "
                     "config.validation_subjects or config.validation_fraction, or "
                     "select_on='' (the test split, as the authors).")
  patience = config.get("early_stopping_patience", 0)
  if patience and not (select_on and has_validation):
    raise ValueError(f"config.early_stopping_patience={patience} needs a validation split and "
                     "config.select_on naming a validation metric (stopping on the test split "
                     "would select on it); use 0 (off, as the authors).")


@dataclasses.dataclass
class Selector:
  """The selected epoch so far: the best score under `select_on`, the earliest on a tie."""
  select_on: str
  patience: int = 0
  score: float | None = None
  epoch: int | None = None
  step: int | None = None
  test: dict | None = None       # the test metrics at the selected epoch
  since: int = 0                 # evaluations since the selected one

  @property
  def key(self) -> str:
    return CRITERIA[self.select_on][0]

  def rank(self, score: float) -> float:
    """The score with larger always better (a loss is negated): what Orbax's BestN ranks."""
    return score if CRITERIA[self.select_on][1] else -score

  def update(self, epoch: int, step: int, result: dict) -> bool:
    """Takes one evaluation (the test metrics and validation_* ones); True if it is selected."""
    score = result[self.key]
    if self.score is None or self.rank(score) > self.rank(self.score):
      self.score, self.epoch, self.step, self.since = score, epoch, step, 0
      self.test = {k: result[k] for k in ("accuracy", "macro_f1")}
      return True
    self.since += 1
    return False

  @property
  def stop(self) -> bool:
    """Early stopping: `patience` evaluations in a row without a better score."""
    return bool(self.patience) and self.since >= self.patience

  def fields(self) -> dict:
    """What every eval record says about the selection (docs/use.md, eval_metrics.jsonl)."""
    return {"selected_on": selected_on_name(self.select_on), "selected_epoch": self.epoch,
            "selected_score": self.score, "test_accuracy_at_selected": self.test["accuracy"],
            "test_macro_f1_at_selected": self.test["macro_f1"]}


def selected_on_name(select_on: str) -> str:
  return select_on or "test"


def from_records(select_on: str, patience: int, records: list[dict]) -> Selector:
  """The selector a resumed run continues with, replayed from its eval records."""
  selector = Selector(select_on, patience)
  for r in records:
    selector.update(r["epoch"], r["step"], r)
  return selector
