"""The run's metrics, summed on the devices, and the statistics HAR papers report from them.

Every metric is a `flax.struct.dataclass` of sums and counts: `merge` adds them (over steps) and
`psum` adds them over the devices of `parallel.AXIS`, so the result is replicated and exact
whatever the device count. `compute` divides; the confusion matrix's statistics are computed on
the host.

DanHAR reports accuracy only. The OPPORTUNITY and PAMAP2 literature compares F1 (Hammerla: macro,
Ordóñez: weighted), so evaluation reports all three from one confusion matrix.
"""

from __future__ import annotations

import dataclasses
import logging

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax


class Metrics:
  """A dataclass whose fields are metrics: merged, summed over devices and computed together."""

  def merge(self, other):
    return type(self)(**{f.name: getattr(self, f.name).merge(getattr(other, f.name))
                         for f in dataclasses.fields(self)})

  def psum(self, axis_name: str):
    """The metrics over every device of `axis_name`: every leaf is a sum or a count."""
    return jax.lax.psum(self, axis_name)

  def compute(self) -> dict:
    return {f.name: getattr(self, f.name).compute() for f in dataclasses.fields(self)}


@flax.struct.dataclass
class Average:
  """The mean of per-window values: their sum and count (a window masked out counts nowhere)."""
  total: jnp.ndarray
  count: jnp.ndarray

  @classmethod
  def empty(cls) -> Average:
    return cls(total=jnp.array(0, jnp.float32), count=jnp.array(0, jnp.int32))

  @classmethod
  def of(cls, values, mask=None) -> Average:
    mask = (jnp.ones_like(values) if mask is None else mask).astype(bool)
    return cls(total=jnp.where(mask, values, jnp.zeros_like(values)).sum(),
               count=jnp.where(mask, jnp.ones_like(values, dtype=jnp.int32),
                               jnp.zeros_like(values, dtype=jnp.int32)).sum())

  def merge(self, other: Average) -> Average:
    return type(self)(total=self.total + other.total, count=self.count + other.count)

  def compute(self):
    return self.total / self.count


