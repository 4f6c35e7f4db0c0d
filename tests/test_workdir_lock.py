"""One run per workdir, tried with real processes: the second fails fast and names the first."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.conftest import one_error_line

# Takes the workdir lock, says so, and holds it until killed.
HOLDER = """
import sys, time
from danhar_jax import workdir_lock
lock = workdir_lock.acquire(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


def env():
  path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
  return {**os.environ, "PYTHONPATH": path, "DANHAR_OFFLINE": "1"}


def start_holder(workdir):
  proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], cwd=ROOT, env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  line = proc.stdout.readline()
  assert line.strip() == "locked", (line, proc.stderr.read() if proc.poll() is not None else "")
  return proc


def main_py(workdir, tmp_path, mode="train"):
  return subprocess.run(
      [sys.executable, "main.py", "--config=configs/wisdm.py:quick", f"--workdir={workdir}",
       f"--mode={mode}", f"--config.data_dir={tmp_path / 'data'}",
       f"--config.manual_dir={tmp_path / 'nothing'}"],
      cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_second_run_on_a_locked_workdir_fails_at_once_naming_the_holder(tmp_path):
  workdir = tmp_path / "run"
  holder = start_holder(workdir)
  try:
    for mode in ("train", "eval"):
      started = time.perf_counter()
      proc = main_py(workdir, tmp_path, mode)
      assert proc.returncode != 0
      last = one_error_line(proc.stderr)
      assert last.startswith(f"error: --workdir={workdir} is in use by another run (host "), last
      assert f"pid {holder.pid}, started " in last and "command: " in last, last
      assert time.perf_counter() - started < 60
      # It stopped before touching the data: nothing was prepared.
      assert not (tmp_path / "data").exists()
  finally:
    holder.kill()
    holder.wait()


@pytest.mark.slow
def test_kill_9_leaves_no_stale_lock(tmp_path):
  workdir = tmp_path / "run"
  first = start_holder(workdir)
  os.kill(first.pid, signal.SIGKILL)
  first.wait()
  assert (workdir / ".lock").exists()  # the file stays; the lock went with the process
  second = start_holder(workdir)
  try:
    assert second.poll() is None
  finally:
    second.kill()
    second.wait()
