"""Which windows train, validate and test under each evaluation protocol: index arithmetic only.

The DanHAR paper splits WISDM and UniMiB SHAR windows at random, 70/30. Its windows overlap by
half, so most test windows share samples with a training window and the test score partly
measures memory. These protocols make that visible and avoidable (docs/datasets.md):

  'default'             the builder's own train/test split (or config.test_subjects over both);
  'subjects'            config.test_subjects test, every other subject trains;
  'random_windows'      the paper's: a random 30% of all windows test, drawn by seed;
  'random_windows_gap'  the same test windows, minus from training every window that shares
                        samples with a test (or validation) window.

Windows are described by `Windows`: per window its subject, its `recording` (the continuous
stream it was cut from) and `start` (its first sample there), and whether the builder put it in
its test split. Two windows share samples when their recordings match and their starts are fewer
than `length` (the window length) apart. A recording < 0 means the position is unknown (UniMiB
SHAR's pre-cut windows); `recording=None` means the dataset does not record it at all.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

PROTOCOLS = ("default", "subjects", "random_windows", "random_windows_gap")
TEST_FRACTION = 0.3  # the paper's 70/30
# Independent draws from one seed: the test windows, then the validation split.
_TEST_STREAM, _VALIDATION_STREAM = 0, 1
# Keys pack (recording, start) into one int64; starts stay below this so keys never collide.
_MAX_START = 2**30


class MissingPositions(ValueError):
  """The protocol needs each window's recording and start, and the dataset has none."""


@dataclasses.dataclass(frozen=True)
class Windows:
  """Per-window metadata, in the pooled order: the builder's train records, then its test."""

  subject: np.ndarray  # [n] int
  recording: np.ndarray | None  # [n] int, < 0 unknown; None: not recorded
  start: np.ndarray | None  # [n] int
  builder_test: np.ndarray  # [n] bool: in the builder's test split

  def __len__(self) -> int:
    return len(self.subject)

  def take(self, rows) -> "Windows":
    pick = lambda a: None if a is None else np.asarray(a)[rows]
    return Windows(pick(self.subject), pick(self.recording), pick(self.start),
                   pick(self.builder_test))

  def positions_known(self) -> bool:
    return self.recording is not None and bool(np.all(np.asarray(self.recording) >= 0))


@dataclasses.dataclass(frozen=True)
class Protocol:
  """The config fields that choose the split, parsed (`from_config`)."""

  split: str = "default"
  test_subjects: tuple[int, ...] = ()
  validation_subjects: tuple[int, ...] = ()
  validation_fraction: float = 0.0
  seed: int = 0
  min_train: int = 1  # config.batch_size: a validation split may not leave less to train on

  @classmethod
  def from_config(cls, config) -> "Protocol":
    test = subject_ids(config.test_subjects, "test_subjects")
    validation = subject_ids(config.get("validation_subjects", ""), "validation_subjects")
    fraction = float(config.get("validation_fraction", 0.0))
    if validation and fraction:
      raise ValueError(f"Set one of config.validation_subjects={config.validation_subjects!r} "
                       f"and config.validation_fraction={fraction}, not both.")
    return cls(split=config.get("split", "default"), test_subjects=test,
               validation_subjects=validation, validation_fraction=fraction,
               seed=int(config.seed), min_train=int(config.batch_size))

  @property
  def has_validation(self) -> bool:
    return bool(self.validation_subjects or self.validation_fraction)


@dataclasses.dataclass(frozen=True)
class Indices:
  """Sorted indices into the pooled windows."""

  train: np.ndarray
  validation: np.ndarray
  test: np.ndarray
  removed: np.ndarray  # taken out of training because they share samples (the gap)


def subject_ids(value, field: str) -> tuple[int, ...]:
  """A comma-separated list of subject ids, sorted; one line naming the field when it is not."""
  try:
    return tuple(sorted({int(s) for s in str(value or "").split(",") if s.strip()}))
  except ValueError:
    raise ValueError(f"config.{field}={value!r} must be comma-separated integers.") from None


