r"""CNN → ResNet → DanHAR on real WISDM-2019 data, each with its authors' file recipe.

Subject-wise on the 12 staged subjects (test `--test_subjects`, train the others). Each cell has
its authors' file settings (configs/wisdm2019.py:<variant>) and objective: the logit LayerNorm on
for ResNet and attention files, off for the CNN; `danhar_no_ln` is DanHAR without it, `rf` the
classical baseline (experiments/baselines.py). experiments/engine.py runs, sizes and resumes the
cells; the report (`--report` alone) is `<out_dir>/<name>.md`, `.json` and `_curves.png`.

  python -m experiments.recipe_comparison --manual_dir=<wisdm_2019 folder> --budget_minutes=90
  python -m experiments.recipe_comparison --report               # the report alone, at any time
  python -m experiments.recipe_comparison --epochs=1 --steps_per_epoch=2 \
      --runs_dir=/tmp/recipe_smoke --name=recipe_smoke --out_dir=/tmp/recipe_smoke  # smoke

Accelerator, full size: `bash benchmarks/device_check.sh recipe OUTDIR`, with the prepared dataset
carried (experiments/device_recipe_stage.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

if not __package__:  # run as a file, the packages are not importable
  sys.exit("run it from the repository root as: python -m experiments.recipe_comparison")
from experiments import engine, records, report  # pylint: disable=g-import-not-at-top

FILE = "configs/wisdm2019.py"
LN = "model.logit_standardization"
CELLS = {name: engine.Cell(name, f"{FILE}:{variant}", {LN: ln}) for name, variant, ln in (
    ("cnn", "cnn", False), ("resnet", "resnet", True), ("channel", "channel", True),
    ("temporal", "temporal", True), ("temporal_channel", "temporal_channel", True),
    ("danhar", "danhar", True), ("danhar_no_ln", "danhar", False))}
CELLS["rf"] = engine.Cell("rf", FILE, kind="rf")
CPU_CELLS = ("cnn", "resnet", "danhar", "danhar_no_ln")
PAIRED_KEYS = (("last_accuracy", "last accuracy"), ("last_macro_f1", "last macro-F1"))
STYLES = {"cnn": ("tab:gray", "-"), "resnet": ("tab:blue", "-"), "danhar": ("tab:red", "-"),
          "danhar_no_ln": ("tab:red", "--"), "channel": ("tab:green", "-"),
          "temporal": ("tab:orange", "-"), "temporal_channel": ("tab:purple", "-"),
          "rf": ("black", ":")}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  engine.study_flags(p, "0", str(engine.ROOT.parent / "runs_recipe"), "recipe_wisdm2019")
  p.add_argument("--cells", default=",".join(CPU_CELLS), help=f"of {', '.join(CELLS)}")
  p.add_argument("--budget_minutes", type=float, default=90.0)
  p.add_argument("--margin", type=float, default=1.3,
                 help="measured times are multiplied by this: the CPU is shared")
  p.add_argument("--jobs", type=int, default=1, help="cells run at once (an accelerator)")
  p.add_argument("--previous", default="", help="an earlier report's JSON: runs missing here")
  args = p.parse_args(argv)
  args.data_dir = args.data_dir or os.path.join(args.runs_dir, "tfds")
  args.cell_list = [c for c in args.cells.split(",") if c.strip()]
  if unknown := [c for c in args.cell_list if c not in CELLS]:
    p.error(f"unknown cells {unknown}; valid: {', '.join(CELLS)}")
  args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
  return args


def ln(cell: str) -> str:
  return {True: "on", False: "off"}.get(CELLS[cell].overrides.get(LN), "–")


def common(args) -> dict:
  return {"data_dir": args.data_dir, "manual_dir": args.manual_dir,
          "test_subjects": args.test_subjects, "seed": 0, "num_epochs": 1,
          "steps_per_epoch": args.steps_per_epoch, "checkpoint_every_steps": 0,
          "max_checkpoints_to_keep": 2}


def findings(summary: dict, subjects: dict) -> list[str]:
  """Plain statements of who wins where, DanHAR's losses first (seed means)."""
  def mean(cell, key):
    return float(np.mean([r[key] for r in summary[cell].values()]))

  if "danhar" not in summary:
    return ["DanHAR has no finished evaluation; nothing to compare."]
  others = [c for c in summary if c != "danhar"]
  if not others:
    return ["Only DanHAR ran; nothing to compare."]
  out = []
  for key, what in PAIRED_KEYS:  # the last epoch: no epoch is chosen on the test subjects
    d = mean("danhar", key)
    beaten = [c for c in others if mean(c, key) >= d]
    gaps = ", ".join(f"{c} {100 * (d - mean(c, key)):+.2f}" for c in others)
    out.append(f"- {what}: DanHAR {100 * d:.2f}%"
               + (f"; it does NOT win: {', '.join(beaten)} is as good or better" if beaten
                  else "; it wins") + f" (DanHAR minus each, points: {gaps}).")
  for s, acc in sorted(subjects.get("danhar", {}).items()):
    better = [c for c in subjects if c != "danhar" and subjects[c].get(s, -1) >= acc]
    if better:
      out.append(f"- test subject {s} (last checkpoint): DanHAR {100 * acc:.2f}% does NOT "
                 f"win; {', '.join(f'{c} {100 * subjects[c][s]:.2f}%' for c in better)}.")
  if "danhar_no_ln" in summary:
    gap = {k: 100 * (mean("danhar", k) - mean("danhar_no_ln", k))
           for k in ("last_accuracy", "last_macro_f1")}
    out.append("- the logit LayerNorm (danhar minus danhar_no_ln, points): "
               f"last accuracy {gap['last_accuracy']:+.2f}, "
               f"last macro-F1 {gap['last_macro_f1']:+.2f}.")
  return out


