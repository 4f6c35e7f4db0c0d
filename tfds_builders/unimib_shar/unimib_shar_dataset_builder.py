"""UniMiB SHAR (Micucci, Mobilio & Napoletano 2017): the 17-class AF-17 windows DanHAR uses.

The final release's `data/acc_data.mat` holds 11,771 windows of 151 samples (3 s at 50 Hz, centred
on a peak above 1.5 g) as rows of 453 values: the 151 x, then 151 y, then 151 z samples (m/s^2).
`data/acc_labels.mat` holds [class 1..17, subject 1..30, trial] per row and `data/acc_names.mat`
the 17 class names (row 0 long, row 1 short). DanHAR ships no UniMiB script; its training files
are (N, 151, 3) windows with 17 classes, and ReadyHAR says "70%/30%". This builder reshapes each
row to [151 time, 3 axes] and splits the windows at random, 70/30 with a fixed seed.

The release keeps no window's position in its recording (only subject and trial), so which windows
share samples cannot be known: `recording` and `start` are -1 for every window, and the split
protocols' audit says 'unknown' rather than guess.
"""

from __future__ import annotations

import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from tfds_builders import _common
from tfds_builders import downloads
from tfds_builders import tfds_workarounds

URL = "https://www.dropbox.com/s/raw/x2fpfqj0bpf8ep6/UniMiB-SHAR.zip"
MARKER = "data/acc_labels.mat"
# acc_names.mat row 0 (long names), in class order 1..17 (checked against the file on build).
CLASS_NAMES = (
    "Standing up from sitting", "Standing up from laying", "Walking", "Running",
    "Going upstairs", "Jumping", "Going downstairs", "Lying down from standing", "Sitting down",
    "Generic falling forward", "Falling rightward", "Generic falling backward",
    "Hitting an obstacle in the fall", "Falling with protection strategies",
    "Falling backward-sitting-chair", "Syncope", "Falling leftward")
NUM_SUBJECTS = 30
WINDOW = 151  # samples per axis
AXES = ("x", "y", "z")
# A random 70/30 split of the windows (test = ceil(0.3 n), as sklearn rounds). The authors'
# split is not published (their test batch of 4037 is 34% of 11,771); the seed is ours.
TEST_FRACTION, SPLIT_SEED = 0.3, 0


def load_mat(path, variable: str) -> np.ndarray:
  """One variable of a MATLAB v5 file; errors name the file."""
  path = _common.Path(path)
  if not path.exists():
    raise _common.MissingRawFilesError(f"Missing raw file: {path}")
  try:
    with path.open("rb") as f:
      mat = scipy.io.loadmat(f)
  except Exception as e:  # noqa: BLE001 -- scipy raises many types for a damaged file
    raise _common.RawFormatError(path, None, "not a readable MATLAB v5 .mat file "
                                 f"({type(e).__name__}: {e})") from None
  if variable not in mat:
    found = sorted(k for k in mat if not k.startswith("__"))
    raise _common.RawFormatError(path, None, f"no variable {variable!r} (found {found})")
  return mat[variable]


def load(data_dir) -> tuple[np.ndarray, np.ndarray]:
  """(float32 signal [N, 151, 3], int64 [N, 3] = class 0..16, subject, trial) from data/."""
  data_dir = _common.Path(data_dir)
  names_path, labels_path, data_path = (data_dir / f"acc_{v}.mat"
                                        for v in ("names", "labels", "data"))
  downloads.require_files([names_path, labels_path, data_path])

  names = load_mat(names_path, "acc_names")
  long_names = tuple(_cell_text(c) for c in names[0]) if names.shape == (2, 17) else None
  if long_names != CLASS_NAMES:
    raise _common.RawFormatError(names_path, None, f"acc_names {names.shape}: row 0 is "
                                 f"{long_names}, expected {CLASS_NAMES}")

  labels = load_mat(labels_path, "acc_labels")
  if labels.ndim != 2 or labels.shape[1] != 3:
    raise _common.RawFormatError(labels_path, None,
                                 f"acc_labels is {labels.shape}, expected (N, 3)")
  labels = labels.astype(np.int64)
  for column, what, hi in ((0, "class", len(CLASS_NAMES)), (1, "subject", NUM_SUBJECTS),
                           (2, "trial", None)):
    values = labels[:, column]
    bad = (values < 1) | (values > hi) if hi else values < 1
    if bad.any():
      row = int(np.argmax(bad))
      raise _common.RawFormatError(labels_path, None, f"acc_labels row {row + 1}: {what} "
                                   f"{values[row]} is outside 1..{hi or 'inf'}")
  labels[:, 0] -= 1

  signal = load_windows(data_path)
  if len(signal) != len(labels):
    raise _common.RawFormatError(data_path, None, f"acc_data has {len(signal)} rows but "
                                 f"{labels_path} has {len(labels)}: the files do not belong "
                                 "together")
  return signal, labels


