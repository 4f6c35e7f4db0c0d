"""WISDM-2019 smartwatch (Weiss 2019, UCI 507): accelerometer + gyroscope on one 20 Hz grid.

Each subject has two raw files, `raw/watch/accel/data_<subject>_accel_watch.txt` and
`raw/watch/gyro/data_<subject>_gyro_watch.txt`, one `subject,activity,timestamp_ns,x,y,z;` record
per line. The two sensors are separate streams: their lengths differ, one may start a few hundred
ms after the other, and both have gaps (up to 0.3 s in the 12 subjects staged here) next to
bursts of samples 10 ms apart. So the builder puts both on one 50 ms grid per (subject,
activity) run:

1. A run is every record of one activity letter in a subject's file, in file order (each of the
   18 activities is one 3-minute block). Repeated timestamps keep their first record; a
   timestamp that goes backwards is a RawFormatError, because no alignment would be safe.
2. The grid starts at the later of the two streams' first samples, steps 50 ms, and ends at the
   earlier of their last samples.
3. Each stream is linearly interpolated onto the grid (`np.interp` per channel).
4. A grid point is kept only when, in both streams, the two real samples around it are at most
   MAX_GAP = 100 ms (two sample periods) apart. So no value is ever interpolated across a gap:
   the run breaks there into segments, and windows never span a break.
5. Windows: 200 grid points every 100, inside each segment. `start` is the window's first grid
   index counted from the run's grid origin, so `start * 50 ms` is its time since that origin.
   `recording` names the run, `subject * 100 + activity index` (1600 walking is 160000), so two
   windows share samples exactly when their recordings match and their starts are fewer than
   200 apart: what the split protocols (danhar_jax/splits.py) check.
"""

from __future__ import annotations

import dataclasses
import io
import re

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import _common
from tfds_builders import downloads
from tfds_builders import tfds_workarounds

URL = ("https://archive.ics.uci.edu/static/public/507/"
       "wisdm+smartphone+and+smartwatch+activity+and+biometrics+dataset.zip")
MARKER = "raw/watch/accel"  # relative to the extracted wisdm-dataset/ folder
# activity_key.txt, in letter order (there is no N).
ACTIVITIES = {
    "A": "walking", "B": "jogging", "C": "stairs", "D": "sitting", "E": "standing",
    "F": "typing", "G": "teeth", "H": "soup", "I": "chips", "J": "pasta", "K": "drinking",
    "L": "sandwich", "M": "kicking", "O": "catch", "P": "dribbling", "Q": "writing",
    "R": "clapping", "S": "folding",
}
SENSORS = ("accel", "gyro")  # channels: accel x, y, z, then gyro x, y, z
PERIOD_NS = 50_000_000  # 20 Hz
MAX_GAP_NS = 2 * PERIOD_NS
WINDOW, STEP = 200, 100  # 10 s, 50% overlap: the WISDM v1.1 windows DanHAR uses
# The default split; the trainer re-splits by `subject` with config.test_subjects. Four of the
# twelve staged subjects (1600-1611) form the test split; the other 39 subjects of the full
# release (1612-1650) would all be training subjects.
TEST_SUBJECTS = (1608, 1609, 1610, 1611)


def recording_id(subject: int, letter: str) -> int:
  """The (subject, activity) run's id: subject * 100 + the activity's index in letter order."""
  return subject * 100 + list(ACTIVITIES).index(letter)


# ---------------------------------------------------------------------------------------------
# Parsing.


@dataclasses.dataclass(frozen=True)
class Stream:
  """One raw file: records in file order."""

  activity: np.ndarray  # [n] uint8, the activity letter's code point
  timestamp: np.ndarray  # [n] int64 ns
  values: np.ndarray  # [n, 3] float64
  line: np.ndarray  # [n] 1-based physical line of each record


