"""One build per dataset: concurrent builds of one dataset in one data_dir take turns.

TFDS writes a dataset into an `incomplete.*` folder and renames it into place at the end, so two
processes that build the same dataset at once both write it, and the second rename fails
(`FileExistsError: Cannot rename .../incomplete...`). Here a build first takes an exclusive
`fcntl.flock` on `<data_dir>/.<dataset>.build.lock`; a second build logs that it is waiting, and
once it holds the lock TFDS finds the finished dataset and reuses it. The kernel drops the lock
when its process dies, so a killed build leaves no stale lock, and its `incomplete.*` folder is
never taken for a finished dataset.

`lock` and `holder` are the generic part, which danhar_jax's workdir lock uses too.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import shlex
import socket
import sys
import time


def lock(path: str, wait: bool = False):
  """The open lock file at `path`, locked exclusively, or None if another process holds it.

  The lock lasts while the returned file is open, at most as long as this process. The file
  then says who holds it (`holder`).
  """
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  f = open(path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
  try:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
  except BlockingIOError:
    f.close()
    return None
  f.truncate(0)
  command = shlex.join(getattr(sys, "orig_argv", sys.argv)).replace("\n", " ")
  f.write(f"host {socket.gethostname()}, pid {os.getpid()}, started "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %z')}, command: {command}\n")
  f.flush()
  return f


def holder(path: str, patience: float = 2.0) -> str:
  """Who holds the lock at `path`, as its holder wrote it (it writes just after locking)."""
  deadline = time.monotonic() + patience
  while True:
    try:
      with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read().strip()
    except OSError:
      text = ""
    if text or time.monotonic() > deadline:
      return text or "a process that has not yet said who it is"
    time.sleep(0.05)


@contextlib.contextmanager
def building(data_dir, name: str):
  """Holds the build lock of dataset `name` in `data_dir`, waiting for another build first."""
  path = os.path.join(os.path.expanduser(os.fspath(data_dir)), f".{name}.build.lock")
  f = lock(path)
  if f is None:
    logging.warning("Waiting for another build of %s in %s to finish (held by %s; lock file %s).",
                    name, data_dir, holder(path), path)
    f = lock(path, wait=True)
  try:
    yield
  finally:
    f.close()


def download_and_prepare(builder, **kwargs) -> None:
  """`builder.download_and_prepare(**kwargs)` under the dataset's build lock.

  When another process finished the build meanwhile, TFDS reuses it, and the builder, made
  before it existed, reads the finished dataset's info.
  """
  method = type(builder).download_and_prepare
  unlocked = getattr(method, "unlocked", method)  # the lock is not reentrant
  prepared_before = builder.is_prepared()
  with building(builder.data_dir_root, builder.name):
    built_elsewhere = not prepared_before and builder.is_prepared()
    unlocked(builder, **kwargs)
  if built_elsewhere:
    builder.info.read_from_directory(builder.data_dir)


def serialise_builds() -> None:
  """Makes every `DatasetBuilder.download_and_prepare` in this process take its build lock."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  original = tfds.core.DatasetBuilder.download_and_prepare
  if hasattr(original, "unlocked"):
    return

  @functools.wraps(original)
  def locked(self, **kwargs):
    download_and_prepare(self, **kwargs)

  locked.unlocked = original
  tfds.core.DatasetBuilder.download_and_prepare = locked
