"""WISDM Activity Prediction v1.1 (Kwapisz, Weiss & Moore 2010), windowed as DanHAR's code does.

The raw file holds one phone accelerometer stream: `user,activity,timestamp,x,y,z;` records at a
nominal 20 Hz. DanHAR's preprocessing (godwenbin/DanHAR `WISDM_preprocess/code.py`) cuts
200-sample windows every 100 samples over the whole file in file order, labels each window with
its most frequent activity, and splits the windows at random 70/30. `random_split` (the default
config) reproduces that; `subject_runs` keeps windows inside one (user, activity) run so that the
trainer can split by user.

Each window records `recording` and `start`, which the split protocols (danhar_jax/splits.py) use
to find windows that share samples: two windows of one recording overlap when their starts are
fewer than 200 apart. `start` counts records from the file's first one in both configs (as
`--mode=predict` does); `recording` is 0 under `random_split`, whose windows run across users and
activities, so the whole file is one stream there, and the (user, activity) run's ordinal in file
order under `subject_runs`, whose windows never leave their run.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import _common
from tfds_builders import downloads
from tfds_builders import tfds_workarounds

URL = "https://www.cis.fordham.edu/wisdm/includes/datasets/latest/WISDM_ar_latest.tar.gz"
RAW_FILE = "WISDM_ar_v1.1_raw.txt"
# The authors' class order: pd.get_dummies sorts the activity names alphabetically.
ACTIVITIES = ("Downstairs", "Jogging", "Sitting", "Standing", "Upstairs", "Walking")
WINDOW, STEP = 200, 100  # 10 s at 20 Hz, 50% overlap (the code; the paper says 95%)
# sklearn's train_test_split(test_size=0.3, random_state=10), as in the authors' script.
TEST_FRACTION, SPLIT_SEED = 0.3, 10
# subject_runs: a fixed set of test users, the last 8 of the 36 ids (22% of the users).
TEST_USERS = tuple(range(29, 37))


# ---------------------------------------------------------------------------------------------
# Parsing.


@dataclasses.dataclass(frozen=True)
class Records:
  """The file's records in file order, zero-timestamp rows removed."""

  user: np.ndarray  # [n] int32
  activity: np.ndarray  # [n] int32, index into ACTIVITIES
  timestamp: np.ndarray  # [n] int64, the phone's uptime in ns
  xyz: np.ndarray  # [n, 3] float32, 10 = 1 g

  def __len__(self) -> int:
    return len(self.user)


def parse_raw(path) -> Records:
  """Parses WISDM_ar_v1.1_raw.txt, tolerating its documented quirks.

  Grammar: every record is `user,activity,timestamp,x,y,z` terminated by `;`. Tolerated: several
  records on one physical line, one stray `,` before the `;`, blank lines, CRLF or LF endings,
  spaces around fields, and records whose timestamp is 0 (dropped: they carry no reading). Any
  other deviation raises RawFormatError naming the file and the 1-based physical line.
  """
  path = _common.Path(path)
  if not path.exists():
    raise _common.MissingRawFilesError(f"Missing raw file: {path}")
  data = path.read_bytes()
  # The fast path handles the clean common case with vectorised numpy conversion and gives up
  # (None) on anything unusual; the slow path is the reference grammar and names the bad line.
  records = _parse_fast(data)
  if records is None:
    records = parse_raw_slow(data, path)
  if not len(records):
    raise _common.RawFormatError(path, None, "no records (empty file?)")
  return records


_ACTIVITY_INDEX = {name: i for i, name in enumerate(ACTIVITIES)}


def _parse_fast(data: bytes) -> Records | None:
  try:
    text = data.decode("ascii")
  except UnicodeDecodeError:
    return None
  text = text.replace("\r\n", "\n").replace(",;", ";")
  lines = [line for line in text.split("\n") if line]
  if (any(c in text for c in "\r \t") or ";;" in text
      or not all(line[0] != ";" and line[-1] == ";" for line in lines)):
    return None
  # Activity names become their class index, and every record its own line: the text is then
  # plain CSV of numbers for numpy's C parser.
  text = "".join(lines)
  for index, name in enumerate(ACTIVITIES):
    text = text.replace(f",{name},", f",{index},")
  text = text.replace(";", "\n")
  if not text:
    return _records([], [], [], [])
  try:
    table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=_ROW, comments=None, ndmin=1)
  except ValueError:
    return None
  xyz = np.stack([table["x"], table["y"], table["z"]], axis=1)
  if not ((np.abs(xyz) <= _FLOAT32_MAX).all() and _in_range(table["user"], table["activity"])):
    return None
  return _records(table["user"], table["activity"], table["timestamp"], xyz)


