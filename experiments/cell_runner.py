"""One cell of a comparison: a `main.py` run in its own workdir, resumable, run once.

ablation.py and recipe_comparison.py both run their cells through `run`: a cell whose record
file holds the same command finished before and is not run again; otherwise the command runs
(resuming from the workdir's checkpoints, if any) with its output appended to `log.txt`.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shlex
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def finished_before(record_path: str, cmd: list[str]) -> dict | None:
  """The saved record, if it is of this same command (the interpreter aside)."""
  if not os.path.exists(record_path):
    return None
  with open(record_path) as f:
    record = json.load(f)
  return record if record.get("command") == cmd[1:] else None


def run(cmd: list[str], workdir: str, label: str, shown: str | None = None,
        env: dict | None = None) -> dict:
  """Runs `cmd` from the repository root, output appended to `<workdir>/log.txt`.

  Returns {command (without the interpreter), returncode, started, finished, wall_seconds,
  resumed}; `shown` is the command as printed (default: the command itself).
  """
  os.makedirs(workdir, exist_ok=True)
  print(f"[{label}] {now()} {shown or shlex.join(cmd[1:])}", flush=True)
  resumed = os.path.isdir(os.path.join(workdir, "checkpoints"))
  # The checkout's package, not whichever one an editable install points at.
  env = dict(os.environ if env is None else env, DANHAR_OFFLINE="1",
             PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
  started, start_time = time.perf_counter(), now()
  with open(os.path.join(workdir, "log.txt"), "a") as log:
    proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                          check=False)
  return {"command": cmd[1:], "returncode": proc.returncode, "started": start_time,
          "finished": now(), "wall_seconds": time.perf_counter() - started, "resumed": resumed}