def parse_stream(path, subject: int) -> Stream:
  """Parses one raw watch file; every deviation is a RawFormatError naming the file and line."""
  path = _common.Path(path)
  data = path.read_bytes()
  # The fast path handles the clean common case with numpy and gives up (None) on anything
  # unusual; the slow path is the reference grammar and names the bad line.
  stream = _parse_fast(data, subject)
  if stream is None:
    stream = _parse_slow(data.split(b"\n"), path, subject)
  if not len(stream.timestamp):
    raise _common.RawFormatError(path, None, "no records (empty file?)")
  # Stored as float32: a reading beyond its range (or "1e400", read as inf) would be inf there.
  bad = ~(np.abs(stream.values) <= np.finfo(np.float32).max).all(axis=1)
  if bad.any():
    raise _common.RawFormatError(path, int(stream.line[np.argmax(bad)]),
                                 "non-finite value (or one beyond float32)")
  return stream


_ROW = np.dtype([("subject", np.int64), ("activity", "S2"), ("timestamp", np.int64),
                 ("x", np.float64), ("y", np.float64), ("z", np.float64)])
_LETTERS = np.array([letter.encode() for letter in ACTIVITIES], "S2")


def _parse_fast(data: bytes, subject: int) -> Stream | None:
  data = data.replace(b"\r\n", b"\n")
  # numpy's parser is laxer than the grammar about these; the slow path decides.
  if any(c in data for c in (b" ", b"\t", b"\r", b"+", b"_")):
    return None
  # One record per non-blank line: every ';' ends a line, and there are as many as lines.
  newline = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
  line_length = np.diff(np.concatenate([[-1], newline, [len(data)]])) - 1
  line = np.flatnonzero(line_length > 0) + 1
  semicolons = data.count(b";")
  if semicolons != data.count(b";\n") + data.endswith(b";") or semicolons != len(line):
    return None
  if not len(line):
    return None  # no records: the slow path says so
  try:
    table = np.loadtxt(io.StringIO(data.replace(b";", b"").decode("ascii")), delimiter=",",
                       dtype=_ROW, comments=None, ndmin=1)
  except (UnicodeDecodeError, ValueError):
    return None
  values = np.stack([table["x"], table["y"], table["z"]], axis=1)
  if (len(table) != len(line) or not np.isin(table["activity"], _LETTERS).all()
      or not (table["subject"] == subject).all() or not (table["timestamp"] >= 0).all()
      or not np.isfinite(values).all()):
    return None
  activity = np.frombuffer(table["activity"].astype("S1").tobytes(), np.uint8)
  return Stream(activity, table["timestamp"], values, line)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _parse_slow(lines: list[bytes], path, subject: int) -> Stream:
  """The reference grammar, line by line."""
  activity, timestamp, values, numbers = [], [], [], []
  for number, raw in enumerate(lines, start=1):
    try:
      line = raw.decode("ascii").strip()
    except UnicodeDecodeError:
      raise _common.RawFormatError(path, number, "non-ASCII bytes") from None
    if not line:
      continue
    if not line.endswith(";") or ";" in line[:-1]:
      raise _common.RawFormatError(
          path, number, f"expected one record terminated by ';' (truncated line?): {line[:80]!r}")
    fields = line[:-1].split(",")
    if len(fields) != 6:
      raise _common.RawFormatError(
          path, number, f"expected 6 fields subject,activity,timestamp,x,y,z, got {len(fields)}")
    if fields[0] != str(subject):
      raise _common.RawFormatError(
          path, number, f"subject {fields[0]!r} in the file of subject {subject}")
    if fields[1] not in ACTIVITIES:
      raise _common.RawFormatError(path, number, f"unknown activity letter {fields[1]!r}")
    if not (fields[2].isdigit() and all(_NUMBER.fullmatch(v) for v in fields[3:])):
      raise _common.RawFormatError(path, number, f"non-numeric field in {line[:80]!r}")
    if int(fields[2]) >= 2**63:
      raise _common.RawFormatError(path, number, f"timestamp {fields[2][:30]} beyond int64")
    activity.append(ord(fields[1]))
    timestamp.append(int(fields[2]))
    values.append([float(v) for v in fields[3:]])
    numbers.append(number)
  return Stream(np.asarray(activity, np.uint8), np.asarray(timestamp, np.int64),
                np.asarray(values, np.float64).reshape(-1, 3), np.asarray(numbers, np.int64))