@flax.struct.dataclass
class ConfusionMatrix:
  """Counts of (true class, predicted class), masked: padded eval windows count nowhere."""
  matrix: jnp.ndarray

  @classmethod
  def of(cls, logits, labels, mask=None) -> ConfusionMatrix:
    k = logits.shape[-1]
    mask = jnp.ones(labels.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
    true = jax.nn.one_hot(labels, k, dtype=jnp.float32) * mask[:, None]
    pred = jax.nn.one_hot(jnp.argmax(logits, -1), k, dtype=jnp.float32)
    return cls(matrix=(true.T @ pred).astype(jnp.int32))

  def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
    return type(self)(matrix=self.matrix + other.matrix)

  def compute(self):
    return self.matrix


@flax.struct.dataclass
class SubjectCounts:
  """[subjects, 2]: (windows, correct windows) per subject, from a one-hot of each window's
  subject index (`subject_onehot` [batch, subjects]); padded windows count nowhere."""
  counts: jnp.ndarray

  @classmethod
  def of(cls, logits, labels, subject_onehot, mask=None) -> SubjectCounts:
    mask = jnp.ones(labels.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32) * mask
    return cls(counts=subject_onehot.T @ jnp.stack([mask, correct], axis=1))

  def merge(self, other: SubjectCounts) -> SubjectCounts:
    return type(self)(counts=self.counts + other.counts)

  def compute(self):
    return self.counts


def correct(logits, labels):
  """1.0 where the top logit is the label."""
  return (logits.argmax(axis=-1) == labels).astype(jnp.float32)


@flax.struct.dataclass
class TrainMetrics(Metrics):
  loss: Average
  accuracy: Average

  @classmethod
  def empty(cls) -> TrainMetrics:
    return cls(loss=Average.empty(), accuracy=Average.empty())

  @classmethod
  def of(cls, *, loss, logits, labels) -> TrainMetrics:
    """One device's metrics: `loss` per window, `logits` [batch, classes], `labels` [batch]."""
    return cls(loss=Average.of(loss), accuracy=Average.of(correct(logits, labels)))


@flax.struct.dataclass
class EvalMetrics(Metrics):
  """The classification evaluator's sums: accuracy and the F1s come from the confusion."""
  loss: Average
  confusion: ConfusionMatrix

  @classmethod
  def of(cls, *, loss, logits, labels, mask, subject_onehot=None) -> EvalMetrics:
    """One device's metrics; with `subject_onehot`, per-subject counts too (an
    `EvalMetricsBySubject`)."""
    fields = {"loss": Average.of(loss, mask), "confusion": ConfusionMatrix.of(logits, labels, mask)}
    if subject_onehot is None:
      return EvalMetrics(**fields)
    return EvalMetricsBySubject(
        **fields, by_subject=SubjectCounts.of(logits, labels, subject_onehot, mask))


@flax.struct.dataclass
class EvalMetricsBySubject(EvalMetrics):
  by_subject: SubjectCounts


def cross_entropy(logits, labels):
  """Per-window softmax cross-entropy: PyTorch's CrossEntropyLoss on the argmax of the one-hot."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def f1_scores(confusion: np.ndarray) -> dict[str, float]:
  """Accuracy, macro-F1 and weighted-F1 from a [true, predicted] confusion matrix.

  Matches sklearn's `f1_score(average='macro'|'weighted')` with `zero_division=0`: macro averages
  over the classes that occur in the labels or the predictions.
  """
  cm = np.asarray(confusion, np.float64)
  tp, support, predicted = np.diag(cm), cm.sum(1), cm.sum(0)
  with np.errstate(divide="ignore", invalid="ignore"):
    precision = np.where(predicted > 0, tp / predicted, 0.0)
    recall = np.where(support > 0, tp / support, 0.0)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
  present = (support > 0) | (predicted > 0)
  total = cm.sum()
  return {
      "accuracy": float(tp.sum() / total) if total else 0.0,
      "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
      "weighted_f1": float((f1 * support).sum() / support.sum()) if support.sum() else 0.0,
  }


def class_statistics(confusion: np.ndarray) -> dict:
  """Balanced accuracy, Cohen's kappa and per-class recall from a [true, predicted] confusion.

  As scikit-learn's `balanced_accuracy_score` (mean recall over the classes present in the
  labels), `cohen_kappa_score` and `recall_score(average=None, zero_division=0)`: class-imbalanced
  HAR splits make plain accuracy reward the majority class.
  """
  cm = np.asarray(confusion, np.float64)
  tp, support, predicted, total = np.diag(cm), cm.sum(1), cm.sum(0), cm.sum()
  with np.errstate(divide="ignore", invalid="ignore"):
    recall = np.where(support > 0, tp / support, 0.0)
  present = support > 0
  expected = (support * predicted).sum() / total**2 if total else 0.0
  observed = tp.sum() / total if total else 0.0
  return {
      "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
      "kappa": float((observed - expected) / (1 - expected)) if expected < 1 else 0.0,
      "per_class_recall": [float(r) for r in recall],
  }


def resolve_class_weights(spec, train_labels: np.ndarray, num_classes: int):
  """config.class_weights (checked by config_check) as one float per class, or None for 'none'.

  'balanced' is n / (k * count_c) over the TRAINING labels only, so that nothing about the test
  (or validation) split leaks into the loss. A class absent from the training labels gets weight
  0, not inf: it has no windows for the weight to act on, and is named in the log.
  """
  if spec == "none":
    return None
  if spec == "balanced":
    counts = np.bincount(np.asarray(train_labels).ravel(), minlength=num_classes)[:num_classes]
    absent = np.flatnonzero(counts == 0)
    if absent.size:
      logging.warning("config.class_weights='balanced': classes %s have no training window; "
                      "they get weight 0.", absent.tolist())
    with np.errstate(divide="ignore"):
      weights = np.where(counts > 0, counts.sum() / (num_classes * counts), 0.0)
    return tuple(float(w) for w in weights)
  return tuple(float(w) for w in str(spec).split(","))