def paired_differences(summary: dict) -> dict:
  return report.paired(summary, "danhar", ("resnet", "cnn"), [k for k, _ in PAIRED_KEYS])


def paired_findings(paired: dict, summary: dict, subjects: dict) -> list[str]:
  """Does DanHAR's lead survive the seeds? Plain words, per metric and per test subject."""
  out = []
  for other, by_key in paired.items():
    for key, what in PAIRED_KEYS:
      d = np.array(list(by_key[key].values()))
      if len(d) < 2:
        continue
      sd = np.std(d, ddof=1)
      if (d > 0).all() and d.mean() > 2 * sd / np.sqrt(len(d)):
        word = "survives: DanHAR leads on every seed"
      elif (d > 0).all():
        word = "is on every seed, but small against its spread"
      elif (d < 0).all():
        word = f"does NOT survive: {other} leads on every seed"
      else:
        word = ("does NOT survive: the sign changes between seeds (DanHAR ahead on "
                f"{(d > 0).sum()} of {len(d)})")
      out.append(f"- DanHAR minus {other}, {what}, paired over {len(d)} seeds: "
                 f"{d.mean():+.2f} ± {sd:.2f} points (per seed "
                 f"{', '.join(f'{v:+.2f}' for v in d)}); the lead {word}.")
  if "danhar" in subjects and len(summary.get("danhar", {})) > 1:
    for other in (c for c in ("resnet", "cnn") if c in subjects):
      lost = [s for s, a in sorted(subjects["danhar"].items()) if subjects[other][s] >= a]
      out.append(f"- per test subject, seed means: DanHAR is behind {other} on "
                 + (", ".join(f"{s} ({100 * subjects['danhar'][s]:.2f} vs "
                              f"{100 * subjects[other][s]:.2f})" for s in lost)
                    if lost else "none of them") + ".")
  return out


def collect(args, the_plan: dict) -> dict:
  """The report's JSON, from the runs (and `--previous`); `render` makes the markdown of it."""
  epochs = the_plan.get("epochs", args.epochs) or 1
  previous = json.load(open(args.previous)) if args.previous else {}
  reused = {c: {s: {**r, "reused": args.previous} for s, r in v.items()}
            for c, v in previous.get("cells", {}).items()}
  cells, missing = records.records(CELLS, args.cell_list, args.seed_list, args.runs_dir,
                                  common(args), epochs, reused)
  hide = {args.manual_dir: "<wisdm_2019 folder>"}
  example = engine.example_command(CELLS, ["danhar"], args.seed_list[0], args.runs_dir,
                                   common(args), epochs)
  not_run = [c for c in CELLS if c not in args.cell_list]
  subjects = {c: report.subject_means(by_seed) for c, by_seed in cells.items()}
  return {
      "command": engine.shown([sys.executable, "-m", "experiments.recipe_comparison",
                               *sys.argv[1:]], hide),
      "cell_command_example": engine.shown(example, hide),
      "conditions": {**report.conditions([r for c in cells.values() for r in c.values()]),
                     "report_written": engine.now(),
                     "data": ("WISDM-2019 smartwatch, the 12 staged subjects (1600-1611): train "
                              f"= the others, test = {args.test_subjects}; "
                              f"{the_plan.get('train_windows')} train and "
                              f"{the_plan.get('test_windows')} test windows of 200 × 6"),
                     "epochs": epochs, "steps_per_epoch": the_plan.get("steps_per_epoch"),
                     "global_batch": the_plan.get("global_batch"), "seeds": args.seed_list},
      "plan": the_plan,
      "not_run": [*([f"variants {', '.join(not_run)}"] if not_run else []),
                  "seeds other than " + ", ".join(map(str, args.seed_list)),
                  f"more than {epochs} epochs (the authors train for 500)",
                  "the other 39 subjects of WISDM-2019 (only 12 are staged), its phone sensors",
                  "a validation split: every number is the last epoch's, none chosen on the "
                  "test subjects"],
      "missing": missing, "params": {c: engine.params(CELLS[c], common(args)) for c in cells},
      "cells": cells, "per_subject_last": {c: s[0] for c, s in subjects.items() if s[0]},
      "reused": {c: sorted(int(k) for k, r in v.items() if r.get("reused"))
                 for c, v in cells.items() if any(r.get("reused") for r in v.values())},
      "previous_conditions": previous.get("conditions")}


