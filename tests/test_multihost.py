"""Two processes on localhost, JAX's own distributed runtime and CPU collectives (gloo).

`python main.py ... --coordinator_address --num_processes --process_id`, twice, must train to the
parameters of one process on the same global batch, write one checkpoint and one metrics file.
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from danhar_jax import writers
from tests.conftest import ROOT
from tests.conftest import SHARED_DATA
from tests.test_end_to_end import final_params
from tests.test_wisdm_builders import build
from tfds_builders.wisdm import wisdm_dataset_builder as wisdm

pytestmark = pytest.mark.slow  # trains or spawns processes: minutes

FLAGS = ["--config=configs/wisdm.py:quick", "--config.model.widths=(16,16,16)"]


def free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def wisdm_data(tmp_path_factory):
  if not SHARED_DATA.exists():
    pytest.skip(f"real data not found at {SHARED_DATA}")
  data_dir = tmp_path_factory.mktemp("data")
  build(wisdm, data_dir, SHARED_DATA / "wisdm_ar_v1.1")
  return data_dir


def run_two_processes(common, workdir, env) -> list[str]:
  """Runs `common` as processes 0 and 1 of one distributed run; returns their logs."""
  port = free_port()
  # Not the session's persistent compilation cache (see tests/test_dead_host.py): a process that
  # loads executables its peer has to compile can miss gloo's 30 s context deadline (jax 0.12).
  env = {k: v for k, v in env.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  procs = [subprocess.Popen(
      [*common, f"--workdir={workdir}", f"--coordinator_address=localhost:{port}",
       "--num_processes=2", f"--process_id={i}"], cwd=ROOT, env=env,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  try:  # a collective that never meets hangs both: fail in minutes, and leave no process behind
    logs = [p.communicate(timeout=300)[1] for p in procs]
  finally:
    for p in procs:
      p.kill()
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  return logs


@pytest.mark.host_devices
def test_two_processes_match_one_process(tmp_path, wisdm_data):
  env = dict(os.environ, DANHAR_OFFLINE="1", JAX_PLATFORMS="cpu")
  common = [sys.executable, "main.py", *FLAGS, f"--config.data_dir={wisdm_data}"]
  single = subprocess.run([*common, f"--workdir={tmp_path / 'one'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]

  workdir = tmp_path / "two"
  logs = run_two_processes(common, workdir, env)
  assert "JAX process 1/2" in logs[1]
  assert "global batch 32, per-device batch 16" in logs[0]
  # Each process reads only its shard: 3 steps × 16 rows of each epoch, and every other test
  # window (22 and 21 of 43; process 1 also holds row 0, which the eval batches' padding
  # points at).
  for i, log in enumerate(logs):
    for epoch in (1, 2):
      assert f"Process {i}/2 holds its shard of epoch {epoch}: 48 of 99 train windows" in log
    assert f"Process {i}/2 holds its shard of the test split: {22 - i} of 43 windows" in log

  (step_one, one), (step_two, two) = (final_params(tmp_path / "one"), final_params(workdir))
  one, two = np.concatenate([x.ravel() for x in one]), np.concatenate([x.ravel() for x in two])
  assert step_one == step_two == 6
  # Same global batch, split over two hosts: only the reduction order differs (see
  # tests/test_train.py for why Adam bounds the element-wise difference by 2·lr·steps).
  assert np.abs(one - two).max() <= 2 * 1e-3 * 6
  assert np.linalg.norm(one - two) / np.linalg.norm(one) < 2e-3
  # Metrics are reduced over both hosts: the test accuracy counts every test window once.
  two_metrics, one_metrics = (writers.read_eval_metrics(workdir),
                              writers.read_eval_metrics(tmp_path / "one"))
  assert [r["epoch"] for r in two_metrics] == [1, 2]  # written once, by process 0
  assert sum(map(sum, two_metrics[-1]["confusion"])) == sum(map(sum, one_metrics[-1]["confusion"]))


@pytest.mark.host_devices
def test_weakly_localisation_is_reduced_over_processes(tmp_path):
  """Each process scores localisation on its half of the test split; the weighted means must equal
  one process's scores on the whole split (the same trained model, up to reduction order)."""
  manual = SHARED_DATA / "wisdm_2019"
  if not manual.exists():
    pytest.skip(f"real data not found at {manual}")
  env = dict(os.environ, DANHAR_OFFLINE="1", JAX_PLATFORMS="cpu")
  common = [sys.executable, "main.py", "--config=configs/weakly.py:quick",
            "--config.model.widths=(16,16,16)", "--config.test_subjects=1608,1609,1610,1611",
            f"--config.data_dir={tmp_path / 'data'}", f"--config.manual_dir={manual}"]
  single = subprocess.run([*common, f"--workdir={tmp_path / 'one'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]
  logs = run_two_processes(common, tmp_path / "two", env)
  for i, log in enumerate(logs):
    assert f"Process {i}/2 holds its shard of the test split: 512 of 1024 windows" in log
  one, two = (writers.read_eval_metrics(tmp_path / w)[-1] for w in ("one", "two"))
  assert two["loc_n"] == one["loc_n"] == 1024
  for key in ("loc_pointing", "loc_iou", "loc_iou_topk", "loc_pointing_uniform", "loc_iou_random"):
    assert two[key] == pytest.approx(one[key], abs=5e-3), key  # a few windows of 1024