# The records are stored as float32: a larger reading would become inf there.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_ROW = np.dtype([("user", np.int64), ("activity", np.int64), ("timestamp", np.int64),
                 ("x", np.float64), ("y", np.float64), ("z", np.float64)])


def _in_range(user: np.ndarray, activity: np.ndarray) -> bool:
  return bool(((user >= 0) & (user <= np.iinfo(np.int32).max)).all()
              and ((activity >= 0) & (activity < len(ACTIVITIES))).all())


def parse_raw_slow(data: bytes, path) -> Records:
  """The reference grammar, line by line: used when the fast path declines."""
  user, activity, timestamp, xyz = [], [], [], []
  for number, line in enumerate(data.split(b"\n"), start=1):
    try:
      line = line.decode("ascii").strip()
    except UnicodeDecodeError:
      raise _common.RawFormatError(path, number, "non-ASCII bytes") from None
    if not line:
      continue
    if not line.endswith(";"):
      raise _common.RawFormatError(
          path, number, f"record not terminated by ';' (truncated line?): {line[-60:]!r}")
    for record in line[:-1].split(";"):
      record = record.strip()
      if record.endswith(","):
        record = record[:-1]
      values = [v.strip() for v in record.split(",")]
      if len(values) != 6:
        raise _common.RawFormatError(
            path, number, f"expected 6 fields user,activity,timestamp,x,y,z, got "
            f"{len(values)}: {record[:80]!r}")
      if values[1] not in _ACTIVITY_INDEX:
        raise _common.RawFormatError(
            path, number, f"unknown activity {values[1]!r}; expected one of {ACTIVITIES}")
      try:
        if "_" in record:  # Python's int() and float() accept "1_000"; numpy does not.
          raise ValueError(record)
        u, t = int(values[0]), int(values[2])
        x, y, z = (float(v) for v in values[3:])
      except ValueError:
        raise _common.RawFormatError(
            path, number, f"non-numeric field in {record[:80]!r}") from None
      if not ((np.abs([x, y, z]) <= _FLOAT32_MAX).all() and 0 <= u <= np.iinfo(np.int32).max
              and abs(t) < 2**63):
        raise _common.RawFormatError(
            path, number, f"non-finite or out-of-range value in {record[:80]!r}")
      user.append(u)
      activity.append(_ACTIVITY_INDEX[values[1]])
      timestamp.append(t)
      xyz.append((x, y, z))
  return _records(user, activity, timestamp, xyz)


