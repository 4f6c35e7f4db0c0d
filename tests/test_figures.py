"""figures.make_all on tiny trained workdirs: every PNG is written, valid and not empty.

A tiny DanHAR and a tiny ResNet are trained on in-memory random windows (as tests/test_train.py
does), with weakly-style segments in the test split, so every figure has its inputs.
"""

import json
import os

import numpy as np
import pytest

from configs import wisdm
from danhar_jax import figures
from danhar_jax import input_pipeline
from danhar_jax import train

pytestmark = pytest.mark.slow  # trains or spawns processes: minutes

SHAPE = (48, 3)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_splits(seed=0):
  rng = np.random.default_rng(seed)

  def split(n):
    starts = rng.integers(0, 30, n)
    return {"signal": rng.normal(size=(n, *SHAPE)).astype(np.float32),
            "label": rng.integers(0, 6, n).astype(np.int32),
            "subject": rng.integers(1, 5, n).astype(np.int32),
            "segment_start": starts, "segment_end": starts + 12}

  return split(100), split(37), [f"activity {i}" for i in range(6)]


def tiny_config(variant):
  config = wisdm.get_config(f"{variant},quick")
  config.input_shape, config.model.widths = SHAPE, (16, 16, 16)
  return config


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
  """A trained tiny DanHAR, and a baseline run that has only its eval_metrics.jsonl."""
  root = tmp_path_factory.mktemp("runs")
  data = fake_splits()
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(input_pipeline, "open_splits", lambda config: data)
    train.train_and_evaluate(tiny_config("danhar"), str(root / "danhar"))
  rng = np.random.default_rng(1)
  os.makedirs(root / "resnet")
  with open(root / "resnet" / "eval_metrics.jsonl", "w") as f:
    for epoch in (1, 2, 3):
      f.write(json.dumps({"epoch": epoch, "step": 3 * epoch, "accuracy": 0.2 + 0.1 * epoch,
                          "train_accuracy": 0.3 + 0.1 * epoch,
                          "confusion": rng.integers(0, 5, (6, 6)).tolist()}) + "\n")
  return root, data


def check_png(path, min_bytes=10_000):
  with open(path, "rb") as f:
    head = f.read(8)
  assert head == PNG_SIGNATURE, path
  assert os.path.getsize(path) > min_bytes, (path, os.path.getsize(path))


def test_make_all_writes_every_figure(workdirs, monkeypatch):
  root, data = workdirs
  monkeypatch.setattr(input_pipeline, "load_test", lambda config: data[1:])
  paths = figures.make_all(tiny_config("danhar"), str(root / "danhar"),
                           baseline_workdir=str(root / "resnet"),
                           compare_workdirs=[str(root / "resnet")], num_windows=3)
  names = [os.path.basename(p) for p in paths]
  assert names == ["temporal_attention.png", "sensor_attention.png", "confusion.png",
                   "test_error.png"]
  for path in paths:
    assert os.path.dirname(path) == str(root / "danhar" / "figures")
    check_png(path)


def test_a_run_without_checkpoints_gets_the_metric_figures(workdirs, monkeypatch):
  root, data = workdirs
  monkeypatch.setattr(input_pipeline, "load_test", lambda config: data[1:])
  paths = figures.make_all(tiny_config("resnet"), str(root / "resnet"))
  assert [os.path.basename(p) for p in paths] == ["confusion.png", "test_error.png"]
  for path in paths:
    check_png(path)
  assert figures.run_label(str(root / "danhar")) == "DanHAR"  # from the checkpoint's config
  assert figures.run_label(str(root / "resnet")) == "resnet"  # no checkpoint: the folder


def test_helpers():
  labels = np.array([2, 2, 0, 1, 0, 2])
  np.testing.assert_array_equal(figures.example_windows(labels, 4), [2, 3, 0, 4])
  masks = {"block1": np.stack([np.full((5, 2), v) for v in (1.0, 3.0, 2.0)])}
  per_class = figures.sensor_attention(masks, np.array([0, 0, 1]), 3)["block1"]
  np.testing.assert_allclose(per_class[:2], [[2, 2], [2, 2]])
  assert np.isnan(per_class[2]).all()  # no window of class 2
  config = tiny_config("danhar")
  config.dataset = "weakly/wisdm2019"
  assert figures.sensor_names(config, 6)[3] == "gyro_x"
  assert figures.sensor_names(config, 3) == ["s0", "s1", "s2"]
