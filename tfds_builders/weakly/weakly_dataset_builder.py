"""Weakly labeled HAR windows composed from a strongly labeled source, as DanHAR §4.6 uses them.

The paper's weakly labeled data (He et al.: 50 Hz iPhone accelerometer, 2048-sample windows of
walking holding one upstairs, downstairs, jumping or jogging segment, labelled only with that
target) is private. This builder composes windows of the same structure from public recordings
that are labelled per sample, so that where the target lies is known and the temporal attention
can be scored against it:

1. Each subject's recordings are cut into *pieces*: maximal stretches of one activity with no
   break. The source builder's own code does the parsing (wisdm2019: `parse_stream`,
   `run_samples`, `align` on the 20 Hz grid, breaks at gaps over 100 ms; wisdm v1.1:
   `parse_raw` and the contiguous (user, activity) runs of the file).
2. A window of `window` samples is a stretch of the subject's own walking (the background).
3. One target segment of L samples, L uniform in [segment_min, segment_max], is taken from a
   piece of the target activity of the same subject and placed at a uniformly random start, so
   the window's label is the target's and `[segment_start, segment_end)` says where it is.
4. The seams are cross-faded over `blend` samples at each end of the segment with a raised
   cosine, inside the segment: a hard splice would put a step at both ends whatever the class,
   and a network could find the segment by its edges instead of by its content.
5. Every draw comes from `np.random.default_rng([seed, subject, class_index])`, so the dataset
   is a pure function of the config and the raw files, and one subject's windows do not change
   when other subjects are added. Backgrounds and targets are drawn uniformly over all valid
   offsets of all long enough pieces (a piece is weighted by its number of offsets).

Each window's `recording` and `start` are its background's, in the source builder's ids and units
(the walking run, and its first sample there), so that the split protocols
(danhar_jax/splits.py) find windows that share background samples; a shared target segment
(128-512 samples of another run) is not counted, so their overlap counts are a lower bound.

Every subject gives `windows_per_class` windows of each target class, or none of a class when
it has no walking piece of `window` samples or no target piece of `segment_max` samples (so the
counts never depend on the draws). Train and test hold disjoint subjects: the source builder's
test subjects are the test split.
"""

from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import _common
from tfds_builders import downloads
from tfds_builders import tfds_workarounds
from tfds_builders.wisdm import wisdm_dataset_builder as wisdm
from tfds_builders.wisdm2019 import wisdm2019_dataset_builder as wisdm2019


@dataclasses.dataclass(eq=False)
class WeaklyConfig(tfds.core.BuilderConfig):
  """How windows are composed. See the module docstring for the meaning of each field."""

  source: str = "wisdm2019"  # 'wisdm2019' (watch acc + gyro, 6 channels) | 'wisdm' (v1.1)
  window: int = 1024  # samples per window, at the source's 20 Hz
  # (class name, source activity) per target class, in label order.
  targets: tuple[tuple[str, str], ...] = ()
  segment_min: int = 128  # samples; the target segment's length is uniform in [min, max]
  segment_max: int = 256
  blend: int = 20  # samples of raised-cosine cross-fade at each end of the segment
  windows_per_class: int = 64  # windows of each target class per subject
  seed: int = 0


# WISDM-2019 has no jumping and no separate up/down stairs. Jogging and stairs are two of the
# paper's four targets; kicking (a soccer ball) and dribbling (a basketball) stand in for
# jumping as short, whole-body, impulsive movements that a walking person could break into.
WISDM2019_TARGETS = (("jogging", "jogging"), ("stairs", "stairs"), ("kicking", "kicking"),
                     ("dribbling", "dribbling"))
# WISDM v1.1 holds three of the paper's four targets; nothing in it resembles jumping.
WISDM_TARGETS = (("upstairs", "Upstairs"), ("downstairs", "Downstairs"), ("jogging", "Jogging"))
BACKGROUND = {"wisdm2019": "walking", "wisdm": "Walking"}
SENSOR_NAMES = {"wisdm2019": ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"),
                "wisdm": ("acc_x", "acc_y", "acc_z")}
# Train and test subjects are disjoint: the source builders' test subjects form the test split.
TEST_SUBJECTS = {"wisdm2019": wisdm2019.TEST_SUBJECTS, "wisdm": wisdm.TEST_USERS}


@dataclasses.dataclass(frozen=True)
class Piece:
  """A stretch of one activity with no break: `signal[i]` is source sample `origin + i` of
  the source builder's `recording`."""

  origin: int
  signal: np.ndarray  # [n, sensors] float32
  recording: int = -1


# ---------------------------------------------------------------------------------------------
# Composition: a pure function of (config, subject, pieces).