def assign(windows: Windows, length: int, protocol: Protocol) -> Indices:
  """Train, validation and test indices of `windows` under `protocol` (see the module doc)."""
  n = len(windows)
  subject = np.asarray(windows.subject)
  known = sorted(np.unique(subject).tolist())
  if protocol.split not in PROTOCOLS:
    raise ValueError(f"config.split={protocol.split!r} is not one of {', '.join(PROTOCOLS)}.")
  if protocol.split == "subjects" and not protocol.test_subjects:
    raise ValueError("config.split='subjects' needs config.test_subjects (comma-separated ids "
                     f"of the test subjects; the dataset's subjects are {known}).")
  if protocol.split.startswith("random_windows") and protocol.test_subjects:
    raise ValueError(f"config.test_subjects={','.join(map(str, protocol.test_subjects))!r} "
                     f"and config.split={protocol.split!r} disagree: the random protocols draw "
                     "test windows from every subject; unset one.")
  if protocol.split in ("default", "subjects") and protocol.test_subjects:
    if missing := sorted(set(protocol.test_subjects) - set(known)):
      raise ValueError(f"config.test_subjects {missing} are not in the dataset; its subjects "
                       f"are {known}.")
    is_test = np.isin(subject, protocol.test_subjects)
  elif protocol.split == "default":
    is_test = np.asarray(windows.builder_test, bool)
  else:
    rng = np.random.default_rng([protocol.seed, _TEST_STREAM])
    is_test = np.zeros(n, bool)
    is_test[rng.permutation(n)[:math.ceil(TEST_FRACTION * n)]] = True
  gap = protocol.split == "random_windows_gap"
  if gap:
    _require_positions(windows, "config.split='random_windows_gap'")
  test = np.flatnonzero(is_test)
  train = np.flatnonzero(~is_test)
  validation = _validation(windows, train, test, length, protocol)
  train = np.setdiff1d(train, validation)
  removed = np.zeros(0, np.int64)
  if gap:
    held_out = np.union1d(test, validation)
    removed = train[overlapping(windows.take(train), windows.take(held_out), length)]
    train = np.setdiff1d(train, removed)
  if protocol.has_validation and len(train) < max(protocol.min_train, 1):
    raise ValueError(f"The validation split ({len(validation)} windows) leaves {len(train)} "
                     f"training windows, fewer than one batch (config.batch_size="
                     f"{protocol.min_train}): lower config.validation_fraction or name fewer "
                     "config.validation_subjects.")
  return Indices(train, validation, test, removed)


def _validation(windows: Windows, train: np.ndarray, test: np.ndarray, length: int,
                protocol: Protocol) -> np.ndarray:
  """The validation indices, taken out of `train`: by subject when train and test subjects are
  disjoint, else windows that share no samples with a test window."""
  if not protocol.has_validation:
    return np.zeros(0, np.int64)
  subject = np.asarray(windows.subject)
  train_subjects = sorted(np.unique(subject[train]).tolist())
  test_subjects = sorted(np.unique(subject[test]).tolist())
  if protocol.validation_subjects:
    known = sorted(np.unique(subject).tolist())
    if missing := sorted(set(protocol.validation_subjects) - set(known)):
      raise ValueError(f"config.validation_subjects {missing} are not in the dataset; its "
                       f"subjects are {known}.")
    if both := sorted(set(protocol.validation_subjects) & set(test_subjects)):
      raise ValueError(f"config.validation_subjects {both} are also test subjects under "
                       f"config.split={protocol.split!r} (test subjects: {test_subjects}); "
                       "window-level splits test every subject: use "
                       "config.validation_fraction there.")
    return train[np.isin(subject[train], protocol.validation_subjects)]
  if not set(train_subjects) & set(test_subjects):
    count = max(1, round(protocol.validation_fraction * len(train_subjects)))
    if count >= len(train_subjects):
      raise ValueError(f"config.validation_fraction={protocol.validation_fraction} of the "
                       f"{len(train_subjects)} training subjects {train_subjects} leaves none to "
                       "train on.")
    rng = np.random.default_rng([protocol.seed, _VALIDATION_STREAM])
    chosen = rng.choice(train_subjects, count, replace=False)
    return train[np.isin(subject[train], chosen)]
  # Window level: never a window that shares samples with a test window, where that is known.
  candidates = train
  if windows.recording is None:
    raise MissingPositions(f"config.validation_fraction under config.split={protocol.split!r} "
                           "(train and test share subjects) draws windows that share no "
                           "samples with a test window")
  if windows.positions_known():
    candidates = train[~overlapping(windows.take(train), windows.take(test), length)]
  count = max(1, round(protocol.validation_fraction * len(train)))
  if count > len(candidates):
    raise ValueError(f"config.validation_fraction={protocol.validation_fraction} asks for "
                     f"{count} validation windows, but only {len(candidates)} of the "
                     f"{len(train)} training windows share no samples with a test window.")
  rng = np.random.default_rng([protocol.seed, _VALIDATION_STREAM])
  return np.sort(rng.choice(candidates, count, replace=False))


