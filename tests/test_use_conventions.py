"""What a flax-examples user expects: hparams in TensorBoard, profiling, TFDS conventions, epath."""

import glob
import os
import subprocess
import sys

import ml_collections
import pytest
from etils import epath

from configs import default
from danhar_jax import checkpoints
from danhar_jax import config_check
from danhar_jax import input_pipeline
from danhar_jax import profiling
from danhar_jax import train
from danhar_jax import writers
from tests.conftest import ROOT


def event_bytes(logdir) -> bytes:
  files = glob.glob(os.path.join(logdir, "events.out.tfevents.*"))
  assert len(files) == 1, files  # hparams go beside the scalars, not into a run of their own
  return open(files[0], "rb").read()


def test_config_goes_to_tensorboard_as_text_and_hparams(tmp_path):
  w = writers.Writers(str(tmp_path))
  w.hparams(default.get_config().to_dict())
  w.scalars(1, {"test_accuracy": 0.5})
  w.close()
  data = event_bytes(tmp_path / "tensorboard")
  assert b"_hparams_/experiment" in data and b"_hparams_/session_start_info" in data
  assert b"model.widths" in data and b"(128, 256, 384)" in data  # flattened, tuples as text
  assert b"config/text_summary" in data and b'"learning_rate": 0.001' in data


def test_profile_steps_writes_a_trace_of_n_steps(tmp_path):
  import jax
  import jax.numpy as jnp
  profiler = profiling.StepProfiler(str(tmp_path), 2, start=0)
  f = jax.jit(lambda x: jnp.sin(x) @ x)
  x = jnp.ones((64, 64))
  traced = []
  for step in range(5):
    profiler.before(step)
    if profiler.active:
      traced.append(step)
    x = f(x) / 64
    profiler.after(step, x)
  assert traced == [1, 2] and not profiler.active  # after step 0, which compiles
  traces = glob.glob(str(tmp_path / "tensorboard/plugins/profile/*/*.xplane.pb"))
  assert len(traces) == 1 and os.path.getsize(traces[0]) > 0


def test_profile_steps_defaults_to_off_and_is_checked():
  config = default.get_config()
  assert config.profile_steps == 0
  config.profile_steps = -1
  with pytest.raises(ValueError, match="profile_steps"):
    config_check.validate(config)


def test_tfds_data_dir_is_used_when_data_dir_is_the_default(monkeypatch):
  config = ml_collections.ConfigDict({"data_dir": default.get_config().data_dir})
  monkeypatch.setenv("TFDS_DATA_DIR", "/somewhere/tfds")
  assert input_pipeline.data_dir(config) == "/somewhere/tfds"
  config.data_dir = "/explicit"
  assert input_pipeline.data_dir(config) == "/explicit"
  config.data_dir = "gs://bucket/tfds"  # left to TFDS, which reads gs:// itself
  assert input_pipeline.data_dir(config) == "gs://bucket/tfds"
  monkeypatch.delenv("TFDS_DATA_DIR")
  config.data_dir = default.get_config().data_dir
  assert input_pipeline.data_dir(config) == os.path.expanduser("~/tensorflow_datasets")


SIX = r"""
import sys
import tensorflow_datasets as tfds
import tfds_builders
for name in ("wisdm", "wisdm2019", "pamap2", "unimib_shar", "opportunity", "weakly"):
  b = tfds.builder(name, data_dir=sys.argv[1] + "/empty")
  assert not b.is_prepared() and type(b).__module__.startswith("tfds_builders."), name
print(len(tfds.data_source("wisdm", split="test", data_dir=sys.argv[1] + "/data")))
"""


def test_import_tfds_builders_registers_all_six(tmp_path, shared_data):
  import tensorflow_datasets as tfds
  from tfds_builders.wisdm import wisdm_dataset_builder as wisdm
  wisdm.Builder(data_dir=str(tmp_path / "data"), file_format="array_record").download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(shared_data / "wisdm_ar_v1.1")))
  proc = subprocess.run([sys.executable, "-c", SIX, str(tmp_path)], cwd="/",
                        env=dict(os.environ, DANHAR_OFFLINE="1", PYTHONPATH=str(ROOT)),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split()[-1] == "43"  # the real sample's test windows


def test_workdir_through_epath(tmp_path):
  workdir = epath.Path(tmp_path) / "a" / "run"  # a local path as an epath, as gs:// would be
  train.check_workdir(workdir)
  assert workdir.is_dir() and not list(workdir.iterdir())
  w = writers.Writers(workdir)
  w.eval_record({"step": 1, "accuracy": 0.5})
  w.close()
  assert writers.read_eval_metrics(workdir) == [{"step": 1, "accuracy": 0.5}]
  mngr = checkpoints.manager(workdir)
  assert mngr.latest_step() is None and (workdir / "checkpoints").is_dir()
  mngr.close()
