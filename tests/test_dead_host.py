"""A dead host: one of two processes is killed mid-epoch; the other stops in bounded time with one
line, and re-running both resumes bit-identically to a run that was never interrupted.

The processes run main.py's own entry point on the fake data of tests/test_train.py, with JAX's
distributed runtime and gloo CPU collectives on localhost, as tests/test_multihost.py does.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from danhar_jax import checkpoints
from danhar_jax import writers
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.host_devices]  # three two-process runs: minutes

# main.py, with the fake data in place of a prepared dataset.
DRIVER = """
import sys
from danhar_jax import input_pipeline
from tests.test_train import fake_splits
data = fake_splits()
input_pipeline.open_splits = lambda config: data
import main
from absl import app
sys.argv = ["main.py", *sys.argv[1:]]
app.run(main.main, flags_parser=main.parse_flags_or_exit)
"""
FLAGS = ["--config=configs/wisdm.py:quick", "--config.model.widths=(16,16,16)",
         "--config.input_shape=(48,3)", "--config.num_epochs=3", "--heartbeat_timeout_seconds=10"]
BOUND_S = 60


def free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def start_two(workdir, logs):
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "DANHAR_OFFLINE": "1"}
  # Not the session's persistent compilation cache: only process 0 writes it, so on a rerun
  # process 0 loads its executables while process 1 compiles them, and on loaded cores (jax 0.12)
  # process 0 gives up on the first collective after gloo's 30 s context deadline ("Gloo
  # context initialization failed: DEADLINE_EXCEEDED") before process 1 gets there.
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  port = free_port()
  return [subprocess.Popen(
      [sys.executable, "-c", DRIVER, *FLAGS, f"--workdir={workdir}",
       f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"],
      cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(logs[i], "w"))
      for i in range(2)]


def run_two(workdir, tmp_path, name):
  logs = [tmp_path / f"{name}_{i}.log" for i in range(2)]
  procs = start_two(workdir, logs)
  for p, log in zip(procs, logs):
    assert p.wait(timeout=600) == 0, log.read_text()[-3000:]


def final(workdir):
  state, _, step = checkpoints.restore_as_saved(str(workdir))
  return step, [np.asarray(x) for x in jax.tree.leaves(state)]


def records(workdir):
  return [{k: v for k, v in r.items() if k != "eval_seconds"}
          for r in writers.read_eval_metrics(workdir)]


def test_a_killed_process_stops_the_other_in_bounded_time_and_both_resume(tmp_path):
  run_two(tmp_path / "whole", tmp_path, "whole")

  workdir = tmp_path / "run"
  logs = [tmp_path / f"killed_{i}.log" for i in range(2)]
  procs = start_two(workdir, logs)
  try:
    started = time.monotonic()
    while "[epoch 2, step 4/9]" not in logs[0].read_text():  # mid-epoch 2, after checkpoint 3
      assert procs[0].poll() is None and procs[1].poll() is None, logs[0].read_text()[-3000:]
      assert time.monotonic() - started < 600
      time.sleep(0.1)
    os.kill(procs[1].pid, signal.SIGKILL)
    killed = time.monotonic()
    rc = procs[0].wait(timeout=BOUND_S)
    took = time.monotonic() - killed
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert rc != 0 and took < BOUND_S, (rc, took)
  last = logs[0].read_text().strip().splitlines()[-1]
  assert last.startswith("error: process 0/2 lost another process of this multi-host run ("), last
  assert last.endswith("resume from the last checkpoint.")
  assert checkpoints.manager(str(workdir)).latest_step() in (3, 6)

  run_two(workdir, tmp_path, "resumed")
  (step_a, a), (step_b, b) = final(tmp_path / "whole"), final(workdir)
  assert step_a == step_b == 9
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert records(tmp_path / "whole") == records(workdir)
