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
import tensorflow_datasets as tfds

from danhar_jax import writers
from tests.conftest import ROOT
from tests.conftest import SHARED_DATA
from tests.test_end_to_end import final_params

FLAGS = ["--config=configs/wisdm.py:quick", "--config.model.widths=(16,16,16)"]


def free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def wisdm_data(tmp_path_factory):
  if not SHARED_DATA.exists():
    pytest.skip(f"real data not found at {SHARED_DATA}")
  from tfds_builders.wisdm import wisdm_dataset_builder
  data_dir = tmp_path_factory.mktemp("data")
  wisdm_dataset_builder.Builder(data_dir=str(data_dir), file_format="array_record"
                                ).download_and_prepare(download_config=tfds.download.DownloadConfig(
                                    manual_dir=str(SHARED_DATA / "wisdm_ar_v1.1")))
  return data_dir


def test_two_processes_match_one_process(tmp_path, wisdm_data):
  env = dict(os.environ, DANHAR_OFFLINE="1", JAX_PLATFORMS="cpu")
  common = [sys.executable, "main.py", *FLAGS, f"--config.data_dir={wisdm_data}"]
  single = subprocess.run([*common, f"--workdir={tmp_path / 'one'}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]

  port, workdir = free_port(), tmp_path / "two"
  procs = [subprocess.Popen(
      [*common, f"--workdir={workdir}", f"--coordinator_address=localhost:{port}",
       "--num_processes=2", f"--process_id={i}"], cwd=ROOT, env=env,
      stderr=subprocess.PIPE, text=True) for i in range(2)]
  logs = [p.communicate(timeout=600)[1] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  assert "JAX process 1/2" in logs[1]
  assert "global batch 32, per-device batch 16" in logs[0]

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
