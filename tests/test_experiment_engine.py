"""The experiment engine: cells to commands, records from a run's eval_metrics.jsonl, the
subject bootstrap, the random-forest baseline, and the committed reports re-rendered from their
JSON (the same tables and verdicts as the committed .md files; the ablation's and the
localisation's were written before the interval column)."""

import json
import pathlib

import numpy as np
import pytest

from experiments import ablation, baselines, engine, records, report, recipe_comparison
from experiments import leakage_audit, protocol_comparison
from experiments import preregistered_localization as prereg

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "results"


def generated(text: str, drop_interval: bool = True) -> list[str]:
  """The table rows, findings and verdict of a rendered report; with `drop_interval`, a table
  with the subject-bootstrap column the engine added (the last one) without it."""
  out, new_column = [], False
  for line in text.splitlines():
    new_column = drop_interval and line.startswith("|") and (
        new_column or "subject-bootstrap" in line)
    if new_column:
      line = line.rsplit("|", 2)[0] + "|"
    if line.startswith(("|", "- ", "**Verdict", "The seed-0", "Baselines on")):
      out.append(line)
  return out


def committed(name: str) -> list[str]:
  return (RESULTS / name).read_text().splitlines()


@pytest.mark.parametrize("name", ["recipe_wisdm2019", "recipe_wisdm2019_seeds"])
def test_the_recipe_reports_re_render_from_their_json(name):
  out = json.loads((RESULTS / f"{name}.json").read_text())
  text = recipe_comparison.render(out, f"{name}_curves.png")
  lines = generated(text, drop_interval=False)
  # The Conditions bullets were edited by hand after the run; every table and finding was not.
  missing = [l for l in lines if l not in committed(f"{name}.md") and not l.startswith(
      ("- Runs from", "- Reused from"))]
  assert not missing, missing
  assert recipe_comparison.all_findings(out) == out["findings"]
  if name.endswith("seeds"):
    assert "-0.41 ± 4.66 points (per seed +1.41, +3.06, -5.71)" in text
    assert "| danhar | on | 3,169,336 | 10/10/10 | 68.72 ± 4.32 | 68.32 ± 3.49 | 16.8 |" in text
  assert "best" not in text.lower()  # no epoch chosen on the test subjects is reported
  # The new column: the subject bootstrap of the seed-mean last accuracy, which it brackets.
  row = next(l for l in text.splitlines() if l.startswith("| danhar |"))
  lo, hi = (float(v) for v in row.rsplit("|", 2)[1].strip(" []").split(","))
  last = np.mean([r["last_accuracy"] for r in out["cells"]["danhar"].values()]) * 100
  assert lo < last < hi and hi - lo > 5  # four subjects: a wide interval


@pytest.mark.parametrize("study", [leakage_audit, protocol_comparison])
def test_the_protocol_studies_re_render_from_their_json(study):
  name = study.__name__.rsplit(".", 1)[1]
  out = json.loads((RESULTS / f"{name}.json").read_text())
  text = study.render(out, f"{name}.png")
  assert study.findings(study.views(out), out["conditions"]["epochs"]) == out["findings"]
  missing = [l for l in generated(text, drop_interval=False) if l not in committed(f"{name}.md")]
  assert not missing, missing
  assert not any("best" in l for l in text.splitlines() if l.startswith("|"))  # none on test
  flat = json.dumps(out)  # no absolute path of the machine it ran on
  assert "--workdir=/" not in flat and "manual_dir=/" not in flat and "data_dir=/" not in flat


def test_the_ablation_report_re_renders_from_its_json():
  out = json.loads((RESULTS / "ablation_wisdm2019.json").read_text())
  lines = generated(ablation.render(out))
  assert len(lines) == 2 + 6 + 2 + 4 + 1
  assert [l for l in lines if l not in committed("ablation_wisdm2019.md")] == []
  assert "| danhar | 3 | 3,169,336 (3.02) | 26.26 ± 3.29 | 21.89 ± 3.81 |" in "\n".join(lines)


def test_the_preregistered_report_re_renders_from_its_json():
  out = json.loads((RESULTS / "preregistered_localization.json").read_text())
  text = prereg.render(out, "preregistered_localization.png")
  lines = generated(text)
  assert lines[0].startswith("**Verdict: FAILURE.** By the registered rule, seed(s) 5 are not")
  assert [l for l in lines if l not in committed("preregistered_localization.md")] == []
  assert len(lines) == 1 + 5 + 5 + 5 + 1


