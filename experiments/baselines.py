r"""The classical HAR baseline: a random forest on per-channel window statistics.

Same windows and splits as the config's run (`input_pipeline.open_split_set`). Each window
becomes, per sensor channel, its mean, std, min, max, median, 10th and 90th percentiles and mean
absolute first difference, concatenated. The forest (scikit-learn, fixed seed, `--trees`) is
scored on the test split; the record goes to `<workdir>/eval_metrics.jsonl` in the shape a
trained cell writes (accuracy, F1, per-subject accuracy and windows), so experiments/engine.py
reads it as one more cell (kind "rf"); the split's overlap audit goes to
`<workdir>/split_audit.json`, as a trained run's does:

  python -m experiments.baselines --config=configs/wisdm2019.py --workdir=runs/rf/seed0 \
      --config.manual_dir=/path/to/wisdm_2019 --config.test_subjects=1608,1609,1610,1611
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

if not __package__:  # run as a file, the packages are not importable
  sys.exit("run it from the repository root as: python -m experiments.baselines")
# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app, flags
from ml_collections import config_flags
from sklearn.ensemble import RandomForestClassifier

from danhar_jax import input_pipeline, metrics, writers
# pylint: enable=g-import-not-at-top,wrong-import-position

FEATURES = ("mean", "std", "min", "max", "median", "p10", "p90", "mean_abs_diff")


def features(signal: np.ndarray) -> np.ndarray:
  """[windows, time, channels] → [windows, len(FEATURES) × channels], statistic-major."""
  x = np.asarray(signal, np.float64)
  p10, median, p90 = np.percentile(x, [10, 50, 90], axis=1)
  stats = (x.mean(1), x.std(1), x.min(1), x.max(1), median, p10, p90,
           np.abs(np.diff(x, axis=1)).mean(1))
  return np.concatenate(stats, axis=1).astype(np.float32)


def fit_evaluate(split_set, seed: int = 0, trees: int = 300, jobs: int = 2) -> dict:
  """Fits the forest on the train split and scores the test split: an evaluation record."""
  train, test = split_set.train.read_all(), split_set.test.read_all()
  started = time.perf_counter()
  forest = RandomForestClassifier(n_estimators=trees, random_state=seed, n_jobs=jobs)
  forest.fit(features(train["signal"]), train["label"])
  predicted = forest.predict(features(test["signal"]))
  k = len(split_set.class_names)
  confusion = np.zeros((k, k), np.int64)
  np.add.at(confusion, (test["label"], predicted), 1)
  out = {"epoch": 1, "step": 0, **metrics.f1_scores(confusion), "confusion": confusion.tolist(),
         "fit_seconds": time.perf_counter() - started}
  if "subject" in test:
    subjects = [str(int(s)) for s in test["subject"]]
    correct = predicted == test["label"]
    out["subject_accuracy"] = {s: float(correct[np.array(subjects) == s].mean())
                               for s in sorted(set(subjects))}
    out["subject_windows"] = {s: subjects.count(s) for s in out["subject_accuracy"]}
  return out


def main(argv):
  del argv
  f = flags.FLAGS
  config, workdir = f.config, f.workdir
  split_set = input_pipeline.open_split_set(config)
  record = fit_evaluate(split_set, config.seed, f.trees, f.jobs)
  os.makedirs(workdir, exist_ok=True)
  writers.write_split_audit(workdir, split_set.audit)
  # One evaluation, written whole: a rerun replaces it rather than appending a second epoch 1.
  with open(os.path.join(workdir, "eval_metrics.jsonl"), "w") as out:
    out.write(json.dumps(record) + "\n")
  print(f"random forest: accuracy {record['accuracy']:.4f}, macro-F1 {record['macro_f1']:.4f}")


if __name__ == "__main__":
  config_flags.DEFINE_config_file("config", None, "A configs/<dataset>.py file[:args].")
  flags.DEFINE_string("workdir", None, "Where eval_metrics.jsonl goes.")
  flags.DEFINE_integer("trees", 300, "Trees in the forest.")
  flags.DEFINE_integer("jobs", 2, "Cores scikit-learn may use.")
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