# ---------------------------------------------------------------------------------------------
# Alignment onto the 20 Hz grid (see the module docstring).


def run_samples(stream: Stream, letter: str, path) -> tuple[np.ndarray, np.ndarray]:
  """(timestamps, values) of one activity's records: strictly increasing, duplicates dropped."""
  rows = np.flatnonzero(stream.activity == ord(letter))
  t = stream.timestamp[rows]
  step = np.diff(t)
  if (step < 0).any():
    bad = rows[int(np.argmax(step < 0)) + 1]
    raise _common.RawFormatError(path, int(stream.line[bad]),
                                 f"timestamp goes backwards within activity {letter}")
  keep = np.concatenate([[True], step > 0])[:len(t)]  # a letter may be absent: no rows
  return t[keep], stream.values[rows[keep]]


def align(accel: tuple[np.ndarray, np.ndarray],
          gyro: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Both streams on one 50 ms grid: (signal [n, 6] float32, valid [n] bool)."""
  (ta, va), (tg, vg) = accel, gyro
  if not len(ta) or not len(tg):
    return np.zeros((0, 6), np.float32), np.zeros((0,), bool)
  origin, end = max(ta[0], tg[0]), min(ta[-1], tg[-1])
  if end < origin:
    return np.zeros((0, 6), np.float32), np.zeros((0,), bool)
  grid = origin + PERIOD_NS * np.arange((end - origin) // PERIOD_NS + 1, dtype=np.int64)
  valid = _bracketed(ta, grid) & _bracketed(tg, grid)
  # Points that are not valid get values too, but no window ever includes them.
  signal = np.concatenate([_interp(grid, ta, va), _interp(grid, tg, vg)], axis=1)
  return signal.astype(np.float32), valid


def _bracketed(t: np.ndarray, grid: np.ndarray) -> np.ndarray:
  """Whether the real samples just before (or at) and just after each grid point are close."""
  after = np.searchsorted(t, grid, side="right")  # first sample later than the grid point
  inside = (after > 0) & (after < len(t))
  gap = np.where(inside, t[np.minimum(after, len(t) - 1)] - t[np.maximum(after - 1, 0)], 0)
  on_last = grid == t[-1]  # the last sample itself needs no neighbour after it
  return (inside & (gap <= MAX_GAP_NS)) | on_last


def _interp(grid: np.ndarray, t: np.ndarray, values: np.ndarray) -> np.ndarray:
  # Relative times keep full float64 precision (the clocks read up to ~2e15 ns).
  x, xp = (grid - t[0]).astype(np.float64), (t - t[0]).astype(np.float64)
  return np.stack([np.interp(x, xp, values[:, k]) for k in range(values.shape[1])], axis=1)


def activity_windows(streams: dict[str, Stream], paths: dict[str, object]):
  """Yields (letter, grid origin ns, signal [n, 6], window starts) for each activity run.

  What the builder stores, and what `--mode=predict` runs on: one code path for both.
  """
  for letter in ACTIVITIES:
    runs = [run_samples(streams[s], letter, paths[s]) for s in SENSORS]
    signal, valid = align(*runs)
    origin = max(runs[0][0][0], runs[1][0][0]) if len(signal) else 0
    yield letter, int(origin), signal, segment_window_starts(valid)


def segment_window_starts(valid: np.ndarray) -> np.ndarray:
  """Starts of the 200-point windows inside each maximal run of valid grid points."""
  segments = _common.runs(valid) if len(valid) else []
  starts = [begin + _common.window_starts(end - begin, WINDOW, STEP)
            for begin, end in segments if valid[begin]]
  return np.concatenate(starts) if starts else np.zeros((0,), np.int64)


# ---------------------------------------------------------------------------------------------
# The TFDS builder.


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for the WISDM-2019 smartwatch accelerometer + gyroscope."""

  VERSION = tfds.core.Version("1.1.0")
  # Older versions with the same windows, splits and order, lacking only features: the trainer
  # reads one prepared before rather than rebuild (danhar_jax/input_pipeline.older_prepared).
  READABLE_VERSIONS = ("1.0.0",)
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": "Adds `recording` (subject * 100 + activity index), for the split protocols' "
               "overlap checks. Same windows, splits and order.",
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download {URL}
and put that zip, the wisdm-dataset.zip inside it, or the wisdm-dataset/ folder it extracts to
in the manual_dir (--manual_dir=...; the default is <data_dir>/downloads/manual/). The builder
reads wisdm-dataset/raw/watch/accel/data_<subject>_accel_watch.txt and
wisdm-dataset/raw/watch/gyro/data_<subject>_gyro_watch.txt for every subject it finds
(1600-1650 in the full release). The builder also tries the URL itself when online.
"""

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format, **kwargs)
    tfds_workarounds.default_to_array_record(self, file_format)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            # accel x, y, z (m/s^2), gyro x, y, z (rad/s) on the 20 Hz grid.
            "signal": tfds.features.Tensor(shape=(WINDOW, 6), dtype=np.float32),
            "label": tfds.features.ClassLabel(names=list(ACTIVITIES.values())),
            "subject": np.int32,
            # The (subject, activity) run: `recording_id`.
            "recording": np.int32,
            # First grid index from the run's grid origin (50 ms per index).
            "start": np.int32,
        }),
        supervised_keys=("signal", "label"),
        homepage="https://archive.ics.uci.edu/dataset/507",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = downloads.find_raw_root(downloads.Downloads(dl_manager, MARKER), URL, MARKER,
                                 self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    check_activity_key(root / "activity_key.txt")
    subjects = sorted(int(m.group(1)) for p in (root / "raw/watch/accel").iterdir()
                      if (m := re.fullmatch(r"data_(\d+)_accel_watch\.txt", p.name)))
    if not subjects:
      raise _common.MissingRawFilesError(
          f"No data_<subject>_accel_watch.txt in {root / 'raw/watch/accel'}.\n"
          f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
    paths = {s: {sensor: root / f"raw/watch/{sensor}/data_{s}_{sensor}_watch.txt"
                 for sensor in SENSORS} for s in subjects}
    downloads.require_files(p for pair in paths.values() for p in pair.values())
    return {
        "train": self._generate_examples(paths, [s for s in subjects if s not in TEST_SUBJECTS]),
        "test": self._generate_examples(paths, [s for s in subjects if s in TEST_SUBJECTS]),
    }

  def _generate_examples(self, paths, subjects):
    progress = _common.Progress(self.name, total_files=2 * len(subjects))
    for subject in subjects:
      streams = {}
      for sensor, path in paths[subject].items():
        streams[sensor] = parse_stream(path, subject)
        progress.file_done(path, len(streams[sensor].timestamp))
      for letter, _, signal, starts in activity_windows(streams, paths[subject]):
        for start in starts.tolist():
          yield f"{subject}_{letter}_{start}", {
              "signal": signal[start:start + WINDOW],
              "label": ACTIVITIES[letter],
              "subject": subject,
              "recording": recording_id(subject, letter),
              "start": start,
          }


def check_activity_key(path) -> None:
  """The class names are fixed in code; refuse a release whose activity_key.txt disagrees."""
  if not path.exists():
    return
  found = {}
  for line in path.read_text().splitlines():
    if "=" in line:
      name, letter = (part.strip() for part in line.split("=", 1))
      found[letter] = name
  if found != ACTIVITIES:
    raise _common.RawFormatError(path, None, f"activity key {found} differs from {ACTIVITIES}")
