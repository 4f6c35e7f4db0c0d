"""From a prepared TFDS dataset to device-ready batches, without TensorFlow.

These datasets fit in memory (the largest, OPPORTUNITY at the challenge protocol, is about 2 GB of
float32 windows), so each split is read once through `tfds.data_source`, held on every device, and
batches are gathered there by index. The batch order is a pure function of (seed, epoch, step):
that is what makes a resumed run bit-identical to an uninterrupted one, and what lets every
process of a multi-host run compute its slice of the same global batch without talking to the
others.
"""

from __future__ import annotations

import importlib
import logging
import os
import time

import numpy as np
import tensorflow_datasets as tfds

DATASETS = ("wisdm", "wisdm2019", "pamap2", "unimib_shar", "opportunity", "weakly")
FEATURES = ("signal", "label", "subject")
# Kept when a dataset has them: the weakly labeled windows' true target segment, [start, end).
OPTIONAL_FEATURES = ("segment_start", "segment_end")


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
  return module.Builder(data_dir=os.path.expanduser(config.data_dir),
                        config=builder_config or None, file_format="array_record")


def prepare(config):
  """The builder of `config.dataset`, prepared first if it is missing (which may download)."""
  b = builder(config)
  if not b.is_prepared():
    logging.info("Preparing %s in %s (manual_dir=%r); this happens once.",
                 config.dataset, b.data_dir, config.manual_dir or None)
    manual = os.path.expanduser(config.manual_dir) if config.manual_dir else None
    b.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual))
  return b


def read_split(source, chunk: int = 4096) -> dict[str, np.ndarray]:
  """Every example of an array_record data source, as numpy arrays keyed by FEATURES."""
  start, n = time.perf_counter(), len(source)
  parts = {k: [] for k in FEATURES}
  for lo in range(0, n, chunk):
    records = source.__getitems__(list(range(lo, min(lo + chunk, n))))
    for k in (*FEATURES, *(f for f in OPTIONAL_FEATURES if f in records[0])):
      parts.setdefault(k, []).append(np.stack([np.asarray(r[k]) for r in records]))
  split = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in parts.items()}
  split["signal"] = split["signal"].astype(np.float32)
  split["label"] = split["label"].astype(np.int32)
  split["subject"] = split["subject"].astype(np.int32)
  logging.info("Read %d windows in %.1f s.", n, time.perf_counter() - start)
  return split


def load(config) -> tuple[dict, dict, list[str]]:
  """(train, test, class names), honouring `config.test_subjects`; checks shapes against config."""
  b = prepare(config)
  splits = {name: read_split(b.as_data_source(split=name)) for name in ("train", "test")}
  class_names = list(b.info.features["label"].names)
  train, test = splits["train"], splits["test"]
  if config.test_subjects:
    train, test = subject_split(train, test, config.test_subjects)
  got = tuple(train["signal"].shape[1:])
  if got != tuple(config.input_shape):
    raise ValueError(f"{config.dataset} gives windows of shape {got} (time, sensors), but "
                     f"config.input_shape is {tuple(config.input_shape)}. Set "
                     f"--config.input_shape='{got}' or rebuild the dataset.")
  if len(class_names) != config.num_classes:
    raise ValueError(f"{config.dataset} has {len(class_names)} classes but config.num_classes is "
                     f"{config.num_classes}.")
  for name, split in (("train", train), ("test", test)):
    if not len(split["label"]):
      raise ValueError(f"The {name} split of {config.dataset} is empty "
                       f"(test_subjects={config.test_subjects!r}).")
  return train, test, class_names


def subject_split(train, test, test_subjects: str):
  """Re-splits the union of both splits by subject: the listed subjects are the test set."""
  try:
    wanted = {int(s) for s in str(test_subjects).split(",") if s.strip()}
  except ValueError:
    raise ValueError(f"config.test_subjects={test_subjects!r} must be comma-separated integers."
                     ) from None
  union = {k: np.concatenate([train[k], test[k]]) for k in train}
  known = set(np.unique(union["subject"]).tolist())
  if missing := sorted(wanted - known):
    raise ValueError(f"config.test_subjects {missing} are not in the dataset; its subjects are "
                     f"{sorted(known)}.")
  is_test = np.isin(union["subject"], sorted(wanted))
  return ({k: v[~is_test] for k, v in union.items()}, {k: v[is_test] for k, v in union.items()})


def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The shuffled order of one epoch: a pure function of (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int32)


def train_indices(seed: int, epoch: int, step_in_epoch: int, num_examples: int,
                  global_batch: int, num_processes: int = 1, process_index: int = 0):
  """This process's rows of the global batch at (epoch, step): `[global_batch / processes]`.

  Each epoch covers `num_examples // global_batch` full batches; the remainder (fewer than one
  batch) is left out of that epoch only, and since every epoch is reshuffled no window is skipped
  systematically.
  """
  order = epoch_order(seed, epoch, num_examples)
  batch = order[step_in_epoch * global_batch:(step_in_epoch + 1) * global_batch]
  per_process = global_batch // num_processes
  return batch[process_index * per_process:(process_index + 1) * per_process]


def eval_batches(num_examples: int, global_batch: int, num_processes: int = 1,
                 process_index: int = 0):
  """(indices, mask) of this process's rows for every eval batch; the last one is padded."""
  per_process = global_batch // num_processes
  for lo in range(0, num_examples, global_batch):
    idx = np.arange(lo, lo + global_batch)
    mask = idx < num_examples
    idx = np.where(mask, idx, 0).astype(np.int32)
    sl = slice(process_index * per_process, (process_index + 1) * per_process)
    yield idx[sl], mask[sl]
