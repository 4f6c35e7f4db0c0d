"""One build per dataset, tried with real processes building WISDM's dummy data in one data_dir.

The first build reads its raw file from a named pipe, so it stays mid-build, holding the lock,
until the test writes the bytes: the second process is then certain to meet a build in progress.
"""

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import tensorflow_datasets as tfds

import pytest

from tests.conftest import ROOT
from tfds_builders.wisdm import wisdm_dataset_builder as wisdm

DUMMY = ROOT / "tfds_builders" / "wisdm" / "dummy_data"
RAW = DUMMY / "WISDM_ar_v1.1" / "WISDM_ar_v1.1_raw.txt"
COUNTS = {"train": 7, "test": 3}  # wisdm/random_split over the dummy data

PREPARE = """
import sys
from configs import wisdm
from danhar_jax import input_pipeline
c = wisdm.get_config("quick")
c.data_dir, c.manual_dir = sys.argv[1], sys.argv[2]
b = input_pipeline.prepare(c)
print("prepared", {s: len(b.as_data_source(split=s)) for s in ("train", "test")}, flush=True)
"""


class Proc:
  """A subprocess whose output lines (stdout and stderr: the TFDS CLI logs to stdout) are
  collected as they come."""

  def __init__(self, *args):
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    self.popen = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "PYTHONPATH": path, "DANHAR_OFFLINE": "1",
             "PYTHONUNBUFFERED": "1"})
    self.lines, self.seen = queue.Queue(), []
    threading.Thread(target=lambda: [self.lines.put(l) for l in self.popen.stdout],
                     daemon=True).start()

  def wait_for(self, text, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      try:
        line = self.lines.get(timeout=0.5)
      except queue.Empty:
        continue
      self.seen.append(line)
      if text in line:
        return line
    raise AssertionError(f"no {text!r} within {timeout} s:\n" + "".join(self.seen)[-3000:])

  def finish(self, timeout=180):
    """(exit status, everything it printed)."""
    self.popen.wait(timeout=timeout)
    time.sleep(0.2)  # the reader thread's last lines
    while not self.lines.empty():
      self.seen.append(self.lines.get())
    return self.popen.returncode, "".join(self.seen)


def cli_build(data_dir, manual_dir):
  return Proc("-m", "tfds_builders", "build", "wisdm/random_split", f"--data_dir={data_dir}",
              f"--manual_dir={manual_dir}")


def pipe_manual_dir(tmp_path):
  """A manual_dir whose raw file is a named pipe: a build reading it waits for the test."""
  folder = tmp_path / "pipe" / "WISDM_ar_v1.1"
  folder.mkdir(parents=True)
  os.mkfifo(folder / RAW.name)
  return folder.parent


def feed(manual_dir):
  """Blocks until a build opens the pipe for reading (it holds the lock by then); returns it."""
  return open(manual_dir / "WISDM_ar_v1.1" / RAW.name, "wb")  # pylint: disable=consider-using-with


def assert_built(data_dir):
  sources = tfds.data_source("wisdm/random_split", data_dir=data_dir, download=False)
  assert {split: len(source) for split, source in sources.items()} == COUNTS


@pytest.mark.slow
def test_second_build_waits_then_reuses_the_first(tmp_path):
  data_dir, pipe = tmp_path / "data", pipe_manual_dir(tmp_path)
  first = cli_build(data_dir, pipe)
  with feed(pipe) as f:
    # The first holds the lock, mid-build: a CLI build and a first training run both wait.
    second = cli_build(data_dir, DUMMY)
    third = Proc("-c", PREPARE, str(data_dir), str(DUMMY))
    for proc in (second, third):
      line = proc.wait_for("Waiting for another build of wisdm")
      assert f"pid {first.popen.pid}" in line
    f.write(RAW.read_bytes())
  outputs = {}
  for name, proc in (("first", first), ("second", second), ("third", third)):
    rc, outputs[name] = proc.finish()
    assert rc == 0, outputs[name][-3000:]
    assert "FileExistsError" not in outputs[name]
  assert "Reusing dataset" in outputs["second"]
  assert "prepared {'train': 7, 'test': 3}" in outputs["third"]
  assert_built(data_dir)


@pytest.mark.slow
def test_a_build_killed_holding_the_lock_leaves_nothing_finished(tmp_path):
  data_dir, pipe = tmp_path / "data", pipe_manual_dir(tmp_path)
  first = cli_build(data_dir, pipe)
  with feed(pipe):
    os.kill(first.popen.pid, signal.SIGKILL)  # mid-build, holding the lock
    first.popen.wait()
  assert not (data_dir / "wisdm" / "random_split" / str(wisdm.Builder.VERSION)).exists()
  second = cli_build(data_dir, DUMMY)  # the lock went with the process: no wait
  rc, out = second.finish()
  assert rc == 0, out[-3000:]
  assert "Generating dataset wisdm" in out and "Waiting for another build" not in out
  assert_built(data_dir)
