"""A full disk: any write of a run that fails with ENOSPC stops it with one line naming the file
and the space left, instead of an Orbax, TensorStore or tensorboardX traceback."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil


class DiskFullError(OSError):
  """A write of the run failed for want of space on its filesystem."""


def is_disk_full(e: BaseException | None) -> bool:
  """ENOSPC anywhere in the chain; TensorStore (under Orbax) reports it in its message only."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if getattr(e, "errno", None) == errno.ENOSPC:
      return True
    text = str(e)
    if "No space left on device" in text or "os_error_code='28'" in text:
      return True
    e = e.__cause__ or e.__context__
  return False


def free_bytes(path: str) -> int | None:
  """Free space on the filesystem of `path` (or of its nearest existing folder)."""
  path = os.path.abspath(os.fspath(path))
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  try:
    return shutil.disk_usage(path).free
  except OSError:
    return None


def _size(n: int | None) -> str:
  if n is None:
    return "an unknown amount"
  for unit in ("bytes", "KiB", "MiB", "GiB"):
    if n < 1024 or unit == "GiB":
      return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
    n /= 1024
  return f"{n} bytes"


def full_error(path: str) -> DiskFullError:
  return DiskFullError(
      f"No space left on device while writing {path} ({_size(free_bytes(path))} free there). "
      "The last complete checkpoint is intact: free some space and re-run the same command to "
      "resume.")


@contextlib.contextmanager
def writing(path: str):
  """Turns an ENOSPC raised inside into DiskFullError naming `path`."""
  try:
    yield
  except DiskFullError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (Orbax wraps OSError as ValueError)
    if not is_disk_full(e):
      raise
    raise full_error(path) from None