def _require_positions(windows: Windows, what: str) -> None:
  if windows.recording is None or windows.start is None:
    raise MissingPositions(f"{what} needs each window's recording and start")
  if not windows.positions_known():
    raise ValueError(f"{what} needs each window's recording and start, and this dataset's "
                     "windows have none (recording = -1: the raw release does not say where "
                     "its windows lie).")


def _keys(windows: Windows) -> np.ndarray:
  start = np.asarray(windows.start, np.int64)
  if start.size and (start.min() < 0 or start.max() >= _MAX_START):
    raise ValueError(f"window starts must lie in [0, {_MAX_START}); got "
                     f"[{start.min()}, {start.max()}].")
  return np.asarray(windows.recording, np.int64) * (2 * _MAX_START) + start


def overlapping(query: Windows, against: Windows, length: int) -> np.ndarray:
  """[len(query)] bool: which `query` windows share samples with at least one `against` window
  (same recording, starts fewer than `length` apart). Positions must be known."""
  if not 0 < length < _MAX_START:
    raise ValueError(f"window length {length} must lie in [1, {_MAX_START}).")
  if not len(query) or not len(against):
    return np.zeros(len(query), bool)
  keys = np.sort(_keys(against))
  q = _keys(query)
  # The first `against` key at or after q - (length - 1); a hit if it is below q + length.
  # Keys of different recordings lie 2**31 apart, so the window never reaches another one.
  first = np.searchsorted(keys, q - (length - 1), side="left")
  found = keys[np.minimum(first, len(keys) - 1)]
  return (first < len(keys)) & (found < q + length)


def overlap(train_meta: Windows, test_meta: Windows, length: int) -> int | None:
  """How many `test_meta` windows share samples with at least one `train_meta` window; None
  when positions are unknown (not recorded, or recording < 0)."""
  if not len(test_meta) or not len(train_meta):
    return 0
  if not (train_meta.positions_known() and test_meta.positions_known()):
    return None
  return int(overlapping(test_meta, train_meta, length).sum())


def audit(windows: Windows, indices: Indices, length: int, split: str) -> dict:
  """The counts a run logs and records: how many test windows share samples with training and
  validation windows ('unknown' where positions are unknown)."""
  take = windows.take
  known = lambda v: "unknown" if v is None else v
  return {
      "split": split,
      "train_windows": len(indices.train),
      "validation_windows": len(indices.validation),
      "test_windows": len(indices.test),
      "test_windows_overlapping_train": known(
          overlap(take(indices.train), take(indices.test), length)),
      "test_windows_overlapping_validation": known(
          overlap(take(indices.validation), take(indices.test), length)),
      "validation_windows_overlapping_train": known(
          overlap(take(indices.train), take(indices.validation), length)),
      "removed_from_train": len(indices.removed),
  }
