"""What every DanHAR builder shares: raw-file errors, windowing, manual-or-download, progress.

The builders are the reproducible half of this reimplementation, so they are strict: a record
that cannot be parsed stops the build with `RawFormatError` naming the file and line, and TFDS
writes each split into a temporary folder that is renamed only once every split is finished,
so an interrupted build never looks like a finished dataset.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow_datasets as tfds

Path = tfds.core.Path


class RawFormatError(ValueError):
  """A raw file that does not follow its documented format: names the file and line."""

  def __init__(self, path: os.PathLike | str, line: int | None, message: str):
    self.path, self.line = os.fspath(path), line
    where = f"{self.path}:{line}" if line is not None else self.path
    super().__init__(f"{where}: {message}")


class MissingRawFilesError(FileNotFoundError):
  """Neither the manual_dir nor the official URL gave the raw files."""


def window_starts(length: int, size: int, step: int) -> np.ndarray:
  """Start indices of every full window of `size` samples, `step` apart."""
  if length < size:
    return np.zeros((0,), np.int64)
  return np.arange(0, length - size + 1, step, dtype=np.int64)


def majority(labels: np.ndarray) -> int:
  """The most frequent value; ties go to the smallest, as `scipy.stats.mode` does."""
  values, counts = np.unique(labels, return_counts=True)
  return int(values[np.argmax(counts)])


def runs(keys: np.ndarray) -> list[tuple[int, int]]:
  """[start, end) of each maximal run of equal consecutive rows of `keys` ([n] or [n, k])."""
  keys = keys.reshape(len(keys), -1)
  if len(keys) == 0:
    return []
  change = np.flatnonzero(np.any(keys[1:] != keys[:-1], axis=1)) + 1
  bounds = np.concatenate([[0], change, [len(keys)]])
  return list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))


def random_test_mask(n: int, test_fraction: float, seed: int) -> np.ndarray:
  """A fixed-seed random split: True marks the test examples (sklearn's rounding: ceil)."""
  n_test = int(np.ceil(test_fraction * n))
  mask = np.zeros(n, bool)
  mask[np.random.default_rng(seed).permutation(n)[:n_test]] = True
  return mask


def default_to_array_record(builder, file_format) -> None:
  """Makes array_record the format of a builder that was given none.

  TFDS writes tfrecord unless told otherwise, which needs TensorFlow; array_record is what
  `tfds.data_source` reads. A dataset that is already prepared keeps the format it was written in.
  """
  if file_format is None and not builder.is_prepared():
    builder.info.set_file_format("array_record", override=True)


def find_raw_root(
    dl_manager: tfds.download.DownloadManager,
    url: str,
    marker: str,
    instructions: str,
) -> Path:
  """The folder holding `marker` (a relative path), from manual_dir or else from `url`.

  manual_dir may hold the original archive or its extracted tree, at any depth.
  """
  searched = []
  manual = _manual_dir(dl_manager)
  if manual is not None:
    searched.append(os.fspath(manual))
    found = _search(manual, marker)
    if found is None:
      # An archive placed as downloaded: extract it next to the download cache.
      for archive in sorted(manual.iterdir()):
        if archive.name.endswith((".zip", ".tar.gz", ".tgz", ".tar")):
          found = _search(Path(dl_manager.extract(archive)), marker)
          if found is not None:
            break
    if found is not None:
      return found
  try:
    extracted = Path(dl_manager.download_and_extract(url))
  except Exception as e:  # noqa: BLE001 -- any network failure gets the same advice
    searched.append(url)
    raise MissingRawFilesError(
        f"Could not find {marker!r} in manual_dir ({searched[0] if manual else 'not set'}) "
        f"and could not download it from {url} ({type(e).__name__}: {e}).\n"
        f"{instructions.strip()}") from None
  found = _search(extracted, marker)
  if found is None:
    raise MissingRawFilesError(f"The archive from {url} does not contain {marker!r}.")
  return found


def _manual_dir(dl_manager) -> Path | None:
  try:
    manual = dl_manager.manual_dir
  except Exception:  # noqa: BLE001 -- TFDS raises when the folder is absent or empty
    return None
  return Path(manual) if manual and Path(manual).exists() else None


def _search(root: Path, marker: str, max_depth: int = 4) -> Path | None:
  """The ancestor folder such that `folder / marker` exists, searching `max_depth` levels."""
  frontier = [root]
  for _ in range(max_depth + 1):
    nxt = []
    for folder in frontier:
      if (folder / marker).exists():
        return folder
      if folder.is_dir():
        nxt.extend(p for p in sorted(folder.iterdir()) if p.is_dir())
    frontier = nxt
  return None


def require_files(paths: Iterable[Path]) -> list[Path]:
  """Every path, or a `MissingRawFilesError` that lists all that are missing."""
  paths = list(paths)
  missing = [os.fspath(p) for p in paths if not p.exists()]
  if missing:
    raise MissingRawFilesError("Missing raw files:\n  " + "\n  ".join(missing))
  return paths


class Progress:
  """Logs files parsed and rows per second while a long build runs."""

  def __init__(self, name: str, total_files: int):
    self.name, self.total_files = name, total_files
    self.files = self.rows = 0
    self.start = time.perf_counter()

  def file_done(self, path: os.PathLike | str, rows: int) -> None:
    self.files += 1
    self.rows += rows
    elapsed = max(time.perf_counter() - self.start, 1e-9)
    logging.info("%s: parsed %d/%d files (%s, %d rows); %d rows, %.0f rows/s",
                 self.name, self.files, self.total_files, os.path.basename(path), rows,
                 self.rows, self.rows / elapsed)


def check_finite(signal: np.ndarray, path: os.PathLike | str, what: str,
                 first_line: int = 1) -> None:
  """Raises on the first row of `signal` that holds a NaN or inf, naming its line."""
  bad = ~np.isfinite(signal).all(axis=tuple(range(1, signal.ndim)))
  if bad.any():
    row = int(np.argmax(bad))
    raise RawFormatError(path, first_line + row, f"non-finite value in {what}")


def names_in_order(values: Sequence[str]) -> list[str]:
  """Unique values in first-seen order."""
  return list(dict.fromkeys(values))


# Appended for the WISDM builders; generic, so every builder may use them.

OFFLINE_ENV = "DANHAR_OFFLINE"


def url_reachable(url: str, timeout: float = 5.0) -> bool:
  """Whether the host of `url` accepts a TCP connection within `timeout` seconds."""
  import socket  # pylint: disable=g-import-not-at-top
  import urllib.parse  # pylint: disable=g-import-not-at-top
  parts = urllib.parse.urlsplit(url)
  port = parts.port or (443 if parts.scheme == "https" else 80)
  try:
    with socket.create_connection((parts.hostname, port), timeout=timeout):
      return True
  except OSError:
    return False


class Downloads:
  """A `dl_manager` for `find_raw_root`: fails fast offline, extracts without TensorFlow.

  TFDS's downloader retries a failed connection 10 times with exponential backoff, so offline a
  download fails only after about 3.5 minutes (measured: 204 s when DNS fails). This wrapper
  asks TFDS to download only after the host answered a TCP probe, and never when the
  environment sets DANHAR_OFFLINE=1; otherwise it raises ConnectionError at once, which
  `find_raw_root` turns into its MissingRawFilesError with the manual instructions.

  TFDS's own extractor writes through tf.io.gfile, so without TensorFlow every
  `dl_manager.extract` fails. Archives (.zip, .tar, .tar.gz, .tgz) are therefore extracted here
  with the standard library, into `<download_dir>/extracted/<archive name>`, once. Some archives
  hold another archive (UCI's WISDM-2019 zip holds wisdm-dataset.zip): when `marker` is not in
  an extracted folder, the archives found in it are extracted in turn. HTTP downloads themselves
  do not need TensorFlow. Everything else is the wrapped DownloadManager's.
  """

  ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz")

  def __init__(self, dl_manager: tfds.download.DownloadManager, marker: str,
               timeout: float = 5.0):
    self._dl_manager, self._marker, self._timeout = dl_manager, marker, timeout

  def __getattr__(self, name):
    return getattr(self._dl_manager, name)

  def download_and_extract(self, url: str) -> Path:
    if os.environ.get(OFFLINE_ENV, "") not in ("", "0"):
      raise ConnectionError(f"{OFFLINE_ENV} is set, so nothing is downloaded")
    if not url_reachable(url, self._timeout):
      raise ConnectionError(f"the host of {url} did not answer within {self._timeout:g} s "
                            f"(offline? set {OFFLINE_ENV}=1 to skip this probe)")
    return self.extract(self._dl_manager.download(url))

  def extract(self, path) -> Path:
    path = Path(path)
    if path.is_dir():
      return self._open_nested(path)
    if not path.name.endswith(self.ARCHIVES):
      return path
    return self._open_nested(self._extract_archive(path))

  def _extract_archive(self, archive: Path) -> Path:
    import shutil  # pylint: disable=g-import-not-at-top
    import tarfile  # pylint: disable=g-import-not-at-top
    import tempfile  # pylint: disable=g-import-not-at-top
    import zipfile  # pylint: disable=g-import-not-at-top
    root = Path(self._dl_manager.download_dir) / "extracted"
    target = root / archive.name
    if target.exists():
      return target
    root.mkdir(parents=True, exist_ok=True)
    logging.info("Extracting %s to %s", archive, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".incomplete_{archive.name}.", dir=root))
    try:
      if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:  # ZipFile.extractall drops ".." and "/" prefixes
          z.extractall(tmp)
      else:
        with tarfile.open(archive) as tar:
          if hasattr(tarfile, "data_filter"):  # refuses links and paths out of `tmp`
            tar.extractall(tmp, filter="data")
          else:
            tar.extractall(tmp)  # noqa: S202 -- Python < 3.10.12 has no filter
      tmp.rename(target)
    finally:
      if tmp.exists():
        shutil.rmtree(tmp)
    return target

  def _open_nested(self, folder: Path) -> Path:
    if _search(folder, self._marker) is not None:
      return folder
    for pattern in ("*", "*/*"):
      for archive in sorted(folder.glob(pattern)):
        if archive.is_file() and archive.name.endswith(self.ARCHIVES):
          inner = self._extract_archive(archive)
          if _search(inner, self._marker) is not None:
            return inner
    return folder


