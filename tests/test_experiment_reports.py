"""The seeded experiments: the engine's cell runner, the registered rule and the paired seeds."""

import json
import os
import sys

import numpy as np

from experiments import engine
from experiments import preregistered_localization as prereg
from experiments import recipe_comparison


def test_the_registered_rule_needs_every_seed_at_the_threshold():
  assert prereg.THRESHOLD == 0.420 and prereg.RANDOM_BOX == 0.220
  assert prereg.verdict({3: 0.42, 4: 0.9, 5: 0.5})[0] == "SUCCESS"
  word, text = prereg.verdict({3: 0.419, 4: 0.9, 5: 0.5})
  assert word == "FAILURE" and "above chance, below the registered threshold" in text
  word, text = prereg.verdict({3: 0.75, 4: 0.76, 5: 0.001})
  assert word == "FAILURE" and "seed(s) 5 are not above" in text


def test_edge_shares_count_only_windows_whose_segment_misses_the_band():
  peaks = np.array([965, 940, 100, 997, 998])
  starts, ends = np.array([0, 900, 0, 0, 0]), np.array([128, 1000, 128, 128, 128])
  e = prereg.edge_shares(peaks, starts, ends)
  assert e["near_all"] == 3 / 5
  assert e["windows_no_segment"] == 4 and e["near_where_no_segment"] == 2 / 4


def _run(last_acc, last_f1):
  return {"last_accuracy": last_acc, "last_macro_f1": last_f1}


def test_paired_differences_and_their_plain_verdict():
  summary = {"danhar": {0: _run(0.70, 0.68), 1: _run(0.69, 0.66), 2: _run(0.71, 0.70)},
             "resnet": {0: _run(0.68, 0.69), 1: _run(0.67, 0.67), 2: _run(0.70, 0.66)},
             "cnn": {0: _run(0.72, 0.70), 1: _run(0.71, 0.69)}}
  paired = recipe_comparison.paired_differences(summary)
  np.testing.assert_allclose(list(paired["resnet"]["last_accuracy"].values()), [2, 2, 1])
  assert list(paired["cnn"]["last_accuracy"]) == ["0", "1"]  # only the seeds both have
  found = "\n".join(recipe_comparison.paired_findings(paired, summary, {}))
  assert "resnet, last accuracy, paired over 3 seeds: +1.67" in found
  assert "the lead survives" in found
  assert "resnet, last macro-F1" in found and "sign changes between seeds (DanHAR ahead on 1 of 3)" in found
  assert "cnn, last accuracy" in found and "cnn leads on every seed" in found


def test_a_cell_runs_once_per_command_and_keeps_its_log(tmp_path):
  """The comparisons' shared cell runner: a record of the same command means done; another
  command, or none, runs; output is appended to log.txt; a failure is returned, not hidden."""
  workdir, record = str(tmp_path / "cell"), str(tmp_path / "cell" / "done.json")
  cmd = [sys.executable, "-c", "import os; print('ran', os.environ['DANHAR_OFFLINE'])"]
  assert engine.finished_before(record, cmd) is None
  ran = engine.execute(cmd, workdir, "test cell")
  assert ran["returncode"] == 0 and ran["command"] == cmd[1:] and not ran["resumed"]
  with open(record, "w") as f:
    json.dump(ran, f)
  assert engine.finished_before(record, cmd) == ran
  assert engine.finished_before(record, [*cmd[:2], "print(2)"]) is None
  os.makedirs(os.path.join(workdir, "checkpoints"))
  failed = engine.execute([sys.executable, "-c", "raise SystemExit(3)"], workdir, "test cell")
  assert failed["returncode"] == 3 and failed["resumed"]
  assert open(os.path.join(workdir, "log.txt")).read() == "ran 1\n"
