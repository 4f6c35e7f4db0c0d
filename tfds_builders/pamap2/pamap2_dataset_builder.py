"""PAMAP2 Physical Activity Monitoring (Reiss & Stricker 2012), windowed as the DanHAR paper says.

Each `Protocol/subject10X.dat` is a whitespace-separated table of 54 columns at 100 Hz (readme.pdf
§II.1): timestamp, activityID, heart rate, then three 17-column IMU blocks (hand, chest, ankle),
with `NaN` for missing values. DanHAR ships no PAMAP2 preprocessing; its training files are
(N, 171, 40) windows with an 18-wide one-hot label, and the paper gives 100 -> 33.3 Hz, 171-sample
(5.12 s) windows with 78% overlap, and subjects 105 and 106 as the test set. This builder does
that:

1. keep 40 channels: heart rate, and per IMU temperature, acc ±16 g, acc ±6 g, gyroscope and
   magnetometer (the orientation quaternion is "invalid in this data collection");
2. cut each subject file into contiguous runs of one activityID and drop the transient id 0;
3. fill the gaps of each run per channel: heart rate (~9 Hz) is held forward, and backward
   before its first reading; IMU gaps are interpolated linearly, and held at the run's edges;
   a run in which some channel never has a value is dropped, with a warning;
4. keep every 3rd sample of the run, from its first (100 -> 33.3 Hz);
5. cut 171-sample windows every round(171 * 0.22) = 38 samples (78% overlap) inside the run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import _common
from tfds_builders import downloads
from tfds_builders import tfds_workarounds

URL = "https://archive.ics.uci.edu/static/public/231/pamap2+physical+activity+monitoring.zip"
NUM_COLUMNS = 54
SUBJECTS = tuple(range(101, 110))
TEST_SUBJECTS = (105, 106)
MARKER = "Protocol/subject101.dat"

# The 18 non-zero activityIDs of readme.pdf, in id order: class i is the i-th id. The authors'
# one-hot labels are 18 wide, although only the 12 protocol activities occur in Protocol/.
ACTIVITIES = {
    1: "lying", 2: "sitting", 3: "standing", 4: "walking", 5: "running", 6: "cycling",
    7: "Nordic walking", 9: "watching TV", 10: "computer work", 11: "car driving",
    12: "ascending stairs", 13: "descending stairs", 16: "vacuum cleaning", 17: "ironing",
    18: "folding laundry", 19: "house cleaning", 20: "playing soccer", 24: "rope jumping",
}
ACTIVITY_IDS = tuple(ACTIVITIES)
TRANSIENT = 0  # "other (transient activities)": readme.pdf says it should be discarded

IMUS = ("hand", "chest", "ankle")
# The first 13 of each IMU block's 17 columns; the last 4 are the orientation quaternion.
IMU_FIELDS = ("temperature", "acc16_x", "acc16_y", "acc16_z", "acc6_x", "acc6_y", "acc6_z",
              "gyro_x", "gyro_y", "gyro_z", "mag_x", "mag_y", "mag_z")
CHANNELS = ("heart_rate",) + tuple(f"{imu}_{field}" for imu in IMUS for field in IMU_FIELDS)
# 0-based .dat columns of CHANNELS: heart rate is column 2; the IMU blocks start at 3, 20, 37.
CHANNEL_COLUMNS = (2,) + tuple(3 + 17 * i + k for i in range(len(IMUS))
                               for k in range(len(IMU_FIELDS)))

DOWNSAMPLE = 3  # 100 Hz -> 33.3 Hz
WINDOW = 171  # 5.12 s at 33.3 Hz
STEP = round(WINDOW * (1 - 0.78))  # 38 samples: 78% overlap, as the paper and ReadyHAR say


def load_subject(path) -> np.ndarray:
  """A subject's .dat file as float64 [rows, 54], with its activityID column checked."""
  table = _common.read_numeric_table(path, NUM_COLUMNS)
  activity = table[:, 1]
  bad = ~np.isin(activity, (TRANSIENT,) + ACTIVITY_IDS)  # NaN is never "in"
  if bad.any():
    row = int(np.argmax(bad))
    raise _common.RawFormatError(path, row + 1, f"activityID {activity[row]:g} is not one of "
                                 f"the ids of readme.pdf ({TRANSIENT}, {ACTIVITY_IDS})")
  return table