def load_windows(data_path) -> np.ndarray:
  """acc_data.mat as float32 windows [N, 151 time, 3 axes]: the builder's and predict's reader."""
  data = load_mat(data_path, "acc_data")
  if data.ndim != 2 or data.shape[1] != len(AXES) * WINDOW:
    raise _common.RawFormatError(data_path, None,
                                 f"acc_data is {data.shape}, expected (N, {len(AXES) * WINDOW})")
  _common.check_finite(data, data_path, "acc_data (the line is the 1-based row)")
  # Each row is the x block, then the y block, then the z block.
  return data.reshape(len(data), len(AXES), WINDOW).transpose(0, 2, 1).astype(np.float32)


def _cell_text(cell) -> str:
  """A MATLAB cell holding a char array, as loadmat returns it, as a str."""
  return str(np.asarray(cell).ravel()[0]) if np.asarray(cell).size else ""


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for UniMiB SHAR (AF-17), the DanHAR protocol."""

  VERSION = tfds.core.Version("1.1.0")
  # Older versions with the same windows, splits and order, lacking only features: the trainer
  # reads one prepared before rather than rebuild (danhar_jax/input_pipeline.older_prepared).
  READABLE_VERSIONS = ("1.0.0",)
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": "Adds `recording` and `start`, both -1: the release does not say where its "
               "windows lie in their recordings. Same windows, splits and order.",
  }
  UNKNOWN = -1  # `recording` and `start` of every window
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download {URL}
  (home page http://www.sal.disco.unimib.it/technologies/unimib-shar/) and put in the manual_dir
  (--manual_dir=...; the default is <data_dir>/downloads/manual/) either UniMiB-SHAR.zip as
  downloaded or the UniMiB-SHAR/ folder it extracts to, whose data/ folder must hold
  acc_data.mat, acc_labels.mat and acc_names.mat (the final 2017 release: acc_data is
  11771 x 453). The builder also tries the URL itself when online.
  """

  def __init__(self, *, file_format=None, **kwargs):
    super().__init__(file_format=file_format, **kwargs)
    tfds_workarounds.default_to_array_record(self, file_format)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            # Stored as raw bytes: TFDS's default float_list encoding is ~10x slower to write.
            "signal": tfds.features.Tensor(shape=(WINDOW, len(AXES)), dtype=np.float32,
                                           encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            "subject": np.int32,
            "trial": np.int32,
            "row": np.int32,  # 0-based row of acc_data.mat / acc_labels.mat
            # UNKNOWN: the split protocols' overlap check has nothing to go on.
            "recording": np.int32,
            "start": np.int32,
        }),
        supervised_keys=("signal", "label"),
        homepage="http://www.sal.disco.unimib.it/technologies/unimib-shar/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = downloads.find_raw_root(downloads.Downloads(dl_manager, MARKER), URL, MARKER,
                                 self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    progress = _common.Progress(self.name, total_files=1)
    signal, labels = load(root / "data")
    progress.file_done(root / "data" / "acc_data.mat", len(signal))
    is_test = _common.random_test_mask(len(signal), TEST_FRACTION, SPLIT_SEED)
    return {
        "train": self._generate_examples(signal, labels, np.flatnonzero(~is_test)),
        "test": self._generate_examples(signal, labels, np.flatnonzero(is_test)),
    }

  def _generate_examples(self, signal: np.ndarray, labels: np.ndarray, rows: np.ndarray):
    for row in rows.tolist():
      label, subject, trial = labels[row].tolist()
      yield row, {
          "signal": signal[row],
          "label": label,
          "subject": subject,
          "trial": trial,
          "row": row,
          "recording": self.UNKNOWN,
          "start": self.UNKNOWN,
      }