def raised_cosine_weights(length: int, blend: int) -> np.ndarray:
  """Weight of the target over a segment: 0 → 1 over `blend` samples, 1, then 1 → 0."""
  w = np.ones(length, np.float64)
  b = min(blend, length // 2)
  if b > 0:
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(b) + 0.5) / b)
    w[:b], w[length - b:] = ramp, ramp[::-1]
  return w


def draw_offset(rng: np.random.Generator, pieces: list[Piece], length: int) -> tuple[int, int]:
  """(piece index, offset): uniform over every start of `length` samples inside a piece."""
  counts = np.array([max(len(p.signal) - length + 1, 0) for p in pieces], np.int64)
  u = int(rng.integers(int(counts.sum())))
  index = int(np.searchsorted(np.cumsum(counts), u, side="right"))
  return index, u - int(counts[:index].sum())


def compose_subject(config: WeaklyConfig, subject: int, pieces: dict[str, list[Piece]]):
  """Yields (key, example) for one subject's windows, class by class in label order.

  `pieces` maps a source activity name to its pieces. A class is skipped (with a log line) when
  the subject lacks a walking piece of `window` samples or a target piece of `segment_max`.
  """
  window, background = config.window, BACKGROUND[config.source]
  walking = [p for p in pieces.get(background, []) if len(p.signal) >= window]
  for class_index, (name, activity) in enumerate(config.targets):
    targets = [p for p in pieces.get(activity, []) if len(p.signal) >= config.segment_max]
    if not walking or not targets:
      logging.info("weakly: subject %d gives no %s windows (walking pieces >= %d: %d, %s "
                   "pieces >= %d: %d).", subject, name, window, len(walking), activity,
                   config.segment_max, len(targets))
      continue
    rng = np.random.default_rng([config.seed, subject, class_index])
    for i in range(config.windows_per_class):
      length = int(rng.integers(config.segment_min, config.segment_max + 1))
      start = int(rng.integers(window - length + 1))
      b, b_off = draw_offset(rng, walking, window)
      t, t_off = draw_offset(rng, targets, length)
      signal = walking[b].signal[b_off:b_off + window].astype(np.float64)
      w = raised_cosine_weights(length, config.blend)[:, None]
      signal[start:start + length] = ((1 - w) * signal[start:start + length]
                                      + w * targets[t].signal[t_off:t_off + length])
      yield f"{subject}_{name}_{i}", {
          "signal": signal.astype(np.float32),
          "label": name,
          "subject": subject,
          "segment_start": start,
          "segment_end": start + length,
          "background_start": walking[b].origin + b_off,
          "target_start": targets[t].origin + t_off,
          "recording": walking[b].recording,
          "start": walking[b].origin + b_off,
      }


# ---------------------------------------------------------------------------------------------
# Sources: each subject's pieces, read by the source builders' own parsers.


def wisdm2019_subjects(root) -> list[int]:
  """The subjects with a watch accelerometer file, as the wisdm2019 builder finds them."""
  return sorted(int(m.group(1)) for p in (root / "raw/watch/accel").iterdir()
                if (m := re.fullmatch(r"data_(\d+)_accel_watch\.txt", p.name)))


def wisdm2019_pieces(root, subject: int, activities) -> dict[str, list[Piece]]:
  """The aligned 20 Hz accel + gyro pieces of one subject: runs split at the builder's breaks.

  `origin` counts grid points from the run's grid origin, like the wisdm2019 `start` feature.
  """
  paths = {s: root / f"raw/watch/{s}/data_{subject}_{s}_watch.txt" for s in wisdm2019.SENSORS}
  downloads.require_files(paths.values())
  streams = {s: wisdm2019.parse_stream(p, subject) for s, p in paths.items()}
  letters = {name: letter for letter, name in wisdm2019.ACTIVITIES.items()}
  out = {}
  for activity in activities:
    recording = wisdm2019.recording_id(subject, letters[activity])
    signal, valid = wisdm2019.align(*(wisdm2019.run_samples(streams[s], letters[activity],
                                                            paths[s])
                                      for s in wisdm2019.SENSORS))
    out[activity] = [Piece(begin, signal[begin:end], recording)
                     for begin, end in _common.runs(valid) if valid[begin]]
  return out


def wisdm_pieces(records: wisdm.Records) -> dict[int, dict[str, list[Piece]]]:
  """Per user, the contiguous (user, activity) runs of the v1.1 file, as `subject_runs` cuts them.

  `origin` is the record index in the file (zero-timestamp rows removed), like the wisdm `start`,
  and `recording` the run's ordinal, like the wisdm `recording` under subject_runs.
  """
  out = {}
  keys = np.stack([records.user, records.activity], axis=1)
  for ordinal, (begin, end) in enumerate(_common.runs(keys)):
    user, activity = int(records.user[begin]), wisdm.ACTIVITIES[records.activity[begin]]
    out.setdefault(user, {}).setdefault(activity, []).append(
        Piece(begin, records.xyz[begin:end], ordinal))
  return out


