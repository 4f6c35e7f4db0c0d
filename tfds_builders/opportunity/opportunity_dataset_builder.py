"""OPPORTUNITY Activity Recognition (Roggen et al. 2010), the challenge protocol as DanHAR runs it.

Each `dataset/S{1..4}-{ADL1..5,Drill}.dat` is a whitespace-separated table of 250 columns at
~30 Hz with `NaN` for missing values; `dataset/column_names.txt` names the columns and
`dataset/label_legend.txt` the label codes. DanHAR ships Ordóñez's DeepConvLSTM preprocessing
(godwenbin/DanHAR `HAR_Dataset/opportunity/preprocess_data.py`, identical in its thresholds to
STRCWearlab/DeepConvLSTM_py3 `preprocess_data.py` @ 0a0f5d7f) and cuts windows with a label taken
from the last sample (`cut_opp.py`). This builder does the same, per run file:

1. keep the 113 body-worn channels, chosen by name from column_names.txt: the 12 body-worn
   3-axis accelerometers, the five arm/back IMUs without their quaternions (acc, gyro, magnetic)
   and the two shoe IMUs (all 16 columns each);
2. label = ML_Both_Arms: 0 = Null and the 17 gestures 1..17 in DeepConvLSTM's order (406516 ->
   1 ... 405506 -> 17), names checked against label_legend.txt;
3. fill NaN gaps per channel as the authors' `pandas.Series.interpolate()` does: linear inside
   the run file, the last value held after the last reading, and NaN (then 0, as
   `data_x[np.isnan(data_x)] = 0`) before the first reading and in a channel with no reading;
4. min-max normalise with the authors' fixed per-channel thresholds, then clip as they do
   (values above 1 become 0.99, values below 0 become 0);
5. cut 64-sample windows every 8 samples inside each run file; a window's label is its last
   sample's.

Split (the OPPORTUNITY challenge, as in DeepConvLSTM): train = S1 (all six runs) and S2, S3
Drill and ADL1-3 (DeepConvLSTM_py3 holds S2/S3-ADL3 out as validation; DanHAR's script trains on
them); test = S2-ADL4, S2-ADL5, S3-ADL4, S3-ADL5. Subject 4 is not used.

Two builder configs, the same channels, windows and split:
- `challenge` (the default): 18 classes, Null = 0 and the 17 gestures 1..17, every window. The
  OPPORTUNITY challenge's gesture task, as DeepConvLSTM and most of the literature run it.
- `gestures17`: the paper's 17 classes (its Table IV), the gestures 0..16 in the same order;
  windows whose label is Null are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders import _common
from tfds_builders import downloads
from tfds_builders import tfds_workarounds

URL = "https://archive.ics.uci.edu/static/public/226/opportunity+activity+recognition.zip"
MARKER = "dataset/column_names.txt"
NUM_COLUMNS = 250

RUNS = ("Drill", "ADL1", "ADL2", "ADL3", "ADL4", "ADL5")  # `run` feature: 0 = Drill, k = ADLk
TRAIN_RUNS = tuple([(1, r) for r in RUNS] +
                   [(s, r) for s in (2, 3) for r in ("Drill", "ADL1", "ADL2", "ADL3")])
TEST_RUNS = ((2, "ADL4"), (2, "ADL5"), (3, "ADL4"), (3, "ADL5"))

# The 12 body-worn 3-axis accelerometers of column_names.txt; every other "Accelerometer" is on
# an object (CUP, DOOR1, ...).
BODY_ACCELEROMETERS = ("RKN^", "HIP", "LUA^", "RUA_", "LH", "BACK", "RKN_", "RWR", "RUA^",
                       "LUA_", "LWR", "RH")
NUM_CHANNELS = 113
LABEL_TRACK = "ML_Both_Arms"
# DeepConvLSTM's adjust_idx_labels: the code of class i + 1 (class 0 is Null).
GESTURE_CODES = (406516, 406517, 404516, 404517, 406520, 404520, 406505, 404505, 406519,
                 404519, 406511, 404511, 406508, 404508, 408512, 407521, 405506)
# label_legend.txt's names for GESTURE_CODES (checked against the file when building).
CLASS_NAMES = ("Null", "Open Door 1", "Open Door 2", "Close Door 1", "Close Door 2",
               "Open Fridge", "Close Fridge", "Open Dishwasher", "Close Dishwasher",
               "Open Drawer 1", "Close Drawer 1", "Open Drawer 2", "Close Drawer 2",
               "Open Drawer 3", "Close Drawer 3", "Clean Table", "Drink from Cup",
               "Toggle Switch")

WINDOW, STEP = 64, 8  # DanHAR's files: 64 samples (~2.1 s), step 8 (`cut_opp.py` "64 8")


# ---------------------------------------------------------------------------------------------
# The dataset's own description files.


def parse_column_names(path) -> list[str]:
  """The 250 column names of column_names.txt (`Column: N NAME; value = ..., unit = ...`)."""
  path = _common.Path(path)
  names = []
  for lineno, line in enumerate(_read_lines(path), start=1):
    if not line.startswith("Column:"):
      continue  # headings ("Data columns:", "Label columns:") and blank lines
    match = re.fullmatch(r"Column:\s+(\d+)\s+([^;]+?)\s*(;.*)?", line)
    if match is None:
      raise _common.RawFormatError(path, lineno, f"not `Column: N NAME[; ...]`: {line!r}")
    if int(match[1]) != len(names) + 1:
      raise _common.RawFormatError(path, lineno, f"column {match[1]} follows column {len(names)}")
    names.append(match[2])
  if len(names) != NUM_COLUMNS:
    raise _common.RawFormatError(path, None, f"{len(names)} columns, expected {NUM_COLUMNS}")
  return names


def select_channels(names: Sequence[str]) -> list[int]:
  """0-based columns of the 113 body-worn channels (DeepConvLSTM's selection), by name."""
  keep = []
  for column, name in enumerate(names):
    kind, *rest = name.split() or [""]
    rest = rest or [""]  # a damaged name may have fewer words
    if kind == "Accelerometer" and rest[0] in BODY_ACCELEROMETERS:
      keep.append(column)
    elif kind == "InertialMeasurementUnit" and not rest[-1].startswith("Quaternion"):
      keep.append(column)
  return keep


def norm_range(name: str) -> tuple[float, float]:
  """The authors' (min, max) normalisation thresholds of a kept channel, from its name.

  DeepConvLSTM's NORM_MIN/MAX_THRESHOLDS, one pair per channel in file order; they depend only
  on the sensor kind, which the name gives.
  """
  kind, *rest = name.split() or [""]
  field = rest[-1] if rest else ""
  if kind == "Accelerometer" or field.startswith("acc"):
    return -3000, 3000  # milli g
  if field.startswith("gyro"):
    return -10000, 10000
  if field.startswith("magnetic"):
    return -1000, 1500
  shoe = {"EuX": (-250, 250), "EuY": (-100, 25), "EuZ": (-200, 200), "Compass": (-250, 250)}
  if field in shoe:
    return shoe[field]
  if field.startswith(("Nav_A", "Body_A")):
    return -5000, 5000  # milli g
  if field.startswith("AngVel"):
    return -10000, 10000
  raise ValueError(f"no normalisation threshold for channel {name!r}")


def parse_label_legend(path) -> dict[str, list[tuple[int, str]]]:
  """label_legend.txt as {track: [(code, name), ...] in file order}."""
  path = _common.Path(path)
  tracks = {}
  for lineno, line in enumerate(_read_lines(path), start=1):
    if not line or line.startswith("Unique index"):
      continue
    match = re.fullmatch(r"(\d+)\s+-\s+(\S+)\s+-\s+(.+)", line)
    if match is None:
      raise _common.RawFormatError(path, lineno, f"not `CODE - TRACK - NAME`: {line!r}")
    tracks.setdefault(match[2], []).append((int(match[1]), match[3]))
  return tracks


def check_gestures(path) -> None:
  """Raises unless label_legend.txt lists exactly GESTURE_CODES with CLASS_NAMES, in order."""
  found = parse_label_legend(path).get(LABEL_TRACK, [])
  expected = list(zip(GESTURE_CODES, CLASS_NAMES[1:]))
  if found != expected:
    raise _common.RawFormatError(path, None, f"{LABEL_TRACK} labels {found}, expected {expected}")


def _read_lines(path: _common.Path) -> list[str]:
  if not path.exists():
    raise _common.MissingRawFilesError(f"Missing raw file: {path}")
  # "\n" only: str.splitlines also breaks at \x0b, \x1c, \x85..., misnumbering the lines.
  return [line.strip() for line in path.read_bytes().decode("latin-1").split("\n")]


# ---------------------------------------------------------------------------------------------
# Run files.


class Protocol:
  """The channel selection and label map, read from the dataset's description files."""

  def __init__(self, dataset_dir):
    dataset_dir = _common.Path(dataset_dir)
    names = parse_column_names(dataset_dir / "column_names.txt")
    check_gestures(dataset_dir / "label_legend.txt")
    self.columns = select_channels(names)
    self.channels = [names[c] for c in self.columns]
    if len(self.columns) != NUM_CHANNELS:
      raise _common.RawFormatError(dataset_dir / "column_names.txt", None,
                                   f"{len(self.columns)} body-worn channels, expected "
                                   f"{NUM_CHANNELS}: {self.channels}")
    if LABEL_TRACK not in names:
      raise _common.RawFormatError(dataset_dir / "column_names.txt", None,
                                   f"no column named {LABEL_TRACK}, the label track")
    self.label_column = names.index(LABEL_TRACK)
    try:
      lo, hi = np.array([norm_range(name) for name in self.channels], np.float64).T
    except ValueError as e:  # a damaged name that still reads as a body-worn sensor's
      raise _common.RawFormatError(dataset_dir / "column_names.txt", None, str(e)) from None
    self.norm_min, self.norm_span = lo, hi - lo

  def load_run(self, path, with_time: bool = False):
    """A run file as (normalised float32 signal [rows, 113], class [rows]), and with `with_time`
    its MILLISEC column [rows] too (predict reports window times)."""
    table = _common.read_numeric_table(path, NUM_COLUMNS)
    classes = gesture_classes(table[:, self.label_column], path)
    milliseconds = table[:, 0].copy()
    x = _common.fill_nan_linear(table[:, self.columns], leading="keep", trailing="hold")
    del table
    x[np.isnan(x)] = 0
    x = (x - self.norm_min) / self.norm_span
    # The authors' boundary check, kept as is: above 1 becomes 0.99, below 0 becomes 0.
    x[x > 1] = 0.99
    x[x < 0] = 0
    _common.check_finite(x, path, "the 113 body-worn channels")
    if with_time:
      return x.astype(np.float32), classes, milliseconds
    return x.astype(np.float32), classes


_CODES = np.array((0,) + GESTURE_CODES, np.float64)
_ORDER = np.argsort(_CODES)


def gesture_classes(codes: np.ndarray, path) -> np.ndarray:
  """ML_Both_Arms codes [rows] as classes 0..17 (0 = Null); names the first unknown code's line."""
  known = np.isin(codes, _CODES)  # NaN is never known
  if not known.all():
    row = int(np.argmax(~known))
    raise _common.RawFormatError(path, row + 1, f"{LABEL_TRACK} value {codes[row]:g} is neither "
                                 "0 nor a gesture code of label_legend.txt")
  return _ORDER[np.searchsorted(_CODES[_ORDER], codes)].astype(np.int64)


# ---------------------------------------------------------------------------------------------
# The builder.


class OpportunityConfig(tfds.core.BuilderConfig):
  """A label set: Null as class 0 (`keep_null`), or the gestures alone with Null windows dropped."""

  def __init__(self, *, keep_null: bool, **kwargs):
    super().__init__(**kwargs)
    self.keep_null = keep_null

  @property
  def class_names(self) -> tuple[str, ...]:
    return CLASS_NAMES if self.keep_null else CLASS_NAMES[1:]

  def label(self, gesture_class: int) -> int | None:
    """The class of a window whose last sample is `gesture_class` (0 = Null, 1..17); None drops
    the window."""
    if self.keep_null:
      return gesture_class
    return None if gesture_class == 0 else gesture_class - 1


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for OPPORTUNITY gestures (ML_Both_Arms), the challenge protocol."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      OpportunityConfig(
          name="challenge", keep_null=True,
          description="The OPPORTUNITY challenge's gesture task (DeepConvLSTM): 18 classes, Null "
          "and the 17 ML_Both_Arms gestures, every window."),
      OpportunityConfig(
          name="gestures17", keep_null=False,
          description="The paper's 17 classes: the ML_Both_Arms gestures without Null; windows "
          "whose label is Null are dropped."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download {URL}
  and put in the manual_dir (--manual_dir=...; the default is <data_dir>/downloads/manual/) one
  of: that zip as downloaded, the OpportunityUCIDataset.zip inside it, or the
  OpportunityUCIDataset/ folder, whose dataset/ folder must hold column_names.txt,
  label_legend.txt and these 18 run files (subject 4 is not used):
  {", ".join(f"S{s}-{r}.dat" for s, r in TRAIN_RUNS + TEST_RUNS)}.
  The builder also tries the URL itself when online.
  """

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format, **kwargs)
    tfds_workarounds.default_to_array_record(self, file_format)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            # Stored as raw bytes: TFDS's default float_list encoding is ~10x slower to write.
            "signal": tfds.features.Tensor(shape=(WINDOW, NUM_CHANNELS), dtype=np.float32,
                                           encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.ClassLabel(names=self.builder_config.class_names),
            "subject": np.int32,
            "run": np.int32,  # 0 = Drill, k = ADLk
            # 0-based row (= line - 1) of the run file where the window starts.
            "start": np.int32,
        }),
        supervised_keys=("signal", "label"),
        homepage="https://archive.ics.uci.edu/dataset/226/opportunity+activity+recognition",
    )

  def _download_and_prepare(self, dl_manager, download_config):
    # The train split is about 2 GB of examples: past the 1 GiB that TFDS shuffles in memory
    # (beyond it, TFDS needs TensorFlow), and a minute of zstd compression on two cores.
    with tfds_workarounds.TfFreeShuffler(), tfds_workarounds.UncompressedArrayRecord():
      return super()._download_and_prepare(dl_manager, download_config)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = downloads.find_raw_root(downloads.Downloads(dl_manager, MARKER), URL, MARKER,
                                 self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    dataset_dir = root / "dataset"
    downloads.require_files([dataset_dir / "label_legend.txt"] +
                          [dataset_dir / f"S{s}-{r}.dat" for s, r in TRAIN_RUNS + TEST_RUNS])
    protocol = Protocol(dataset_dir)
    return {
        "train": self._generate_examples(protocol, dataset_dir, TRAIN_RUNS),
        "test": self._generate_examples(protocol, dataset_dir, TEST_RUNS),
    }

  def _generate_examples(self, protocol: Protocol, dataset_dir, runs):
    progress = _common.Progress(f"{self.name} ({len(runs)} runs)", len(runs))
    for subject, run in runs:
      path = dataset_dir / f"S{subject}-{run}.dat"
      signal, classes = protocol.load_run(path)
      for start in _common.window_starts(len(signal), WINDOW, STEP).tolist():
        label = self.builder_config.label(int(classes[start + WINDOW - 1]))
        if label is None:
          continue
        yield f"S{subject}-{run}_{start:06d}", {
            "signal": signal[start:start + WINDOW],
            "label": label,
            "subject": subject,
            "run": RUNS.index(run),
            "start": start,
        }
      progress.file_done(path, len(signal))
