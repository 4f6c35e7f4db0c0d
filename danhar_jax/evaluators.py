"""What an evaluation reports: a registry of evaluators, each run on a split on a schedule.

`config.evaluators` names the evaluators a run adds to the protocol's (`PROTOCOL`), each as a
name or `(name, split, every)`: evaluator `name` of `EVALUATORS` reads `split` ('test' or
'validation') after every `every`-th epoch and after the last. The protocol's run after every
epoch whatever the config lists: the eval record and the selected epoch read them. An
evaluator returns {field: value}; the trainer prefixes the fields with the split (`prefix`:
none for the test split, `validation_` for the validation split) and merges them into the
record.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from danhar_jax import localization
from danhar_jax import metrics

SPLITS = ("test", "validation")


@dataclasses.dataclass(frozen=True)
class Scheduled:
  """Evaluator `name` on `split` after every `every`-th epoch (and after the last)."""
  name: str
  split: str = "test"
  every: int = 1

  def due(self, epoch: int, last_epoch: int) -> bool:
    """big_vision's `itstime`: on the schedule, or the run's last epoch."""
    return epoch % self.every == 0 or epoch == last_epoch

  @property
  def prefix(self) -> str:
    return "" if self.split == "test" else f"{self.split}_"


# Every epoch: the test split's accuracy and F1s (the record, and selection without validation),
# per-subject accuracy where its windows have subjects, the validation split's where there is one.
PROTOCOL = (Scheduled("classification", "test"), Scheduled("per_subject", "test"),
            Scheduled("classification", "validation"))


class Context:
  """What the evaluators of one state on one split read. The split's device pass (the
  classification sums, and per-subject counts where the split has subjects) runs once, whichever
  evaluators read it."""

  def __init__(self, config, split: str, run_pass: Callable[[], dict],
               state: Callable[[], object], windows: dict | None = None, subjects=None):
    self.config, self.split, self.subjects, self.windows = config, split, subjects, windows
    self._run_pass, self._state = run_pass, state

  @functools.cached_property
  def eval_pass(self) -> dict:
    """The split's device pass on the host: its loss, confusion and, where the split has
    subjects, per-subject counts (`metrics.EvalMetrics`)."""
    return self._run_pass()

  @functools.cached_property
  def state(self):
    """The unreplicated TrainState, for evaluators that run the model on the host's windows."""
    return self._state()


def classification(ctx: Context) -> dict:
  """Loss, accuracy, macro and weighted F1, balanced accuracy and kappa; on the test split the
  confusion and per-class recall too (the validation split serves selection: scalars only)."""
  confusion = np.asarray(ctx.eval_pass["confusion"])
  stats = metrics.class_statistics(confusion)
  out = {"loss": float(ctx.eval_pass["loss"]), **metrics.f1_scores(confusion),
         "balanced_accuracy": stats["balanced_accuracy"], "kappa": stats["kappa"]}
  if ctx.split == "test":
    out.update(per_class_recall=stats["per_class_recall"], confusion=confusion.tolist())
  return out


def per_subject(ctx: Context) -> dict:
  """Accuracy per test subject, and its windows (they weigh each subject when a report resamples
  the test subjects); nothing where the split has no subjects or several processes hold it."""
  if ctx.subjects is None:
    return {}
  subjects, counts = ctx.subjects.tolist(), np.asarray(ctx.eval_pass["by_subject"]).tolist()
  return {"subject_accuracy": {str(s): float(c / n) if n else None
                               for s, (n, c) in zip(subjects, counts)},
          "subject_windows": {str(s): int(n) for s, (n, _) in zip(subjects, counts)}}


def localization_scores(ctx: Context) -> dict:
  """Does temporal attention find the target segment? (localization.py): loc_* fields, each
  process scoring its own test windows."""
  return over_processes(localization.evaluator(ctx.state, ctx.windows, ctx.config))


# name → (evaluator, the splits it can read).
EVALUATORS = {"classification": (classification, SPLITS), "per_subject": (per_subject, ("test",)),
              "localization": (localization_scores, ("test",))}


def parse(entry) -> Scheduled:
  """One entry of config.evaluators; ValueError naming it and what is allowed."""
  scheduled = Scheduled(entry) if isinstance(entry, str) else None
  if isinstance(entry, (tuple, list)) and len(entry) == 3:
    scheduled = Scheduled(*entry)
  ok = (scheduled is not None and isinstance(scheduled.name, str)
        and scheduled.name in EVALUATORS
        and scheduled.split in EVALUATORS[scheduled.name][1]
        and isinstance(scheduled.every, int) and not isinstance(scheduled.every, bool)
        and scheduled.every >= 1)
  if not ok:
    shown = tuple(entry) if isinstance(entry, list) else entry
    reads = "; ".join(f"{n}: {', '.join(s)}" for n, (_, s) in EVALUATORS.items())
    raise ValueError(f"entry {shown!r} is not a name among {', '.join(EVALUATORS)}, nor "
                     f"(name, split, every epochs >= 1) with a split it reads ({reads})")
  return scheduled


def scheduled(entries) -> tuple[Scheduled, ...]:
  """The run's evaluators: the protocol's, then those `entries` (config.evaluators) add; one
  per (name, split), the protocol's schedule (every epoch) first."""
  out = {}
  for s in (*PROTOCOL, *map(parse, entries)):
    out.setdefault((s.name, s.split), s)
  return tuple(out.values())


def run(due: list[Scheduled], ctx: Context) -> dict:
  """The outputs of the `due` evaluators on `ctx.split`, prefixed by it, merged in order."""
  out = {}
  for s in due:
    out.update({s.prefix + k: v for k, v in EVALUATORS[s.name][0](ctx).items()})
  return out


def over_processes(scores: dict[str, float]) -> dict[str, float]:
  """Each process scores its own test shard: the means, weighted by the windows (`loc_n`)."""
  if jax.process_count() == 1:
    return scores
  keys = list(scores)
  local = np.array([[scores[k] for k in keys]], np.float32)
  table = np.asarray(multihost_utils.process_allgather(local, tiled=True))  # [process, key]
  n = table[:, keys.index("loc_n")]
  return {k: float(table[:, i].sum() if k == "loc_n" else (table[:, i] * n).sum() / n.sum())
          for i, k in enumerate(keys)}
