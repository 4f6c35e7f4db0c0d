"""From a prepared TFDS dataset to device-ready batches, without TensorFlow.

These datasets fit in memory (the largest, OPPORTUNITY at the challenge protocol, is about 2 GB of
float32 windows), so a split is read through `tfds.data_source`, held on every device, and batches
are gathered there by index. The batch order is a pure function of (seed, epoch, step): that is
what makes a resumed run bit-identical to an uninterrupted one, and what lets every process of a
multi-host run compute its slice of the same global batch without talking to the others.

One process reads each split once, whole. A process of a multi-host run reads only its shard:
for each epoch, the rows of that epoch's global batches that fall to it (`epoch_rows`), by random
access into the array_record files; for the test split, its fixed slice of every eval batch
(`eval_rows`). The global batches stay exactly those of a single-process run.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import os
import time

import numpy as np
import tensorflow_datasets as tfds

from danhar_jax import splits
from tfds_builders import build_lock

DATASETS = ("wisdm", "wisdm2019", "pamap2", "unimib_shar", "opportunity", "weakly")
FEATURES = ("signal", "label", "subject")
# Kept when a dataset has them: the weakly labeled windows' true target segment, [start, end).
OPTIONAL_FEATURES = ("segment_start", "segment_end")
# Where each window lies in its recording: read once by `open_split_set` for the split protocols
# (danhar_jax/splits.py), never given to the model. Datasets prepared by older builder
# versions lack them; only the protocols that need them say so.
POSITION_FEATURES = ("subject", "recording", "start")


def builder(config):
  """The TFDS builder of `config.dataset` ('name' or 'name/builder_config'), from tfds_builders/."""
  name, _, builder_config = config.dataset.partition("/")
  if name not in DATASETS:
    raise ValueError(f"Unknown config.dataset={config.dataset!r}; valid: {', '.join(DATASETS)} "
                     "(optionally 'name/builder_config').")
  try:
    module = importlib.import_module(f"tfds_builders.{name}.{name}_dataset_builder")
  except ModuleNotFoundError as e:
    raise ValueError(f"config.dataset={name!r} has no builder in tfds_builders/ ({e}).") from None
  configs = [c.name for c in module.Builder.BUILDER_CONFIGS]
  if builder_config and builder_config not in configs:
    raise ValueError(f"{name} has no builder config {builder_config!r}; valid: "
                     f"{', '.join(configs) or 'none'}.")
  b = module.Builder(data_dir=data_dir(config),
                     config=builder_config or None, file_format="array_record")
  if not b.is_prepared():
    return older_prepared(b) or b
  return b


def older_prepared(b):
  """A read-only builder of the newest older version of `b` prepared beside it, among the
  builder's READABLE_VERSIONS (the same windows, splits and order, fewer features), or None.

  So that a builder version that only adds features does not rebuild every prepared dataset:
  what needs the new features says so (`open_split_set`).
  """
  readable = {tfds.core.Version(v) for v in getattr(b, "READABLE_VERSIONS", ())}
  parent = tfds.core.Path(b.data_dir).parent
  found = sorted((v for v in readable if (parent / str(v) / "dataset_info.json").exists()),
                 reverse=True)
  if not found:
    return None
  logging.info("Reading %s %s, prepared in %s; builder %s adds features that some split "
               "protocols need (`python -m tfds_builders build %s` prepares it).",
               b.name, found[0], parent, b.version, b.name)
  return tfds.builder_from_directory(parent / str(found[0]))


DEFAULT_DATA_DIR = "~/tensorflow_datasets"  # configs/default.py's


def data_dir(config) -> str:
  """config.data_dir, or TFDS_DATA_DIR (TFDS's own convention) when data_dir is the default.

  A gs:// (or other etils.epath) location is passed to TFDS as is.
  """
  if config.data_dir == DEFAULT_DATA_DIR and os.environ.get("TFDS_DATA_DIR"):
    return os.environ["TFDS_DATA_DIR"]
  return config.data_dir if "://" in config.data_dir else os.path.expanduser(config.data_dir)


def prepare(config):
  """The builder of `config.dataset`, prepared first if it is missing (which may download)."""
  b = builder(config)
  if not b.is_prepared():
    logging.info("Preparing %s in %s (manual_dir=%r); this happens once.",
                 config.dataset, b.data_dir, config.manual_dir or None)
    manual = os.path.expanduser(config.manual_dir) if config.manual_dir else None
    build_lock.download_and_prepare(  # waits while another process builds it
        b, download_config=tfds.download.DownloadConfig(manual_dir=manual))
  return b


def read_records(source, records, chunk: int = 4096,
                 features=(*FEATURES, *OPTIONAL_FEATURES)) -> dict[str, np.ndarray]:
  """The examples at `records` of an array_record data source, as numpy arrays by feature."""
  parts = {}
  for lo in range(0, len(records), chunk):
    examples = source.__getitems__([int(r) for r in records[lo:lo + chunk]])
    for k in (f for f in features if f in examples[0]):
      parts.setdefault(k, []).append(np.stack([np.asarray(e[k]) for e in examples]))
  out = {k: np.concatenate(v) for k, v in parts.items()}
  for k, dtype in (("signal", np.float32), ("label", np.int32), ("subject", np.int32)):
    if k in out:
      out[k] = out[k].astype(dtype)
  return out


class Split:
  """One split's windows, at positions 0..n-1, read from the data sources only where needed.

  `parts` are (data source, record indices) pairs in order: one TFDS split, or, under
  `config.test_subjects`, the records of both TFDS splits that belong here. `read(rows)` reads
  the windows at those positions alone: that is how each process of a multi-host run reads only
  its shard (`ProcessRows`); `read_all()` reads everything.
  """

  def __init__(self, parts):
    self.parts = [(source, np.asarray(records, np.int64)) for source, records in parts]
    self.offsets = np.cumsum([0] + [len(r) for _, r in self.parts])

  def __len__(self) -> int:
    return int(self.offsets[-1])

  def read(self, rows, features=(*FEATURES, *OPTIONAL_FEATURES)) -> dict[str, np.ndarray]:
    """The windows at positions `rows` (sorted), as numpy arrays keyed by feature."""
    rows = np.asarray(rows, np.int64)
    # The parts are read in turn, so unsorted rows would come back in another order.
    if np.any(np.diff(rows) < 0):
      raise ValueError("Split.read needs sorted rows.")
    part = np.searchsorted(self.offsets, rows, side="right") - 1
    pieces = [read_records(source, records[rows[part == i] - self.offsets[i]],
                           features=features)
              for i, (source, records) in enumerate(self.parts) if np.any(part == i)]
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}

  def read_all(self) -> dict[str, np.ndarray]:
    start = time.perf_counter()
    out = self.read(np.arange(len(self)))
    logging.info("Read %d windows in %.1f s.", len(self), time.perf_counter() - start)
    return out


def take(split, rows) -> dict[str, np.ndarray]:
  """The windows at positions `rows` of a `Split`, or of a split already in memory (a dict)."""
  if isinstance(split, Split):
    return split.read(rows)
  return {k: v[rows] for k, v in split.items()}


def pad_rows(windows: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
  """`windows` with copies of its first window appended up to `n`: rows nothing points at."""
  have = len(next(iter(windows.values())))
  if have > n:
    raise ValueError(f"pad_rows: {have} windows do not fit in {n}.")
  return {k: np.concatenate([v, np.repeat(v[:1], n - have, axis=0)]) for k, v in windows.items()}


def size(split) -> int:
  return len(split) if isinstance(split, Split) else len(split["label"])


def open_splits(config) -> tuple[Split, Split, list[str]]:
  """(train, test, class names) as `Split`s, nothing read yet but the subjects where
  `config.test_subjects` needs them; checks shapes and classes against config."""
  b = prepare(config)
  class_names = check_features(b, config)
  sources = {name: b.as_data_source(split=name) for name in ("train", "test")}
  train, test = (Split([(sources[name], np.arange(len(sources[name])))])
                 for name in ("train", "test"))
  if config.test_subjects:
    # Which records are test records is only known from their subjects: this one pass reads
    # every record, keeps its subject (4 bytes) and drops the rest.
    subjects = {name: read_records(s, np.arange(len(s)), features=("subject",))["subject"]
                for name, s in sources.items()}
    is_test = test_subject_mask(np.concatenate([subjects["train"], subjects["test"]]),
                                config.test_subjects)
    n = len(sources["train"])
    parts = {flag: [(sources[name], np.flatnonzero(is_test[lo:hi] == flag))
                    for name, lo, hi in (("train", 0, n), ("test", n, len(is_test)))]
             for flag in (False, True)}
    train, test = Split(parts[False]), Split(parts[True])
  for name, split in (("train", train), ("test", test)):
    if not len(split):
      raise ValueError(f"The {name} split of {config.dataset} is empty "
                       f"(test_subjects={config.test_subjects!r}).")
  return train, test, class_names


def check_features(b, config) -> list[str]:
  """The class names of builder `b`, once its window shape and classes match `config`."""
  got = tuple(b.info.features["signal"].shape)
  if got != tuple(config.input_shape):
    raise ValueError(f"{config.dataset} gives windows of shape {got} (time, sensors), but "
                     f"config.input_shape is {tuple(config.input_shape)}. Set "
                     f"--config.input_shape='{got}' or rebuild the dataset.")
  class_names = list(b.info.features["label"].names)
  if len(class_names) != config.num_classes:
    raise ValueError(f"{config.dataset} has {len(class_names)} classes but config.num_classes is "
                     f"{config.num_classes}.")
  return class_names


@dataclasses.dataclass
class SplitSet:
  """The splits of one run: train, an optional validation split held out of the training
  subjects or windows (config.validation_*), test, and what the protocol's audit found (how many
  test windows share samples with a training window, ...)."""
  train: Split
  test: Split
  class_names: list[str]
  validation: Split | None = None
  audit: dict = dataclasses.field(default_factory=dict)


def open_split_set(config) -> SplitSet:
  """The run's splits under `config.split` and `config.validation_*` (see SplitSet, splits.py).

  'default' without validation is `open_splits`, the same records in the same order; one pass
  over the positions (subject, recording, start) then audits it. Every other protocol pools both
  builder splits (train records, then test), reads the positions in one pass, and lets
  `splits.assign` divide them; each split keeps the pooled order.
  """
  protocol = splits.Protocol.from_config(config)
  if protocol.split == "default" and not protocol.has_validation:
    train, test, class_names = open_splits(config)
    meta = [_positions(split) for split in (train, test)]
    windows = _windows(meta, (len(train), len(test)))
    indices = splits.Indices(np.arange(len(train)), np.zeros(0, np.int64),
                             len(train) + np.arange(len(test)), np.zeros(0, np.int64))
    audit = splits.audit(windows, indices, config.input_shape[0], protocol.split)
    _log_audit(config, audit)
    return SplitSet(train, test, class_names, None, audit)
  b = prepare(config)
  class_names = check_features(b, config)
  sources = [b.as_data_source(split=name) for name in ("train", "test")]
  meta = [read_records(s, np.arange(len(s)), features=POSITION_FEATURES) for s in sources]
  windows = _windows(meta, tuple(len(s) for s in sources))
  length = int(b.info.features["signal"].shape[0])
  try:
    indices = splits.assign(windows, length, protocol)
  except splits.MissingPositions as e:
    raise ValueError(f"{e}, which {config.dataset} {b.version} (prepared in {b.data_dir}) "
                     f"lacks: {_rebuild_hint(config, b)}") from None

  def pooled(rows):
    n = len(sources[0])
    parts = [(sources[0], rows[rows < n]), (sources[1], rows[rows >= n] - n)]
    return Split([(source, records) for source, records in parts if len(records)])

  train, test = pooled(indices.train), pooled(indices.test)
  for name, split in (("train", train), ("test", test)):
    if not len(split):
      raise ValueError(f"The {name} split of {config.dataset} is empty under config.split="
                       f"{protocol.split!r} (test_subjects={config.test_subjects!r}).")
  validation = pooled(indices.validation) if len(indices.validation) else None
  audit = splits.audit(windows, indices, length, protocol.split)
  _log_audit(config, audit)
  return SplitSet(train, test, class_names, validation, audit)


def _positions(split) -> dict[str, np.ndarray]:
  """POSITION_FEATURES of every window of a split, in one pass; none without `recording`, whose
  audit is 'unknown' anyway (so OPPORTUNITY's 2 GB are not read twice for nothing)."""
  if isinstance(split, Split):
    if not len(split) or "recording" not in split.read([0], features=("recording",)):
      return {}
    return split.read(np.arange(len(split)), features=POSITION_FEATURES)
  return {k: split[k] for k in POSITION_FEATURES if k in split}


def _windows(meta: list[dict], sizes: tuple[int, int]) -> splits.Windows:
  """Train then test positions as one `splits.Windows`; recording None where any part lacks it."""
  has = lambda k: all(k in m for m in meta)
  cat = lambda k: np.concatenate([m[k] for m in meta]) if has(k) else None
  subject = cat("subject")
  if subject is None:  # a split held in memory without subjects (tests): one subject
    subject = np.zeros(sum(sizes), np.int32)
  recording, start = cat("recording"), cat("start")
  if recording is None or start is None:
    recording = start = None
  return splits.Windows(subject, recording, start,
                        np.repeat([False, True], sizes))


def _rebuild_hint(config, b) -> str:
  name = config.dataset.partition("/")[0]
  code = builder_class(config).VERSION
  if b.version < code:
    manual = f" --manual_dir={config.manual_dir}" if config.manual_dir else ""
    return (f"rebuild it with `python -m tfds_builders build {config.dataset} "
            f"--data_dir={data_dir(config)}{manual}` (builder {code} records each window's "
            "recording and start).")
  return f"the {name} builder does not record where its windows lie."


def builder_class(config):
  name = config.dataset.partition("/")[0]
  return importlib.import_module(f"tfds_builders.{name}.{name}_dataset_builder").Builder


def _log_audit(config, audit: dict) -> None:
  logging.info(
      "Split %s of %s: %d train, %d validation, %d test windows; test windows sharing samples "
      "with training: %s, with validation: %s; removed from training (gap): %d.",
      audit["split"], config.dataset, audit["train_windows"], audit["validation_windows"],
      audit["test_windows"], audit["test_windows_overlapping_train"],
      audit["test_windows_overlapping_validation"], audit["removed_from_train"])


def load(config) -> tuple[dict, dict, list[str]]:
  """(train, test, class names), each split read whole into numpy arrays (see `open_splits`)."""
  train, test, class_names = open_splits(config)
  return train.read_all(), test.read_all(), class_names


def load_test(config) -> tuple[dict, list[str]]:
  """(test, class names): the test split alone, read whole, for tools that never train."""
  _, test, class_names = open_splits(config)
  return test.read_all(), class_names


def test_subject_mask(subjects: np.ndarray, test_subjects: str) -> np.ndarray:
  """Which windows belong to the listed test subjects; a clear error for unknown subjects."""
  try:
    wanted = {int(s) for s in str(test_subjects).split(",") if s.strip()}
  except ValueError:
    raise ValueError(f"config.test_subjects={test_subjects!r} must be comma-separated integers."
                     ) from None
  known = set(np.unique(subjects).tolist())
  if missing := sorted(wanted - known):
    raise ValueError(f"config.test_subjects {missing} are not in the dataset; its subjects are "
                     f"{sorted(known)}.")
  return np.isin(subjects, sorted(wanted))


@functools.lru_cache(maxsize=2)
def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The shuffled order of one epoch: a pure function of (seed, epoch), read-only.

  Cached, so that it is computed once per epoch and not at every step: the permutation costs
  O(split) and would make each step's host work grow with the size of the split."""
  order = np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int32)
  order.flags.writeable = False
  return order