def _records(user, activity, timestamp, xyz) -> Records:
  timestamp = np.asarray(timestamp, np.int64)
  keep = timestamp != 0
  return Records(
      user=np.asarray(user, np.int32)[keep],
      activity=np.asarray(activity, np.int32)[keep],
      timestamp=timestamp[keep],
      xyz=np.asarray(xyz, np.float64).reshape(-1, 3)[keep].astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Windowing: the two protocols.


def authors_window_starts(n: int) -> np.ndarray:
  """`range(0, len(data) - 200, 100)`, exactly the authors' loop.

  Its exclusive bound drops the last full window when (n - 200) is a multiple of 100.
  """
  return np.arange(0, max(n - WINDOW, 0), STEP, dtype=np.int64)


def random_split_windows(records: Records) -> tuple[np.ndarray, np.ndarray]:
  """Starts of the authors' windows over the whole file, and their random test mask."""
  starts = authors_window_starts(len(records))
  return starts, sklearn_test_mask(len(starts), TEST_FRACTION, SPLIT_SEED)


def sklearn_test_mask(n: int, test_fraction: float, seed: int) -> np.ndarray:
  """The test rows of sklearn's `train_test_split(test_size=test_fraction, random_state=seed)`.

  ShuffleSplit draws `RandomState(seed).permutation(n)` and takes its first ceil(0.3 n) entries
  as the test set, so this selects the same windows as the authors' script would from the same
  window list. (`_common.random_test_mask` uses numpy's newer Generator and cannot.)
  """
  mask = np.zeros(n, bool)
  mask[np.random.RandomState(seed).permutation(n)[:int(np.ceil(test_fraction * n))]] = True
  return mask


def subject_run_windows(records: Records) -> np.ndarray:
  """Starts of the windows that lie inside one contiguous (user, activity) run."""
  keys = np.stack([records.user, records.activity], axis=1)
  return np.concatenate(
      [begin + _common.window_starts(end - begin, WINDOW, STEP)
       for begin, end in _common.runs(keys)] or [np.zeros((0,), np.int64)])


# ---------------------------------------------------------------------------------------------
# The TFDS builder.


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for WISDM v1.1, the DanHAR protocol."""

  VERSION = tfds.core.Version("1.1.0")
  # Older versions with the same windows, splits and order, lacking only features: the trainer
  # reads one prepared before rather than rebuild (danhar_jax/input_pipeline.older_prepared).
  READABLE_VERSIONS = ("1.0.0",)
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": "Adds `recording` (0 under random_split, the (user, activity) run's ordinal "
               "under subject_runs), for the split protocols' overlap checks. Same windows, "
               "splits and order.",
  }
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(
          name="random_split",
          description="The authors' code: 200-sample windows every 100 samples over the whole "
          "file (windows may cross users and activities), majority label and user, random "
          "70/30 split (sklearn, random_state=10)."),
      tfds.core.BuilderConfig(
          name="subject_runs",
          description="200-sample windows every 100 samples inside each contiguous (user, "
          f"activity) run; users {TEST_USERS[0]}-{TEST_USERS[-1]} are the test split."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download {URL}
and put WISDM_ar_latest.tar.gz, or the WISDM_ar_v1.1/ folder it extracts to (which holds
{RAW_FILE}), in the manual_dir (--manual_dir=...; the default is
<data_dir>/downloads/manual/). The builder also tries the URL itself when online.
"""

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format, **kwargs)
    tfds_workarounds.default_to_array_record(self, file_format)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "signal": tfds.features.Tensor(shape=(WINDOW, 3), dtype=np.float32),
            "label": tfds.features.ClassLabel(names=ACTIVITIES),
            "subject": np.int32,
            # The stream `start` counts in (see the module docstring): 0, or the run's ordinal.
            "recording": np.int32,
            # Index of the window's first record among the file's records (zero-timestamp
            # rows removed).
            "start": np.int32,
        }),
        supervised_keys=("signal", "label"),
        homepage="https://www.cis.fordham.edu/wisdm/dataset.php",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = downloads.find_raw_root(downloads.Downloads(dl_manager, RAW_FILE), URL, RAW_FILE,
                                 self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    path = root / RAW_FILE
    progress = _common.Progress(self.name, total_files=1)
    records = parse_raw(path)
    progress.file_done(path, len(records))
    if self.builder_config.name == "random_split":
      starts, is_test = random_split_windows(records)
    else:
      starts = subject_run_windows(records)
      is_test = np.isin(_majority(records.user, starts), TEST_USERS)
    if not len(starts):
      raise _common.RawFormatError(path, None, f"{len(records)} records: too few for one "
                                   f"{WINDOW}-sample window")
    recording = (np.zeros(len(records), np.int64) if self.builder_config.name == "random_split"
                 else run_ordinals(records))
    return {
        "train": self._generate_examples(records, starts[~is_test], recording),
        "test": self._generate_examples(records, starts[is_test], recording),
    }

  def _generate_examples(self, records: Records, starts: np.ndarray, recording: np.ndarray):
    labels = _majority(records.activity, starts)
    subjects = _majority(records.user, starts)
    for start, label, subject in zip(starts.tolist(), labels.tolist(), subjects.tolist()):
      yield start, {
          "signal": records.xyz[start:start + WINDOW],
          "label": label,
          "subject": subject,
          "recording": int(recording[start]),
          "start": start,
      }


def run_ordinals(records: Records) -> np.ndarray:
  """Per record, the ordinal of its contiguous (user, activity) run in file order."""
  ordinal = np.zeros(len(records), np.int64)
  for i, (begin, end) in enumerate(_common.runs(np.stack([records.user, records.activity], 1))):
    ordinal[begin:end] = i
  return ordinal


def _majority(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
  """Each window's most frequent value, ties to the smallest (scipy.stats.mode)."""
  return np.array([_common.majority(values[s:s + WINDOW]) for s in starts.tolist()], np.int64)
