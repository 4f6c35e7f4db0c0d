"""Every config field that shapes a run, checked when the config is loaded, before anything runs.

A bad value otherwise surfaces deep inside the run as a riddle (`--config.batch_size=0` as a
ZeroDivisionError, a too-short `input_shape` as "zero-size array to reduction operation max").
`validate` raises one ValueError per config, on its first bad field: one line naming the field,
the value given and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from danhar_jax import evaluators
from danhar_jax import models
from danhar_jax import parallel
from danhar_jax import train

LR_SCHEDULES = ("constant", "exponential", "step")
DTYPES = ("float32", "bfloat16")
MAX_SEED = 2**32 - 1


def validate(config) -> None:
  """Raises ValueError naming the first field of `config` that no run can use."""
  for field, low in (("batch_size", 1), ("eval_batch_size", 1), ("lr_step_epochs", 1),
                     ("num_epochs", 1), ("log_every_steps", 1), ("checkpoint_every_steps", 0),
                     ("num_classes", 2)):
    _integer(config, field, low)
  _integer(config, "seed", 0, MAX_SEED)
  if config.get("steps_per_call") is not None:
    _integer(config, "steps_per_call", 0, allowed="0 (auto, per backend) or an integer >= 1")
  if config.get("checkpoint_every_seconds") is not None:
    _number(config, "checkpoint_every_seconds", lambda v: v >= 0,
            "a finite number of seconds >= 0 (0: every epoch end)")
  if config.get("profile_steps") is not None:
    _integer(config, "profile_steps", 0)
  if config.steps_per_epoch != -1:
    _integer(config, "steps_per_epoch", 1, allowed="-1 (every full batch) or an integer >= 1")
  if config.max_checkpoints_to_keep is not None:
    _integer(config, "max_checkpoints_to_keep", 1, allowed="None (keep all) or an integer >= 1")
  _number(config, "learning_rate", lambda v: v > 0, "a finite number > 0")
  _number(config, "weight_decay", lambda v: v >= 0, "a finite number >= 0")
  _number(config, "lr_decay_rate", lambda v: 0 < v <= 1, "a number in (0, 1]")
  _choice(config, "lr_schedule", LR_SCHEDULES)
  _choice(config, "parallelism", parallel.MODES)
  if config.get("matmul_precision") is not None:
    _choice(config, "matmul_precision", train.MATMUL_PRECISIONS)
  if config.get("split") is not None:
    _choice(config, "split", SPLITS)
    _choice(config, "select_on", SELECT_ON)
    _integer(config, "early_stopping_patience", 0, allowed="0 (off) or an integer >= 1")
    _number(config, "validation_fraction", lambda v: 0 <= v < 1, "a number in [0, 1)")
    class_weights(config.class_weights, config.num_classes)
  for entry in config.get("evaluators", ()):
    try:
      evaluators.parse(entry)
    except ValueError as e:
      raise ValueError(f"config.evaluators={tuple(config.evaluators)!r} is not allowed: "
                       f"{e}.") from None
  m = config.model
  _choice(m, "backbone", models.BACKBONES, "model.")
  _choice(m, "attention", models.ATTENTIONS, "model.")
  _choice(m, "conv_impl", models.CONV_IMPLS, "model.")
  _choice(m, "dtype", DTYPES, "model.")
  for field in ("time_as_channels", "logit_standardization"):
    if not isinstance(m[field], bool):
      _fail(f"model.{field}", m[field], "True or False")
  for field, low in (("kernel", 1), ("kernel2", 1), ("padding", 0)):
    _integer(m, field, low, prefix="model.")
  _integers(m, "widths", "a non-empty tuple of integers >= 1")
  _integers(m, "strides", f"a tuple of {len(m.widths)} integers >= 1, one per entry of "
            f"model.widths={tuple(m.widths)}", length=len(m.widths))
  _integers(m, "temporal_kernel", "two odd integers >= 1 (time, sensor)", length=2,
            odd=True)  # an even kernel's 'same' padding would grow the mask by one
  _integers(config, "input_shape", "two integers >= 1 (time, sensors)", length=2, prefix="")
  axis = 1 if m.time_as_channels else 0  # with time as channels the convs slide over sensors
  need = min_length(m.kernel, m.strides, m.padding, m.kernel2)
  if config.input_shape[axis] < need:
    what = "sensors (model.time_as_channels)" if axis else "time steps"
    raise ValueError(
        f"config.input_shape={tuple(config.input_shape)} is too short for the network: its "
        f"{len(m.strides)} blocks (model.kernel={m.kernel}, model.strides={tuple(m.strides)}, "
        f"model.padding={m.padding}, model.kernel2={m.kernel2}) need at least {need} {what}.")


def min_length(kernel: int, strides: Sequence[int], padding: int, kernel2: int) -> int:
  """The shortest input for which every block leaves at least one position.

  Each block is conv (kernel, 1) with `stride` and `padding`, then conv (kernel2, 1), stride 1,
  padding kernel2 // 2; the temporal attention and the classifier need one position.
  """
  need = 1  # positions after the last block
  for stride in reversed(list(strides)):
    after_conv1 = max(1, need - (2 * (kernel2 // 2) - kernel2 + 1))
    need = max(1, (after_conv1 - 1) * stride + kernel - 2 * padding)
  return need


SPLITS = ("default", "subjects", "random_windows", "random_windows_gap")
SELECT_ON = ("", "validation_accuracy", "validation_macro_f1", "validation_loss")


def class_weights(value, num_classes: int) -> str | tuple[float, ...]:
  """config.class_weights as 'none', 'balanced' or one finite weight >= 0 per class, not all 0."""
  if value in ("none", "balanced"):
    return value
  allowed = (f"'none', 'balanced', or {num_classes} comma-separated weights >= 0 (one per "
             "class), not all 0")
  try:
    weights = tuple(float(v) for v in str(value).split(","))
  except ValueError:
    _fail("class_weights", value, allowed)
  if (len(weights) != num_classes or not all(math.isfinite(w) and w >= 0 for w in weights)
      or not any(weights)):
    _fail("class_weights", value, allowed)
  return weights


def _fail(field: str, value, allowed: str):
  raise ValueError(f"config.{field}={value!r} is not allowed: expected {allowed}.")


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _integer(config, field: str, low: int, high: int | None = None, allowed: str | None = None,
             prefix: str = "") -> None:
  value = config[field]
  if not _is_int(value) or value < low or (high is not None and value > high):
    _fail(prefix + field, value, allowed or (f"an integer >= {low}" if high is None else
                                             f"an integer in [{low}, {high}]"))


def _number(config, field: str, ok, allowed: str) -> None:
  value = config[field]
  if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
      or not ok(value)):
    _fail(field, value, allowed)


def _choice(config, field: str, valid: Sequence[str], prefix: str = "") -> None:
  if config[field] not in valid:  # the wording of the checks in models.py and parallel.py
    raise ValueError(f"config.{prefix}{field}={config[field]!r} is not one of "
                     f"{', '.join(valid)}.")


def _integers(config, field: str, allowed: str, length: int | None = None, odd: bool = False,
              prefix: str = "model.") -> None:
  value = config[field]
  if (not isinstance(value, (tuple, list)) or not value
      or (length is not None and len(value) != length)
      or not all(_is_int(v) and v >= 1 and (v % 2 or not odd) for v in value)):
    _fail(prefix + field, tuple(value) if isinstance(value, list) else value, allowed)
