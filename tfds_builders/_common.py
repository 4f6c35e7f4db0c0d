"""What every DanHAR builder shares: raw-file errors, windowing, numeric tables, progress.

Getting the raw files (manual_dir or download) is in `downloads.py`; the patches that let TFDS
build without TensorFlow are in `tfds_workarounds.py`.

The builders are the reproducible half of this reimplementation, so they are strict: a record
that cannot be parsed stops the build with `RawFormatError` naming the file and line, and TFDS
writes each split into a temporary folder that is renamed only once every split is finished,
so an interrupted build never looks like a finished dataset.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence

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
  """Raises on the first row of `signal` that holds a NaN or inf, naming its line.

  The builders store float32, so a float64 beyond float32's range, which would become inf
  there, counts as non-finite too.
  """
  bad = ~(np.abs(signal) <= np.finfo(np.float32).max).all(axis=tuple(range(1, signal.ndim)))
  if bad.any():
    row = int(np.argmax(bad))
    raise RawFormatError(path, first_line + row, f"non-finite value (or one beyond float32) "
                         f"in {what}")


def names_in_order(values: Sequence[str]) -> list[str]:
  """Unique values in first-seen order."""
  return list(dict.fromkeys(values))


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