def subject_windows(table: np.ndarray, path) -> Iterator[tuple[int, int, np.ndarray]]:
  """Yields (start row, class, float32 signal [WINDOW, 40]) for each window of one subject.

  `start row` is the 0-based row of the .dat file (= line - 1) of the window's first sample; the
  window holds rows start, start + 3, ..., start + 3 * 170.
  """
  activity = table[:, 1].astype(np.int64)
  for begin, end in _common.runs(activity):
    activity_id = int(activity[begin])
    if activity_id == TRANSIENT:
      continue
    run = fill_run(table[begin:end, CHANNEL_COLUMNS])
    empty = np.isnan(run).all(axis=0)
    if empty.any():
      logging.warning(
          "pamap2: %s lines %d-%d (%s): no value at all for %s; dropping this run's %d windows",
          path, begin + 1, end, ACTIVITIES[activity_id],
          ", ".join(np.asarray(CHANNELS)[empty]), num_windows(end - begin))
      continue
    # After filling only +-inf can remain; they are errors in the file.
    _common.check_finite(run, path, "the 40 kept channels", first_line=begin + 1)
    run = run[::DOWNSAMPLE].astype(np.float32)
    for start in _common.window_starts(len(run), WINDOW, STEP).tolist():
      signal = run[start:start + WINDOW]
      assert not np.isnan(signal).any(), (path, begin, start)
      yield begin + DOWNSAMPLE * start, ACTIVITY_IDS.index(activity_id), signal


def fill_run(run: np.ndarray) -> np.ndarray:
  """Fills the NaN gaps of one activity run [time, 40 channels] at 100 Hz, channel by channel."""
  filled = np.empty(run.shape, np.float64)
  filled[:, 0] = hold(run[:, 0])  # a heart rate reading stays valid until the next one
  filled[:, 1:] = _common.fill_nan_linear(run[:, 1:], leading="hold", trailing="hold")
  return filled


def hold(x: np.ndarray) -> np.ndarray:
  """Each NaN of `x` [time] takes the last value before it, or the first value if none precedes."""
  valid = ~np.isnan(x)
  if not valid.any():
    return x.copy()
  index = np.where(valid, np.arange(len(x)), 0)
  np.maximum.accumulate(index, out=index)
  first = int(np.argmax(valid))
  index[:first] = first
  return x[index]


def num_windows(rows: int) -> int:
  """Windows in a run of `rows` samples at 100 Hz."""
  return len(_common.window_starts(-(-rows // DOWNSAMPLE), WINDOW, STEP))


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for PAMAP2 (Protocol/ files), the DanHAR protocol."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download {URL}
  and put in the manual_dir (--manual_dir=...; the default is <data_dir>/downloads/manual/) one
  of: that zip as downloaded, the PAMAP2_Dataset.zip inside it, or the PAMAP2_Dataset/ folder that
  one extracts to, which must hold Protocol/subject101.dat ... Protocol/subject109.dat (nine
  files). The builder also tries the URL itself when online.
  """

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format, **kwargs)
    tfds_workarounds.default_to_array_record(self, file_format)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            # Stored as raw bytes: TFDS's default float_list encoding is ~10x slower to write.
            "signal": tfds.features.Tensor(shape=(WINDOW, len(CHANNELS)), dtype=np.float32,
                                           encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.ClassLabel(names=list(ACTIVITIES.values())),
            "subject": np.int32,
            # 0-based row (= line - 1) of the subject's .dat file where the window starts.
            "start": np.int32,
        }),
        supervised_keys=("signal", "label"),
        homepage="https://archive.ics.uci.edu/dataset/231/pamap2+physical+activity+monitoring",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = downloads.find_raw_root(downloads.Downloads(dl_manager, MARKER), URL, MARKER,
                                 self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    paths = downloads.require_files(root / "Protocol" / f"subject{s}.dat" for s in SUBJECTS)
    files = dict(zip(SUBJECTS, paths))
    return {
        "train": self._generate_examples(
            {s: p for s, p in files.items() if s not in TEST_SUBJECTS}),
        "test": self._generate_examples({s: files[s] for s in TEST_SUBJECTS}),
    }

  def _generate_examples(self, files: dict[int, _common.Path]):
    progress = _common.Progress(f"{self.name} ({', '.join(map(str, files))})", len(files))
    for subject, path in files.items():
      table = load_subject(path)
      for start, label, signal in subject_windows(table, path):
        yield f"{subject}_{start:07d}", {
            "signal": signal,
            "label": label,
            "subject": subject,
            "start": start,
        }
      progress.file_done(path, len(table))