def test_subject_bootstrap_weights_subjects_by_windows_and_is_seeded():
  acc, n = {"a": 0.5, "b": 0.9, "c": 0.7}, {"a": 100, "b": 100, "c": 2}
  lo, hi = report.subject_bootstrap(acc, n)
  assert (lo, hi) == report.subject_bootstrap(acc, n)  # a fixed seed
  assert 0.5 <= lo < hi <= 0.9
  assert report.subject_bootstrap({"a": 0.6, "b": 0.6}, {"a": 1, "b": 5}) == (
      pytest.approx(0.6), pytest.approx(0.6))
  assert report.interval({0: {}}) == "–"  # no per-subject accuracies, no interval


def test_a_cell_becomes_the_command_main_py_takes():
  cell = engine.Cell("danhar_no_ln", "configs/wisdm2019.py:danhar",
                     {"model.logit_standardization": False})
  common = {"data_dir": "d", "seed": 0, "num_epochs": 1, "steps_per_epoch": -1}
  values = engine.values(cell, common, seed=2, epochs=7)
  assert list(values) == ["data_dir", "seed", "num_epochs", "steps_per_epoch",
                          "model.logit_standardization"]  # common's order kept
  cmd = engine.command(cell, {**values, "input_shape": (1024, 6)}, "runs/x/seed2")
  assert cmd[1:] == ["main.py", "--config=configs/wisdm2019.py:danhar", "--workdir=runs/x/seed2",
                     "--config.data_dir=d", "--config.seed=2", "--config.num_epochs=7",
                     "--config.steps_per_epoch=-1", "--config.model.logit_standardization=False",
                     "--config.input_shape=(1024,6)"]
  config = engine.make_config(cell.config, values)
  assert config.model.logit_standardization is False and config.num_epochs == 7
  assert engine.values(engine.Cell("w", "f", {"num_epochs": 2}), common, 0, 7)["num_epochs"] == 2
  rf = engine.Cell("rf", "configs/wisdm2019.py", kind="rf")
  assert engine.command(rf, {}, "w")[1:4] == ["-m", "experiments.baselines",
                                              "--config=configs/wisdm2019.py"]
  assert engine.shown(cmd, {"d": "<data>", "": "x"}).startswith("python main.py")


class FakeSplit:
  def __init__(self, data):
    self.data = data

  def read_all(self):
    return self.data


def synthetic_split_set(rng, n=240):
  """Three classes told apart by their level and their roughness; four subjects."""
  def windows(k):
    label = rng.integers(0, 3, k)
    signal = rng.normal(size=(k, 32, 3)) * (1 + label[:, None, None]) + label[:, None, None]
    return {"signal": signal.astype(np.float32), "label": label,
            "subject": rng.integers(1600, 1604, k)}
  return engine_splits(windows(n), windows(n // 2))


def engine_splits(train, test):
  from danhar_jax import input_pipeline
  return input_pipeline.SplitSet(FakeSplit(train), FakeSplit(test), ["a", "b", "c"])


def test_window_statistics_are_per_channel():
  x = np.arange(2 * 5 * 3, dtype=np.float32).reshape(2, 5, 3)
  f = baselines.features(x)
  assert f.shape == (2, len(baselines.FEATURES) * 3)
  np.testing.assert_allclose(f[0, :3], x[0].mean(0))  # mean, channel by channel
  np.testing.assert_allclose(f[0, -3:], [3, 3, 3])  # mean absolute first difference


def test_the_forest_reports_as_a_cell_does(tmp_path):
  record = baselines.fit_evaluate(synthetic_split_set(np.random.default_rng(0)), seed=0,
                                  trees=30, jobs=1)
  assert record["accuracy"] > 0.8 and 0 < record["macro_f1"] <= 1
  assert sum(record["subject_windows"].values()) == 120
  again = baselines.fit_evaluate(synthetic_split_set(np.random.default_rng(0)), seed=0,
                                 trees=30, jobs=1)
  assert again["accuracy"] == record["accuracy"]  # a fixed seed
  # The engine reads it as any cell: a record for the same table, with its interval.
  cell = engine.Cell("rf", "configs/wisdm2019.py", kind="rf")
  wd = pathlib.Path(engine.workdir(str(tmp_path), cell, 0))
  wd.mkdir(parents=True)
  (wd / "eval_metrics.jsonl").write_text(json.dumps(record) + "\n")
  r = records.record(cell, 0, str(tmp_path), {}, epochs=1)
  assert r["last_accuracy"] == r["accuracy"] == record["accuracy"]
  assert r["last_checkpoint"]["windows"] == 120 and len(r["last_checkpoint"]["subjects"]) == 4
  assert engine.params(cell, {}) is None
  lo, hi = report.subject_bootstrap(*[{s: v[k] for s, v in r["last_checkpoint"][
      "subjects"].items()} for k in ("accuracy", "windows")])
  assert lo <= r["accuracy"] <= hi
  assert report.interval({0: r}).startswith("[")