# Appended for the PAMAP2, UniMiB SHAR and OPPORTUNITY builders; generic, so every builder may
# use them.


def read_numeric_table(path: os.PathLike | str, num_columns: int) -> np.ndarray:
  """A whitespace-separated numeric text table (`NaN` allowed) as float64 [rows, num_columns].

  The PAMAP2 and OPPORTUNITY `.dat` files are 4-207 MB each, so the happy path is numpy's C
  `loadtxt` over the whole file (`float()` per field in Python
  is several times slower). When that fails, or finds fewer rows than lines (it skips blank
  lines silently), a line-by-line scan names the first bad line. Blank lines are errors, except
  at the end of the file, so row `i` of the result is line `i + 1` of the file; the builders rely
  on that to name lines in later errors.
  """
  import io  # pylint: disable=g-import-not-at-top
  import warnings  # pylint: disable=g-import-not-at-top
  path = Path(path)
  if not path.exists():
    raise MissingRawFilesError(f"Missing raw file: {path}")
  data = path.read_bytes().rstrip(b" \t\r\n")
  if not data:
    raise RawFormatError(
        path, None, f"empty file: expected lines of {num_columns} whitespace-separated numbers")
  num_lines = data.count(b"\n") + 1
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # "input contained no data" is handled below
      table = np.loadtxt(io.BytesIO(data), dtype=np.float64, comments=None, ndmin=2)
  except ValueError:
    table = None
  if table is None or table.shape != (num_lines, num_columns):
    raise _first_bad_line(path, data, num_columns)
  return table


