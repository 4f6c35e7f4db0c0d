"""The two reviewer studies as tables and findings: experiments/leakage_audit.py (the random
window split against subject-wise testing) and experiments/protocol_comparison.py (the epoch
selected on validation subjects). Fast: the cells, the findings on hand-made records, the
engine's record of a run's files, and each report rendered from a small fake set of records."""

import json

import numpy as np
import pytest

from danhar_jax import selection, splits, writers
from experiments import engine, records, report
from experiments import leakage_audit as leak
from experiments import protocol_comparison as proto

TEST = "1608,1609,1610,1611"
SUBJECTS = ("1608", "1609", "1610", "1611")


# ---------------------------------------------------------------------------------------------
# Hand-made records, in records.record's shape.


def subjects(acc: float, windows=(600, 610, 590, 617)) -> dict:
  """A last/selected checkpoint whose four test subjects all score `acc`, but 1608 (-0.1)."""
  accs = [acc - 0.1, acc, acc, acc]
  return {"step": 1, "accuracy": acc, "windows": sum(windows),
          "subjects": {s: {"accuracy": a, "windows": n}
                       for s, a, n in zip(SUBJECTS, accs, windows)}}


def rec(cell, seed, last, f1=None, best=None, audit=None, selected=None, epochs=2, **meta):
  r = {"cell": cell, "seed": seed, **meta, "epochs_done": epochs, "step": 10 * epochs,
       "accuracy": last, "last_accuracy": last, "macro_f1": f1 or last - 0.02,
       "last_macro_f1": f1 or last - 0.02, "best_accuracy": best or last, "best_epoch": 1,
       "best_macro_f1": f1 or last - 0.02, "best_macro_f1_epoch": 1,
       "curve": [{"epoch": e, "accuracy": last - 0.05 * (epochs - e)} for e in
                 range(1, epochs + 1)],
       "last_checkpoint": subjects(last), "split_audit": audit, "started": None,
       "finished": None, "wall_seconds": None}
  if selected is not None:
    r.update({"selected_on": "validation_accuracy", "selected_epoch": 1,
              "test_accuracy_at_selected": selected, "test_macro_f1_at_selected": selected - 0.01,
              "validation_accuracy_at_selected": 0.7, "selected_checkpoint": subjects(selected)})
  return r


def audit(split, train, test, overlap, removed=0):
  return {"split": split, "train_windows": train, "validation_windows": 0, "test_windows": test,
          "test_windows_overlapping_train": overlap, "test_windows_overlapping_validation": 0,
          "validation_windows_overlapping_train": 0, "removed_from_train": removed}


AUDITS = {"subjects": lambda s: audit("subjects", 4893, 2417, 0),
          "random_windows": lambda s: audit("random_windows", 5117, 2193, 1954 + s),
          "random_windows_gap": lambda s: audit("random_windows_gap", 2567, 2193, 0, 2550)}
ACC = {"subjects": (0.60, 0.62, 0.58), "random_windows": (0.90, 0.91, 0.89),
       "random_windows_gap": (0.80, 0.78, 0.82)}


def leakage_summary(models=("danhar", "rf")) -> dict:
  return {f"{m}_{p}": {s: rec(f"{m}_{p}", s, ACC[p][s] - (0.05 if m == "rf" else 0),
                             audit=AUDITS[p](s), model=m, protocol=p) for s in range(3)}
          for m in models for p in leak.PROTOCOLS}


def fake_out(summary: dict, conditions: dict) -> dict:
  return {"command": "python -m experiments.x", "cell_command_example": "python main.py ...",
          "code": {"git_sha": "0" * 40, "git_dirty": False},
          "conditions": {"backend": "cpu", "cpu": "test CPU", "cores": 2, "jax": "0",
                         "python": "3", "started": None, "finished": None,
                         "report_written": "now", "data": "WISDM-2019", "epochs": 2,
                         "authors_epochs": 500, "steps_per_epoch": 23, "global_batch": 210,
                         "seeds": [0, 1, 2], **conditions},
          "plan": {"estimated_minutes": 100.0, "budget_minutes": 120.0, "margin": 1.3},
          "not_run": ["more than 2 epochs"], "missing": [],
          "params": {c: (None if c.startswith("rf") else 3169336) for c in summary},
          "cells": {c: {str(s): r for s, r in v.items()} for c, v in summary.items()}}


