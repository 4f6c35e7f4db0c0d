"""The raw files of a dataset: from `--manual_dir`, else downloaded, else a clear error.

`find_raw_root` looks in the manual_dir first (an archive or its extracted tree), then downloads
through `Downloads`, which fails at once when offline instead of retrying for minutes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import tensorflow_datasets as tfds

from tfds_builders._common import MissingRawFilesError

Path = tfds.core.Path


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