def epoch_batches(seed: int, epoch: int, steps: int, num_examples: int, global_batch: int,
                  num_processes: int = 1, process_index: int = 0) -> np.ndarray:
  """This process's rows of the first `steps` global batches of `epoch`:
  `[steps, global_batch / processes]`, a view of the epoch's order.

  Each epoch covers `num_examples // global_batch` full batches; the remainder (fewer than one
  batch) is left out of that epoch only, and since every epoch is reshuffled no window is skipped
  systematically.
  """
  order = epoch_order(seed, epoch, num_examples)
  batches = order[:steps * global_batch].reshape(steps, global_batch)
  per_process = global_batch // num_processes
  return batches[:, process_index * per_process:(process_index + 1) * per_process]


def train_indices(seed: int, epoch: int, step_in_epoch: int, num_examples: int,
                  global_batch: int, num_processes: int = 1, process_index: int = 0):
  """This process's rows of the global batch at (epoch, step): `[global_batch / processes]`."""
  return epoch_batches(seed, epoch, step_in_epoch + 1, num_examples, global_batch,
                       num_processes, process_index)[step_in_epoch]


def epoch_rows(seed: int, epoch: int, steps: int, num_examples: int, global_batch: int,
               num_processes: int = 1, process_index: int = 0) -> np.ndarray:
  """Every row this process trains on in `steps` steps of `epoch`, sorted: its epoch shard."""
  return np.sort(epoch_batches(seed, epoch, steps, num_examples, global_batch, num_processes,
                               process_index).ravel())


