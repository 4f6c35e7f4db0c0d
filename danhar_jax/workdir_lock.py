"""One run per workdir: train and eval hold an exclusive OS lock on `<workdir>/.lock`.

Two runs in one workdir would write their checkpoints and metric lines into the same files and
silently mix two runs. The lock is an `fcntl.flock`, which the kernel releases when its process
dies, so a run killed with `kill -9` leaves no stale lock. Under multi-host, process 0 holds it.
"""

from __future__ import annotations

import os

from tfds_builders import build_lock

LOCK_FILE = ".lock"


class WorkdirInUseError(PermissionError):
  """Another process holds the workdir's lock."""


def acquire(workdir: str):
  """Locks `workdir` for this process's lifetime: keep the returned file referenced."""
  path = os.path.join(workdir, LOCK_FILE)
  try:
    f = build_lock.lock(path)
  except OSError as e:
    raise PermissionError(f"--workdir={workdir} is not a writable directory ({e}). "
                          "Choose a folder you can write to.") from None
  if f is None:
    raise WorkdirInUseError(f"--workdir={workdir} is in use by another run "
                            f"({build_lock.holder(path)}); wait for it to end, or use another "
                            "--workdir.")
  return f
