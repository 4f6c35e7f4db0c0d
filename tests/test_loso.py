"""--mode=loso on the real WISDM-2019 bytes: three subjects, one epoch of two steps per fold."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from danhar_jax import loso
from danhar_jax import writers
from tests.conftest import ROOT

# 1608 is in the builder's test split, which must not be empty.
SUBJECTS = (1600, 1601, 1608)
TINY = ["--config.model.widths=(16,16,16)", "--config.num_epochs=1",
        "--config.steps_per_epoch=2", "--config.batch_size=16", "--config.eval_batch_size=512",
        # The folds are real training runs: they also check the trace and the hparams.
        "--config.profile_steps=1"]


def three_subjects(shared_data, root):
  """A manual_dir holding only SUBJECTS' watch files (links to the real bytes)."""
  src = shared_data / "wisdm_2019" / "wisdm-dataset"
  dst = root / "wisdm-dataset"
  for sensor in ("accel", "gyro"):
    (dst / "raw" / "watch" / sensor).mkdir(parents=True)
    for s in SUBJECTS:
      name = f"data_{s}_{sensor}_watch.txt"
      os.symlink(src / "raw" / "watch" / sensor / name, dst / "raw" / "watch" / sensor / name)
  os.symlink(src / "activity_key.txt", dst / "activity_key.txt")
  return root


def env():
  return dict(os.environ, DANHAR_OFFLINE="1", JAX_PLATFORMS="cpu",
              PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


@pytest.mark.slow
def test_loso_folds_table_figure_and_resume(tmp_path, shared_data):
  manual = three_subjects(shared_data, tmp_path / "manual")
  workdir = tmp_path / "loso"
  cmd = [sys.executable, "main.py", "--config=configs/wisdm2019.py:quick", "--mode=loso",
         f"--workdir={workdir}", f"--config.data_dir={tmp_path / 'data'}",
         f"--config.manual_dir={manual}", "--loso_subjects=1600,1601,1608,1699", *TINY]
  proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "subject 1699 has no windows" in proc.stderr
  with open(workdir / "loso.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["subject"] for r in rows] == ["1600", "1601", "1608", "1699", "mean", "std"]
  assert rows[3]["windows"] == "0" and rows[3]["note"] == "no windows"
  for r, s in zip(rows[:3], SUBJECTS):
    record = writers.read_eval_metrics(workdir / f"subject_{s}")[-1]
    # The fold's test split is the one subject: its per-subject accuracy is the accuracy.
    assert record["subject_accuracy"] == {str(s): pytest.approx(record["accuracy"])}
    assert int(r["windows"]) == sum(map(sum, record["confusion"])) > 100
    assert float(r["accuracy"]) == pytest.approx(record["accuracy"], abs=1e-4)
  accuracies = [float(r["accuracy"]) for r in rows[:3]]
  assert float(rows[4]["accuracy"]) == pytest.approx(np.mean(accuracies), abs=1e-4)
  assert float(rows[5]["accuracy"]) == pytest.approx(np.std(accuracies, ddof=1), abs=1e-4)
  assert "| 1699 | 0 | no windows |" in (workdir / "loso.md").read_text()
  assert (workdir / "loso.png").stat().st_size > 1000
  fold = workdir / "subject_1600" / "tensorboard"
  assert len(list(fold.glob("plugins/profile/*/*.xplane.pb"))) == 1
  events = b"".join(p.read_bytes() for p in fold.glob("events.out.tfevents.*"))
  assert b"_hparams_/experiment" in events and b"test_subjects" in events
  # Resumed: every fold is finished, so none is trained again.
  proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stderr.count("finished already") == 3
  assert "test accuracy" not in proc.stderr


def test_summary_leaves_out_subjects_without_windows():
  rows = [{"subject": 1, "windows": 10, "accuracy": 0.5, "macro_f1": 0.4, "note": ""},
          {"subject": 2, "windows": 10, "accuracy": 0.7, "macro_f1": 0.6, "note": ""},
          {"subject": 3, "windows": 0, "accuracy": None, "macro_f1": None, "note": "no windows"}]
  s = loso.summary(rows)
  assert s["subjects"] == 2 and s["windows"] == 20
  assert s["accuracy"] == pytest.approx((0.6, np.std([0.5, 0.7], ddof=1)))


def test_planned_steps_match_the_trainer():
  import ml_collections
  config = ml_collections.ConfigDict({"batch_size": 16, "steps_per_epoch": -1, "num_epochs": 3})
  assert loso.planned_steps(config, 100) == 3 * 6
  config.steps_per_epoch = 2
  assert loso.planned_steps(config, 100) == 6