def views(out: dict) -> tuple[dict, dict]:
  """({cell: {seed: record}}, {cell: {subject: seed-mean last accuracy}}) of a report's JSON."""
  summary = {c: {int(s): r for s, r in v.items()} for c, v in out["cells"].items()}
  return summary, {c: m for c, v in summary.items() if (m := report.subject_means(v)[0])}


def all_findings(out: dict) -> list[str]:
  summary, subjects = views(out)
  return (findings(summary, subjects)
          + paired_findings(paired_differences(summary), summary, subjects))


def render(out: dict, png_name: str) -> str:
  """The report's markdown from its JSON: tables, paired seeds and findings recomputed."""
  summary, subjects = views(out)
  paired = paired_differences(summary)
  c = out["conditions"]

  def pct(cell, key):
    return report.pm([r[key] for r in summary[cell].values()])

  def ep(cell, key):
    return "/".join(str(r[key]) for r in summary[cell].values())

  reused = []
  if out.get("reused"):
    prev = out.get("previous_conditions") or {}
    reused = [
        "- Reused from an earlier report (`--previous`), not rerun: " + "; ".join(
            f"{k} seed(s) {', '.join(map(str, v))}" for k, v in out["reused"].items())
        + f" (run {prev.get('started')} to {prev.get('finished')}, jax {prev.get('jax')}, "
        "at an earlier commit of this code)."]
  lines = [
      *report.head("CNN, ResNet and DanHAR on WISDM-2019 with the authors' recipes (real data)",
                   out, "variant, `logit_standardization` and workdir"),
      f"- Every cell: {c['epochs']} epochs × {c['steps_per_epoch']} steps of batch "
      f"{c['global_batch']}; seed(s) {', '.join(map(str, c['seeds']))}; evaluation on the "
      "test subjects after every epoch; each cell with its authors' file settings "
      "(configs/wisdm2019.py) and its authors' objective (logit LayerNorm on for ResNet and "
      "DanHAR, off for the CNN); `danhar_no_ln` is DanHAR without it.",
      *report.tail(out, reused)]
  rows = []
  for cell in summary:
    walls = [r["wall_seconds"] for r in summary[cell].values() if r.get("wall_seconds")]
    params = out["params"][cell]
    rows.append([cell, ln(cell), f"{params:,}" if params else "–", ep(cell, "epochs_done"),
                 pct(cell, "last_accuracy"), pct(cell, "last_macro_f1"),
                 f"{np.mean(walls) / 60:.1f}" if walls else "–",
                 report.interval(summary[cell])])
  lines += ["## Results", "",
            "Accuracy and macro-F1 in % on the 4 test subjects at the last epoch (no epoch "
            "is chosen on them: this run has no validation split). The "
            "interval resamples the test subjects (seed-mean accuracy of each, weighted by its "
            f"windows; {report.DRAWS:,} draws, seed {report.BOOTSTRAP_SEED}).", "",
            *report.table(["cell", "logit LN", "params", "epochs done",
                           "last accuracy", "last macro-F1",
                           "wall min", "last accuracy, subject-bootstrap 95%"], rows)]
  if subjects:
    subs = sorted(next(iter(subjects.values())))
    _, _, windows = report.subject_means(next(iter(summary.values())))
    sd = {c: report.subject_means(summary[c])[1] for c in subjects}
    lines += ["", "### Accuracy per test subject, latest checkpoint", "", *report.table(
        ["cell", *(f"{s} ({windows[s]} windows)" for s in subs)],
        [[cell, *(f"{100 * accs[s]:.2f}" + (f" ± {100 * sd[cell][s]:.2f}" if sd[cell][s] else "")
                  for s in subs)] for cell, accs in subjects.items()])]
  for other, by_key in paired.items():
    seeds = list(by_key["last_accuracy"])
    if len(seeds) > 1:
      lines += ["", f"### Paired by seed: DanHAR minus {other}, points", "", *report.table(
          ["metric", *(f"seed {s}" for s in seeds), "mean ± std"],
          [[what, *(f"{by_key[key][s]:+.2f}" for s in seeds),
            f"{np.mean(list(by_key[key].values())):+.2f} ± "
            f"{np.std(list(by_key[key].values()), ddof=1):.2f}"] for key, what in PAIRED_KEYS])]
  lines += ["", "### Learning curves", "", f"![test error per epoch]({png_name})", "",
            "## What it shows", "", *all_findings(out), ""]
  return "\n".join(lines)


def main(argv=None):
  args = parse_args(argv)
  engine.study_main(
      args, [CELLS[c] for c in args.cell_list], common(args), collect=collect,
      plot=lambda png, out: report.curves(
          png, views(out)[0], lambda c: f"{c} (LN {ln(c)})",
          "WISDM-2019, subject-wise (test subjects 1608-1611)", STYLES),
      findings=all_findings, render=render, png_suffix="_curves")

if __name__ == "__main__":
  main()