# ---------------------------------------------------------------------------------------------
# The leakage audit.


def test_the_leakage_cells_are_model_by_protocol_with_one_split_each():
  assert list(leak.CELLS) == [f"{m}_{p}" for m in ("danhar", "resnet", "rf")
                              for p in ("subjects", "random_windows", "random_windows_gap")]
  assert leak.DEFAULT_CELLS == ("danhar_subjects", "danhar_random_windows",
                                "danhar_random_windows_gap", "rf_subjects", "rf_random_windows",
                                "rf_random_windows_gap")
  c = leak.CELLS
  assert (c["danhar_subjects"].config, c["danhar_subjects"].kind) == (
      "configs/wisdm2019.py:danhar", "danhar")
  assert c["danhar_subjects"].overrides == {"split": "subjects", "test_subjects": TEST}
  assert c["danhar_random_windows"].overrides == {"split": "random_windows"}
  assert c["resnet_random_windows_gap"].overrides == {"split": "random_windows_gap"}
  assert (c["rf_subjects"].config, c["rf_subjects"].kind) == ("configs/wisdm2019.py", "rf")
  assert c["rf_random_windows"].meta == {"model": "rf", "protocol": "random_windows"}
  # --cells: a model stands for its three protocols; the table's order is kept.
  assert leak.cell_names("rf,danhar") == list(leak.DEFAULT_CELLS)
  assert leak.cell_names("resnet_subjects,danhar") == [
      "danhar_subjects", "danhar_random_windows", "danhar_random_windows_gap",
      "resnet_subjects"]
  with pytest.raises(ValueError, match="unknown cell 'cnn'"):
    leak.cell_names("cnn")
  args = leak.parse_args([])
  assert args.seed_list == [0, 1, 2] and args.cell_list == list(leak.DEFAULT_CELLS)
  assert args.budget_minutes == 240 and args.name == "leakage_audit"
  assert leak.parse_args(["--cells=resnet"]).cell_list == [
      "resnet_subjects", "resnet_random_windows", "resnet_random_windows_gap"]


def test_each_leakage_cell_builds_the_authors_recipe_under_its_protocol():
  values = leak.common(leak.parse_args(["--data_dir=d", "--manual_dir=m"]))
  assert "test_subjects" not in values  # the random protocols refuse them
  for name, cell in leak.CELLS.items():
    if cell.kind != "danhar":
      continue
    config = engine.make_config(cell.config, engine.values(cell, values, 1, 7))
    # The gap keeps about half the windows: twice the epochs, the same optimiser steps.
    factor = 2 if cell.meta["protocol"] == "random_windows_gap" else 1
    assert (config.split, config.seed, config.num_epochs) == (cell.meta["protocol"], 1, 7 * factor)
    assert (config.batch_size, config.learning_rate, config.lr_schedule) == (
        210, 1e-3, "exponential")  # the authors' WISDM DanHAR and ResNet files
    assert config.model.logit_standardization is True
    assert config.model.attention == ("none" if cell.meta["model"] == "resnet"
                                      else "channel_temporal")
    protocol = splits.Protocol.from_config(config)
    assert protocol.test_subjects == ((1608, 1609, 1610, 1611)
                                      if cell.meta["protocol"] == "subjects" else ())
  cmd = engine.command(leak.CELLS["danhar_subjects"],
                       engine.values(leak.CELLS["danhar_subjects"], values, 0, 3), "w")
  assert cmd[-2:] == ["--config.split=subjects", f"--config.test_subjects={TEST}"]


