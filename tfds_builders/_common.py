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