# ---------------------------------------------------------------------------------------------
# The TFDS builder.


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for weakly labeled windows composed from WISDM-2019 or WISDM v1.1."""

  VERSION = tfds.core.Version("1.1.0")
  # Older versions with the same windows, splits and order, lacking only features: the trainer
  # reads one prepared before rather than rebuild (danhar_jax/input_pipeline.older_prepared).
  READABLE_VERSIONS = ("1.0.0",)
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": "Adds `recording` and `start`, the background's run and first sample (the "
               "source builder's), for the split protocols' overlap checks. Same windows, "
               "splits and order.",
  }
  BUILDER_CONFIGS = [
      WeaklyConfig(
          name="wisdm2019",
          description="WISDM-2019 smartwatch accel + gyro (6 channels, 20 Hz): 1024-sample "
          "(51.2 s) walking windows, each holding one 128-256-sample jogging, stairs, kicking "
          "or dribbling segment; 64 windows per class and subject.",
          source="wisdm2019", window=1024, targets=WISDM2019_TARGETS,
          segment_min=128, segment_max=256),
      WeaklyConfig(
          name="wisdm2019_2048",
          description="As wisdm2019 with the paper's 2048-sample windows (102.4 s at 20 Hz) "
          "and 256-512-sample segments.",
          source="wisdm2019", window=2048, targets=WISDM2019_TARGETS,
          segment_min=256, segment_max=512),
      WeaklyConfig(
          name="wisdm",
          description="WISDM v1.1 phone accelerometer (3 channels, 20 Hz): 512-sample walking "
          "windows holding one 64-128-sample upstairs, downstairs or jogging segment "
          "(v1.1's walking runs are often under 1024 records).",
          source="wisdm", window=512, targets=WISDM_TARGETS,
          segment_min=64, segment_max=128),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
The manual_dir is the source builder's:
* configs wisdm2019 and wisdm2019_2048 (the default): WISDM-2019, as for the wisdm2019 builder.
{wisdm2019.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS}
* config wisdm: WISDM v1.1, as for the wisdm builder.
{wisdm.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS}"""

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format, **kwargs)
    tfds_workarounds.default_to_array_record(self, file_format)

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    sensors = len(SENSOR_NAMES[config.source])
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            # The source's units: wisdm2019 accel x, y, z (m/s^2), gyro x, y, z (rad/s);
            # wisdm accel x, y, z (10 = 1 g).
            "signal": tfds.features.Tensor(shape=(config.window, sensors), dtype=np.float32),
            "label": tfds.features.ClassLabel(names=[name for name, _ in config.targets]),
            "subject": np.int32,
            # The target segment is signal[segment_start:segment_end] (cross-fades included).
            "segment_start": np.int32,
            "segment_end": np.int32,
            # Provenance, in the source builder's `start` units: the first background and
            # target samples taken from their pieces.
            "background_start": np.int32,
            "target_start": np.int32,
            # The background's recording and start again, under the names every builder
            # gives the split protocols (danhar_jax/splits.py).
            "recording": np.int32,
            "start": np.int32,
        }),
        supervised_keys=("signal", "label"),
        homepage="https://github.com/godwenbin/DanHAR",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    config = self.builder_config
    test = set(TEST_SUBJECTS[config.source])
    if config.source == "wisdm2019":
      root = downloads.find_raw_root(downloads.Downloads(dl_manager, wisdm2019.MARKER),
                                   wisdm2019.URL, wisdm2019.MARKER,
                                   self.MANUAL_DOWNLOAD_INSTRUCTIONS)
      wisdm2019.check_activity_key(root / "activity_key.txt")
      subjects = wisdm2019_subjects(root)
      if not subjects:
        raise _common.MissingRawFilesError(
            f"No data_<subject>_accel_watch.txt in {root / 'raw/watch/accel'}.\n"
            f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
      activities = [BACKGROUND["wisdm2019"], *(a for _, a in config.targets)]
      read = lambda s: wisdm2019_pieces(root, s, activities)
    else:
      root = downloads.find_raw_root(downloads.Downloads(dl_manager, wisdm.RAW_FILE), wisdm.URL,
                                   wisdm.RAW_FILE, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
      by_user = wisdm_pieces(wisdm.parse_raw(root / wisdm.RAW_FILE))
      subjects = sorted(by_user)
      read = by_user.__getitem__
    return {
        "train": self._generate_examples(read, [s for s in subjects if s not in test]),
        "test": self._generate_examples(read, [s for s in subjects if s in test]),
    }

  def _generate_examples(self, read, subjects):
    for subject in subjects:
      yield from compose_subject(self.builder_config, subject, read(subject))