def test_the_inflation_is_random_windows_minus_each_protocol_paired_by_seed():
  summary = leakage_summary()
  inf = leak.inflation(summary, "danhar")
  np.testing.assert_allclose(
      list(inf["random_windows minus subjects"]["last_accuracy"].values()), [30, 29, 31])
  np.testing.assert_allclose(
      list(inf["random_windows minus random_windows_gap"]["last_accuracy"].values()),
      [10, 13, 7])
  found = "\n".join(leak.findings(summary, epochs=2))
  assert ("- DanHAR, last accuracy, random_windows minus subjects: +30.00 ± 1.00 points over "
          "3 seeds (per seed +30.00, +29.00, +31.00); random_windows is higher on every seed: "
          "inflated.") in found
  assert ("DanHAR, last accuracy, random_windows minus random_windows_gap: +10.00 ± 3.00 "
          "points") in found
  assert "random forest, last accuracy, random_windows minus subjects: +30.00 ± 1.00" in found
  # The audit's counts, per seed, with the share.
  assert ("- random_windows: test windows sharing samples with a training window: seed 0: "
          "1,954 (89.1%) of 2,193, seed 1: 1,955 (89.1%) of 2,193, seed 2: 1,956 (89.2%) of "
          "2,193; 5,117 training windows.") in found
  assert "- subjects: test windows sharing samples with a training window: seed 0: 0 (0.0%)" in found
  assert "the gap removed 2,550, 2,550, 2,550 training windows, leaving 2,567" in found
  assert "random_windows_gap trains on 2,567 windows against random_windows' 5,117" in found
  assert "ran 2 epochs of the authors' 500 (0.4%; random_windows_gap 4 over about half" in found
  assert "WARNING" not in found


def test_leakage_findings_say_when_there_is_no_inflation_and_when_the_audit_is_missing():
  summary = leakage_summary(("danhar",))
  for s, r in summary["danhar_random_windows"].items():  # below subjects on every seed
    r["last_accuracy"] = summary["danhar_subjects"][s]["last_accuracy"] - 0.01
  for r in summary["danhar_random_windows_gap"].values():
    r["split_audit"] = None
  found = "\n".join(leak.findings(summary))
  assert "random_windows minus subjects: -1.00 ± 0.00 points" in found
  assert "random_windows is LOWER on every seed: no inflation" in found
  assert "- random_windows_gap: no split_audit.json in its runs" in found
  # Two models of one protocol and seed on different splits: said, not averaged away.
  summary = leakage_summary()
  summary["rf_subjects"][1]["split_audit"] = audit("subjects", 4000, 2417, 0)
  assert "WARNING, splits differ between models: rf_subjects seed 1" in "\n".join(
      leak.findings(summary))
  forest = {c: v for c, v in leakage_summary().items() if c.startswith("rf_")}
  assert not any("epoch" in l for l in leak.findings(forest, epochs=1))  # no epochs to cut
  mixed = {0: 1.0, 1: -2.0}
  assert leak.verdict(mixed) == ("the sign changes between seeds (random_windows higher on 1 "
                                 "of 2): no inflation shown")