def eval_rows(num_examples: int, global_batch: int, num_processes: int = 1,
              process_index: int = 0) -> np.ndarray:
  """Every test row this process evaluates, sorted: its fixed shard of the test split."""
  return np.unique(np.concatenate([
      idx[mask] for idx, mask in eval_batches(num_examples, global_batch, num_processes,
                                              process_index)]))


def eval_batches(num_examples: int, global_batch: int, num_processes: int = 1,
                 process_index: int = 0):
  """(indices, mask) of this process's rows for every eval batch; the last one is padded.

  Process p takes every P-th row of each batch, so that the padding, and the test windows each
  process must hold, are spread evenly over the processes.
  """
  for lo in range(0, num_examples, global_batch):
    idx = np.arange(lo, lo + global_batch)
    mask = idx < num_examples
    idx = np.where(mask, idx, 0).astype(np.int32)
    sl = slice(process_index, None, num_processes)
    yield idx[sl], mask[sl]


@dataclasses.dataclass(frozen=True)
class ProcessRows:
  """Which rows of each split this process holds, and where a global row sits among them.

  With one process it holds every train row; otherwise only its shard of the current epoch's
  batches, renewed per epoch. Of the test split it holds its fixed slice of every eval batch,
  plus row 0, where the eval batches' padding points.
  """
  seed: int
  n_train: int
  n_test: int
  global_batch: int
  eval_batch: int
  steps_per_epoch: int
  num_processes: int = 1
  process_index: int = 0

  def train(self, epoch: int) -> np.ndarray:
    """The sorted train rows held during `epoch`."""
    if self.num_processes == 1:
      return np.arange(self.n_train)
    return epoch_rows(self.seed, epoch, self.steps_per_epoch, self.n_train, self.global_batch,
                      self.num_processes, self.process_index)

  def own_test(self) -> np.ndarray:
    """The sorted test rows this process evaluates."""
    return eval_rows(self.n_test, self.eval_batch, self.num_processes, self.process_index)

  def test(self) -> np.ndarray:
    """The sorted test rows held: `own_test()` and row 0."""
    return np.union1d(self.own_test(), [0])

  def held_test_size(self) -> int:
    """The most test rows any process holds (`test()`): every process pads its held windows to
    it, because processes whose arrays differ in shape compile different programs, and their
    collectives need not meet (jax 0.12.1 hangs on 512 against 513 rows)."""
    return max(len(dataclasses.replace(self, process_index=p).test())
               for p in range(self.num_processes))

  def train_batch(self, epoch: int, step_in_epoch: int) -> np.ndarray:
    """This process's rows of the global batch at (epoch, step)."""
    return train_indices(self.seed, epoch, step_in_epoch, self.n_train, self.global_batch,
                         self.num_processes, self.process_index)

  def train_epoch(self, epoch: int) -> np.ndarray:
    """This process's rows of every batch of `epoch`: `[steps_per_epoch, its batch]`, row s
    being `train_batch(epoch, s)`."""
    return epoch_batches(self.seed, epoch, self.steps_per_epoch, self.n_train, self.global_batch,
                         self.num_processes, self.process_index)

  def eval_batches(self):
    """(rows, mask) of this process's part of every eval batch."""
    return eval_batches(self.n_test, self.eval_batch, self.num_processes, self.process_index)


def positions(held: np.ndarray, rows: np.ndarray) -> np.ndarray:
  """Where global `rows` sit among the sorted `held` rows: indices into the held arrays."""
  return np.searchsorted(held, rows).astype(np.int32)