def _first_bad_line(path: Path, data: bytes, num_columns: int) -> RawFormatError:
  """The slow, exact check behind `read_numeric_table`: an error for the first bad line."""
  for lineno, line in enumerate(data.split(b"\n"), start=1):
    fields = line.split()
    if not fields:
      return RawFormatError(path, lineno, "blank line")
    if len(fields) != num_columns:
      return RawFormatError(
          path, lineno, f"{len(fields)} fields, expected {num_columns} (truncated or joined line?)")
    for column, field in enumerate(fields, start=1):
      try:
        if b"_" in field:  # Python's float() accepts "1_0"; numpy and the format do not
          raise ValueError(field)
        float(field)
      except ValueError:
        return RawFormatError(path, lineno,
                              f"column {column}: {field.decode('latin-1')!r} is not a number")
  return RawFormatError(path, None, "not a whitespace-separated numeric table")


def fill_nan_linear(x: np.ndarray, leading: str = "hold", trailing: str = "hold") -> np.ndarray:
  """Fills NaN runs in each column of `x` [time, channels] by linear interpolation in time.

  Samples are taken as equally spaced (pandas' `interpolate(method="linear")`). `leading` and
  `trailing` say what happens before the first and after the last valid sample of a column:
  "hold" repeats that sample, "keep" leaves NaN (pandas' default is leading="keep",
  trailing="hold"). A column with no valid sample stays NaN; callers decide what that means.
  """
  x = np.array(x, dtype=np.float64)  # a copy
  t = np.arange(len(x))
  for column in x.T:
    bad = np.isnan(column)
    if not bad.any() or bad.all():
      continue
    good = np.flatnonzero(~bad)
    column[bad] = np.interp(t[bad], good, column[good])
    if leading == "keep":
      column[:good[0]] = np.nan
    if trailing == "keep":
      column[good[-1] + 1:] = np.nan
  return x


