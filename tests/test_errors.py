"""Every user-facing mistake gets a message that names what is wrong and what to do.

One row per bad input: what the user did, and the message it must give. Raw-file errors are
covered per format in the builder tests; here are the ones that reach a user through the trainer.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import wisdm
from danhar_jax import hosts
from danhar_jax import input_pipeline
from danhar_jax import models
from danhar_jax import parallel
from danhar_jax import train
from tests.conftest import ROOT
from tests.conftest import SHARED_DATA
from tests.conftest import one_error_line
from tfds_builders import _common


def config(**overrides):
  c = wisdm.get_config("quick")
  for key, value in overrides.items():
    target = c
    *path, leaf = key.split(".")
    for p in path:
      target = target[p]
    target[leaf] = value
  return c


@pytest.fixture(scope="module")
def wisdm_built(tmp_path_factory):
  if not SHARED_DATA.exists():
    pytest.skip(f"real data not found at {SHARED_DATA}")
  data_dir = tmp_path_factory.mktemp("data")
  c = config(data_dir=str(data_dir), manual_dir=str(SHARED_DATA / "wisdm_ar_v1.1"))
  input_pipeline.prepare(c)
  return str(data_dir)


def bad_raw_file(tmp_path, text):
  folder = tmp_path / "manual" / "WISDM_ar_v1.1"
  folder.mkdir(parents=True)
  (folder / "WISDM_ar_v1.1_raw.txt").write_text(text)
  return config(data_dir=str(tmp_path / "data"), manual_dir=str(tmp_path / "manual"))


GOOD_ROW = "33,Jogging,49105962326000,-0.6946377,12.680544,0.50395286;\n"

# (id, what the user does, exception, message it must contain)
CASES = [
    ("config_argument", lambda t, d: wisdm.get_config("bogus"), ValueError,
     "Unknown config argument(s) ['bogus']; valid: danhar, resnet, cnn"),
    ("two_variants", lambda t, d: wisdm.get_config("cnn,resnet"), ValueError,
     "Choose one model variant"),
    ("backbone", lambda t, d: models.create_model(config(**{"model.backbone": "vgg"})),
     ValueError, "config.model.backbone='vgg' is not one of cnn, resnet"),
    ("attention", lambda t, d: models.create_model(config(**{"model.attention": "self"})),
     ValueError, "is not one of none, channel, temporal, channel_temporal, temporal_channel"),
    ("dtype", lambda t, d: models.create_model(config(**{"model.dtype": "float16"})),
     ValueError, "config.model.dtype='float16' is not one of float32, bfloat16"),
    ("conv_impl", lambda t, d: models.create_model(config(**{"model.conv_impl": "fft"})),
     ValueError, "config.model.conv_impl='fft' is not one of auto, im2col, winograd, xla"),
    ("matmul_precision", lambda t, d: train.with_matmul_precision(train.train_step, "tf32"),
     ValueError, "config.matmul_precision='tf32' is not one of default, high, highest"),
    ("batch_indivisible", lambda t, d: train.check_batch_divides(210, 8), ValueError,
     "config.batch_size=210 does not divide across the 8 devices; use 208 or 216"),
    ("widths_vs_strides",
     lambda t, d: models.create_model(config(**{"model.widths": (8, 8)})), ValueError,
     "must have one entry per block"),
    ("parallelism", lambda t, d: parallel.Parallel("dp"), ValueError,
     "config.parallelism='dp' is not one of pmap, shard_map"),
    ("lr_schedule", lambda t, d: train.learning_rate_schedule(config(lr_schedule="cosine"), 1),
     ValueError, "config.lr_schedule='cosine' is not one of constant, exponential, step"),
    ("dataset", lambda t, d: input_pipeline.builder(config(dataset="har70")), ValueError,
     "Unknown config.dataset='har70'; valid: wisdm, wisdm2019, pamap2, unimib_shar"),
    ("builder_config", lambda t, d: input_pipeline.builder(config(dataset="wisdm/by_user")),
     ValueError, "wisdm has no builder config 'by_user'; valid: random_split, subject_runs"),
    ("test_subjects_syntax", lambda t, d: input_pipeline.load(
        config(data_dir=d, test_subjects="33;17")), ValueError,
     "config.test_subjects='33;17' must be comma-separated integers"),
    ("test_subjects_unknown", lambda t, d: input_pipeline.load(
        config(data_dir=d, test_subjects="5")), ValueError,
     "config.test_subjects [5] are not in the dataset; its subjects are [17, 33]"),
    ("input_shape", lambda t, d: input_pipeline.load(config(data_dir=d, input_shape=(128, 3))),
     ValueError, "wisdm gives windows of shape (200, 3) (time, sensors), but config.input_shape "
     "is (128, 3)"),
    ("num_classes", lambda t, d: input_pipeline.load(config(data_dir=d, num_classes=7)),
     ValueError, "wisdm has 6 classes but config.num_classes is 7"),
    ("batch_too_large", lambda t, d: train.train_and_evaluate(
        config(data_dir=d, batch_size=512), str(t / "run")), ValueError,
     "The train split has 99 windows, fewer than one batch of 512"),
    ("workdir_unwritable", lambda t, d: train.train_and_evaluate(
        config(data_dir=d), str(t / "file" / "run")), PermissionError,
     "is not a writable directory"),
    ("eval_without_checkpoint", lambda t, d: train.evaluate(config(data_dir=d), str(t)),
     FileNotFoundError, "No checkpoint in"),
    ("dataset_missing_offline", lambda t, d: input_pipeline.prepare(
        config(data_dir=str(t / "empty"))), _common.MissingRawFilesError,
     "and put WISDM_ar_latest.tar.gz, or the WISDM_ar_v1.1/ folder"),
    ("raw_non_numeric", lambda t, d: input_pipeline.prepare(bad_raw_file(
        t, GOOD_ROW + "33,Jogging,49106062269000,abc,11.26,0.95;\n")), _common.RawFormatError,
     "WISDM_ar_v1.1_raw.txt:2: non-numeric field"),
    ("raw_nan", lambda t, d: input_pipeline.prepare(bad_raw_file(
        t, GOOD_ROW * 3 + "33,Jogging,49106062269000,nan,11.26,0.95;\n")),
     _common.RawFormatError, "WISDM_ar_v1.1_raw.txt:4: non-finite"),
    ("raw_wrong_field_count", lambda t, d: input_pipeline.prepare(bad_raw_file(
        t, GOOD_ROW + "33,Jogging,49106062269000,11.26,0.95;\n")), _common.RawFormatError,
     "WISDM_ar_v1.1_raw.txt:2:"),
    ("raw_empty_file", lambda t, d: input_pipeline.prepare(bad_raw_file(t, "")),
     _common.RawFormatError, "WISDM_ar_v1.1_raw.txt"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_a_clear_message(case, tmp_path, wisdm_built, monkeypatch):
  monkeypatch.setenv("DANHAR_OFFLINE", "1")
  (tmp_path / "file").write_text("a file where a folder should be")
  _, action, error, message = case
  with pytest.raises(error) as raised:
    action(tmp_path, wisdm_built)
  assert message in str(raised.value)


def test_there_are_at_least_twenty_cases():
  assert len(CASES) >= 20


@pytest.mark.parametrize("flags,message", [
    (["--config=configs/wisdm.py", "--config.batch_sz=8"],
     'error: bad --config: batch_sz Did you mean "batch_size" instead of "batch_sz"?'),
    (["--config=configs/wisdm.py", "--config.batch_size=big"],
     "invalid literal for int() with base 10: big"),
    (["--config=configs/wisdm.py", "--config.model.attention=self"],
     "error: config.model.attention='self' is not one of none, channel"),
])
def test_main_py_reports_config_mistakes_in_one_line(flags, message):
  proc = subprocess.run([sys.executable, "main.py", "--mode=summary", *flags], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert message in one_error_line(proc.stderr)


def test_a_lost_peer_is_recognised_also_when_wrapped(monkeypatch):
  """Orbax re-raises a failed collective as a ValueError carrying the runtime's status text: it
  is still a lost peer (one line, exit at once), not a user error."""
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  gloo = ("UNKNOWN: Gloo AllGather failed: [external/gloo/gloo/transport/tcp/pair.cc:538] "
          "Read error [127.0.0.1]:37575: Connection reset by peer")
  assert hosts.lost_a_peer(ValueError(gloo))
  wrapped = ValueError("saving checkpoint 6 failed")
  wrapped.__cause__ = type("JaxRuntimeError", (RuntimeError,), {})("INTERNAL: heartbeat timeout")
  assert hosts.lost_a_peer(wrapped)
  assert not hosts.lost_a_peer(ValueError("config.batch_size=210 does not divide across the 8 "
                                          "devices; use 208 or 216"))
  assert not hosts.lost_a_peer(BrokenPipeError(32, "Broken pipe"))  # no runtime status
  monkeypatch.setattr(jax, "process_count", lambda: 1)
  assert not hosts.lost_a_peer(ValueError(gloo))