def test_the_leakage_report_renders_from_fake_records(tmp_path):
  out = fake_out(leakage_summary(), {})
  text = leak.render(out, "leakage_audit.png")
  assert "- Code: git " + "0" * 40 + "." in text
  assert "- Every trained cell: 2 epochs (the authors train 500) of 23 steps of batch 210" in text
  assert ("| danhar_random_windows | 3 | 2/2/2 | 20/20/20 | 5,117 | 1,954 (89.1%) of 2,193 | "
          "90.00 ± 1.00 "
          in text)
  assert "| DanHAR | last accuracy | random_windows minus subjects | +30.00, +29.00, +31.00 | " \
         "+30.00 ± 1.00 |" in text
  assert "| random_windows_gap | 0 | 2,567 | 0 | 2,193 | 0 (0.0%) of 2,193 | 2,550 |" in text
  assert text.endswith("\n".join(leak.findings(leak.views(out), 2)) + "\n")
  assert not any("best" in l for l in text.splitlines() if l.startswith("|"))  # none on test
  leak.plot(str(tmp_path / "leakage_audit.png"), leak.views(out))
  assert (tmp_path / "leakage_audit.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------------
# The protocol comparison.


def test_the_protocol_cells_select_on_validation_subjects():
  split = {"split": "subjects", "test_subjects": TEST, "validation_subjects": "1606,1607"}
  assert list(proto.CELLS) == ["danhar", "resnet", "cnn", "rf"]
  for m in ("danhar", "resnet", "cnn"):
    cell = proto.CELLS[m]
    assert (cell.config, cell.kind) == (f"configs/wisdm2019.py:{m}", "danhar")
    assert cell.overrides == {**split, "select_on": "validation_accuracy"}
  rf = proto.CELLS["rf"]
  assert (rf.config, rf.kind, rf.overrides) == ("configs/wisdm2019.py", "rf", split)
  args = proto.parse_args(["--data_dir=d", "--manual_dir=m"])
  assert args.seed_list == [0, 1, 2] and args.cell_list == ["danhar", "resnet", "cnn", "rf"]
  values = proto.common(args)
  expected = {"danhar": ("resnet", "channel_temporal", 1e-3, True),
              "resnet": ("resnet", "none", 1e-6, True), "cnn": ("cnn", "none", 1e-3, False)}
  for m, (backbone, attention, decay, ln) in expected.items():
    config = engine.make_config(proto.CELLS[m].config, engine.values(proto.CELLS[m], values, 2, 5))
    assert (config.model.backbone, config.model.attention, config.weight_decay,
            config.model.logit_standardization) == (backbone, attention, decay, ln)
    assert (config.seed, config.num_epochs, config.batch_size) == (2, 5, 210)
    p = splits.Protocol.from_config(config)
    assert (p.split, p.test_subjects, p.validation_subjects) == (
        "subjects", (1608, 1609, 1610, 1611), (1606, 1607))
    selection.check(config, has_validation=True)  # accepted: a validation split is there
  with pytest.raises(SystemExit):
    proto.parse_args(["--cells=att_cnn"])


def protocol_summary(danhar_selected=(0.66, 0.65, 0.67)) -> dict:
  def model(name, selected, last, best):
    return {s: rec(name, s, last[s], best=best[s], selected=selected[s], model=name)
            for s in range(3)}
  return {"danhar": model("danhar", danhar_selected, (0.64, 0.65, 0.60), (0.70, 0.71, 0.69)),
          "resnet": model("resnet", (0.70, 0.69, 0.71), (0.68, 0.69, 0.70), (0.72, 0.72, 0.73)),
          "cnn": model("cnn", (0.60, 0.61, 0.62), (0.60, 0.60, 0.60), (0.63, 0.64, 0.65)),
          # a forest: one fit, no selected fields
          "rf": {s: rec("rf", s, 0.62, epochs=1, model="rf") for s in range(3)}}


def test_protocol_findings_say_plainly_when_danhar_loses():
  summary = {c: {s: proto.settled(r) for s, r in v.items()}
             for c, v in protocol_summary().items()}
  found = proto.findings(summary, epochs=2)
  text = "\n".join(found)
  assert found[0] == ("- test accuracy at the selected epoch: DanHAR 66.00%; DanHAR does NOT "
                      "win: ResNet (70.00%) is as good or better (DanHAR minus each, points: "
                      "ResNet -4.00, CNN +5.00, random forest +4.00).")
  assert ("- test accuracy at the last epoch: DanHAR 63.00%; DanHAR does NOT win: ResNet "
          "(69.00%) is as good or better") in text
  assert ("- DanHAR minus ResNet, test accuracy at the selected epoch, paired over 3 seeds: "
          "-4.00 ± 0.00 points (per seed -4.00, -4.00, -4.00): DanHAR behind on every seed."
          ) in text
  assert "DanHAR minus CNN, test accuracy at the selected epoch, paired over 3 seeds: +5.00" in text
  assert "DanHAR ahead on every seed" in text
  assert "intervals of DanHAR [" in text and "overlap: 4 test subjects cannot tell them apart" in text
  # The authors' test-chosen epoch against the validation-chosen one.
  assert ("- DanHAR: the best epoch chosen on the test subjects (the authors' way) reads +4.00 "
          "points above the epoch chosen on validation, and the last epoch -3.00.") in text
  assert "ran 2 epochs of the authors' 500 (0.4%)" in text
  assert not any(l.startswith("- random forest:") for l in found)  # no epochs to choose from
  # When it does win, it is said as plainly.
  summary["danhar"] = {s: proto.settled(r) for s, r in protocol_summary(
      (0.75, 0.76, 0.77))["danhar"].items()}
  first = proto.findings(summary)[0]
  assert first.startswith("- test accuracy at the selected epoch: DanHAR 76.00%; DanHAR wins")


def test_a_forest_is_its_own_selected_epoch():
  r = proto.settled(rec("rf", 0, 0.62, epochs=1))
  assert r["test_accuracy_at_selected"] == r["last_accuracy"] == 0.62
  assert r["selected_checkpoint"] == r["last_checkpoint"] and r["selected_epoch"] == 1
  trained = rec("danhar", 0, 0.6, selected=0.65)
  assert proto.settled(trained) is trained
  assert proto.findings({}) == ["- DanHAR has no finished evaluation; nothing to compare."]


def test_the_protocol_report_renders_from_fake_records(tmp_path):
  out = fake_out(protocol_summary(), {"select_on": "validation_accuracy"})
  text = proto.render(out, "protocol_comparison.png")
  assert "`select_on=validation_accuracy`" in text
  assert "- Every network: 2 epochs (the authors train 500) of 23 steps of batch 210" in text
  row = next(l for l in text.splitlines() if l.startswith("| DanHAR |"))
  assert row.startswith("| DanHAR | 3,169,336 | 2/2/2 | 1/1/1 | 70.00 ± 0.00 | 66.00 ± 1.00 | "
                        "65.00 ± 1.00 | [")
  lo, hi = (float(v) for v in row.split("|")[8].strip(" []").split(","))
  assert 56 <= lo < hi <= 66  # between the subjects' seed means (1608: 56, the others: 66)
  assert "| random forest | – | 1/1/1 | 1/1/1 | – | 62.00 ± 0.00 |" in text
  assert "### Test accuracy per subject at the selected epoch, seed means" in text
  assert "DanHAR does NOT win" in text
  assert text.endswith("\n".join(proto.findings(proto.views(out), 2)) + "\n")
  assert not any("best" in l for l in text.splitlines() if l.startswith("|"))  # none on test
  report.curves(str(tmp_path / "p.png"), proto.views(out), lambda m: proto.NAMES[m], "t",
                proto.STYLES)
  assert (tmp_path / "p.png").stat().st_size > 1000


# ---------------------------------------------------------------------------------------------
# What the engine reads of a run: the selected epoch and the split's audit.


def test_the_engine_reads_the_selected_epoch_and_the_audit_a_run_wrote(tmp_path):
  cell = proto.CELLS["danhar"]
  wd = tmp_path / "danhar" / "seed0"
  wd.mkdir(parents=True)
  sub = lambda a: ({s: a for s in SUBJECTS}, {s: 100 for s in SUBJECTS})
  lines = []
  for epoch, acc, val in ((1, 0.5, 0.8), (2, 0.6, 0.7)):
    accs, windows = sub(acc)
    lines.append({"epoch": epoch, "step": 10 * epoch, "accuracy": acc, "macro_f1": acc,
                  "best_accuracy": 0.5, "best_epoch": 1, "validation_accuracy": val,
                  "subject_accuracy": accs, "subject_windows": windows,
                  "selected_on": "validation_accuracy", "selected_epoch": 1,
                  "selected_score": 0.8, "test_accuracy_at_selected": 0.5,
                  "test_macro_f1_at_selected": 0.5})
  (wd / "eval_metrics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
  a = audit("subjects", 10, 4, 0)
  writers.write_split_audit(str(wd), a)
  r = records.record(cell, 0, str(tmp_path), {"data_dir": "d"}, epochs=2)
  assert r["split_audit"] == a
  assert (r["selected_epoch"], r["test_accuracy_at_selected"], r["last_accuracy"]) == (
      1, 0.5, 0.6)
  assert r["validation_accuracy_at_selected"] == 0.8
  assert r["selected_checkpoint"]["accuracy"] == 0.5
  assert r["selected_checkpoint"]["subjects"]["1608"] == {"accuracy": 0.5, "windows": 100}
  assert r["last_checkpoint"]["subjects"]["1608"]["accuracy"] == 0.6
  assert [p["validation_accuracy"] for p in r["curve"]] == [0.8, 0.7]
  (wd / writers.SPLIT_AUDIT).unlink()
  assert records.record(cell, 0, str(tmp_path), {}, epochs=2)["split_audit"] is None
  # A finished run's command, as the report shows it: no path of this checkout or of the data.
  ran = ["main.py", f"--workdir={engine.ROOT}/runs/x", "--config.manual_dir=/data/wisdm"]
  (wd / "done.json").write_text(json.dumps({"command": ran}))
  shown = records.record(cell, 0, str(tmp_path), {"manual_dir": "/data/wisdm"}, epochs=2)
  assert shown["command"] == ["main.py", "--workdir=runs/x", "--config.manual_dir=<manual_dir>"]