class TfFreeShuffler:
  """Context manager that lets TFDS write a split of more than 1 GiB without TensorFlow.

  TFDS's writer keeps the serialized examples of a split in memory up to 1 GiB
  (`shuffle.MAX_MEM_BUFFER_SIZE`) and then spills them to 1000 temporary bucket files, which it
  opens with `tf.io.gfile`: without TensorFlow, such a build fails with ModuleNotFoundError once
  the split passes 1 GiB (OPPORTUNITY's train split is about 2 GB). Inside this context the
  buckets use Python's own file functions instead. With TensorFlow installed it does nothing.
  Wrap the whole `download_and_prepare` (the buckets are read back after the generator ends).
  """

  def __enter__(self):
    import importlib.util  # pylint: disable=g-import-not-at-top
    import types  # pylint: disable=g-import-not-at-top
    from tensorflow_datasets.core import shuffle  # pylint: disable=g-import-not-at-top
    self._shuffle, self._saved = shuffle, None
    if importlib.util.find_spec("tensorflow") is None:
      self._saved = shuffle.tf
      gfile = types.SimpleNamespace(GFile=_open_raising_file_limit, exists=os.path.exists,
                                    remove=os.remove)
      errors = types.SimpleNamespace(ResourceExhaustedError=_NeverRaised)
      shuffle.tf = types.SimpleNamespace(io=types.SimpleNamespace(gfile=gfile), errors=errors)
    return self

  def __exit__(self, *exc_info):
    if self._saved is not None:
      self._shuffle.tf = self._saved
    return False


class _NeverRaised(Exception):
  message = ""


def _open_raising_file_limit(path, mode):
  """open(), raising the soft open-files limit once if the 1000 buckets hit it (as TFDS does)."""
  import errno  # pylint: disable=g-import-not-at-top
  import resource  # pylint: disable=g-import-not-at-top
  try:
    return open(path, mode)  # pylint: disable=unspecified-encoding
  except OSError as e:
    if e.errno != errno.EMFILE:
      raise
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return open(path, mode)  # pylint: disable=unspecified-encoding


class UncompressedArrayRecord:
  """Context manager: TFDS writes ArrayRecord shards without compression inside it.

  TFDS writes every record of an ArrayRecord shard as its own zstd-3 chunk ('group_size:1'),
  which runs at about 43 MB/s here: a minute for OPPORTUNITY's 2.4 GB of float32 windows, for a
  file ~25% smaller. Inside this context the shards are written with 'group_size:1,uncompressed'
  (1 s per 600 MB); readers take the options from the file, so nothing else changes.
  """

  def __enter__(self):
    from tensorflow_datasets.core import file_adapters  # pylint: disable=g-import-not-at-top
    self._adapter = file_adapters.ArrayRecordFileAdapter
    self._saved = self._adapter.__dict__["write_examples"]
    self._adapter.write_examples = classmethod(_write_array_record_uncompressed)
    return self

  def __exit__(self, *exc_info):
    self._adapter.write_examples = self._saved
    return False


def _write_array_record_uncompressed(cls, path, iterator):
  """ArrayRecordFileAdapter.write_examples with 'group_size:1,uncompressed'."""
  del cls
  from array_record.python import array_record_module  # pylint: disable=g-import-not-at-top
  writer = array_record_module.ArrayRecordWriter(os.fspath(path), "group_size:1,uncompressed")
  for _, serialized_example in iterator:
    writer.write(serialized_example)
  writer.close()
