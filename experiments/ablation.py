r"""Ablation on real data: the paper's Table VII (with the CNN and ResNet rows), mean ± std over seeds.

Two suites from the real WISDM-2019 smartwatch recordings (12 staged subjects, test
`--test_subjects`): `wisdm2019`, the variants with the authors' WISDM settings
(configs/wisdm2019.py:<variant>; `rf`, the classical baseline of experiments/baselines.py, on
request); and `weakly`, the weakly labeled windows composed from them (configs/weakly.py), where
the temporal attention's localisation of the target is scored too (danhar_jax/localization.py).
experiments/engine.py runs the cells (suite/variant × seed), resumes them, and without `--epochs`
sizes the epochs to `--budget_hours`. Results: `<out_dir>/<name>.json` and `.md`.

  python -m experiments.ablation --manual_dir=/path/to/wisdm_2019 --budget_hours=2
  python -m experiments.ablation --plan_only ...        # measure and print the plan, run nothing
  python -m experiments.ablation --epochs=1 --steps_per_epoch=2 --seeds=0 \
      --variants=cnn,danhar --weakly_variants=danhar --name=ablation_smoke   # smoke (minutes)
"""

from __future__ import annotations

import argparse
import math
import os
import sys

if not __package__:  # run as a file, the packages are not importable
  sys.exit("run it from the repository root as: python -m experiments.ablation")
from experiments import engine, records, report  # pylint: disable=g-import-not-at-top

FILES = {"wisdm2019": "configs/wisdm2019.py", "weakly": "configs/weakly.py"}
VARIANTS = {"wisdm2019": ("cnn", "resnet", "channel", "temporal", "danhar", "temporal_channel"),
            "weakly": ("cnn", "resnet", "temporal", "danhar")}
LOC = (("loc_pointing", "pointing"), ("loc_iou", "IoU (> mean)"), ("loc_iou_topk", "IoU (top-L)"),
       ("loc_pointing_blocks", "pointing, mean of blocks"),
       ("loc_iou_blocks", "IoU (> mean), mean of blocks"))


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  engine.study_flags(p, "0,1,2", str(engine.ROOT / "runs" / "ablation"), "ablation_wisdm2019",
                     "~/tensorflow_datasets")
  p.add_argument("--suites", default="wisdm2019,weakly")
  p.add_argument("--variants", default=",".join(VARIANTS["wisdm2019"]),
                 help="variants of the wisdm2019 suite (rf: the random forest)")
  p.add_argument("--weakly_variants", default=",".join(VARIANTS["weakly"]))
  p.add_argument("--weakly_epochs", type=int, default=0, help="0: as --epochs")
  p.add_argument("--budget_hours", type=float, default=2.0)
  args = p.parse_args(argv)
  args.suite_list = [s for s in args.suites.split(",") if s.strip()]
  if unknown := [s for s in args.suite_list if s not in FILES]:
    p.error(f"unknown suites {unknown}; valid: {', '.join(FILES)}")
  args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
  return args


def cells(args) -> list[engine.Cell]:
  """The table: suite × variant; --weakly_epochs fixes the weakly cells' epochs."""
  variants = {"wisdm2019": args.variants, "weakly": args.weakly_variants}
  fixed = {"num_epochs": args.weakly_epochs} if args.weakly_epochs else {}
  return [engine.Cell(f"{s}/{v}", FILES[s] + ("" if v == "rf" else f":{v}"),
                      fixed if s == "weakly" else {}, "rf" if v == "rf" else "danhar",
                      {"suite": s, "variant": v})
          for s in args.suite_list for v in variants[s].split(",") if v]


def common(args) -> dict:
  return {"data_dir": args.data_dir, "manual_dir": args.manual_dir,
          "test_subjects": args.test_subjects, "seed": 0, "num_epochs": 1,
          "steps_per_epoch": args.steps_per_epoch}


def render(out: dict) -> str:
  """The report's markdown from its JSON: {command, plan, cells: [record]}."""
  the_plan = out["plan"]
  epochs = ", ".join(f"{suite} {n}" for suite, n in
                     the_plan.get("epochs_by_suite", the_plan["epochs"]).items())
  hours = the_plan.get("estimated_hours")
  estimate = (f"estimated {hours:.2f} h" if hours is not None and math.isfinite(hours)
              else "time not estimated")
  lines = ["# Ablation on WISDM-2019 (real data)", "", "```", out["command"], "```", "",
           f"Epochs per cell: {epochs}; {estimate} for {the_plan['cells']} cells. Mean ± sample "
           "std over seeds (the mean alone for one seed); accuracy and F1 in %, of the last "
           "epoch's evaluation on the test subjects. Localisation: the last block's temporal "
           "attention, and the mean of the blocks' (danhar_jax/localization.py). Params: count "
           "(count / 2^20, the paper's M). Train s: wall seconds per run less its evaluations "
           "(start-up, data loading and compiling included). The last column resamples the test "
           f"subjects ({report.DRAWS:,} draws, seed {report.BOOTSTRAP_SEED}).", ""]
  suites = {}
  for r in out["cells"]:
    suites.setdefault(r["suite"], []).append(r)
  for suite, runs in suites.items():
    loc = suite == "weakly"
    rows = []
    for variant, by_seed in report.by_cell(runs, "variant").items():
      rs = list(by_seed.values())
      params = rs[0].get("params")
      rows.append([variant, len(rs), f"{params:,} ({params / 2**20:.2f})" if params else "–",
                   *(report.pm([r.get(k) for r in rs]) for k in
                     ("accuracy", "macro_f1", "weighted_f1")),
                   report.pm([r.get("train_seconds") for r in rs], 1, 0),
                   *((report.pm([r.get(k) for r in rs], 1, 3) for k, _ in LOC) if loc else ()),
                   report.interval(by_seed)])
    lines += [f"## {suite}", "", *report.table(
        ["variant", "seeds", "params", "accuracy", "macro-F1", "weighted-F1", "train s",
         *((what for _, what in LOC) if loc else ()), "accuracy, subject-bootstrap 95%"], rows)]
    if loc and "loc_pointing_uniform" in runs[0]:
      b = runs[0]
      lines += ["", "Baselines on the same test windows (exact expectations): uniform "
                f"attention: pointing {b['loc_pointing_uniform']:.3f}, IoU "
                f"{b['loc_iou_uniform']:.3f}; a true-length box at a random position: pointing "
                f"{b['loc_pointing_random']:.3f}, IoU {b['loc_iou_random']:.3f}. Variants "
                "without temporal attention (cnn, resnet) have no map to score."]
    lines.append("")
  return "\n".join(lines)


def main(argv=None):
  args = parse_args(argv)
  os.chdir(engine.ROOT)
  os.environ.setdefault("DANHAR_OFFLINE", "1")
  table, values = cells(args), common(args)
  command_line = engine.shown([sys.executable, "-m", "experiments.ablation", *sys.argv[1:]], {})

  def extend(the_plan):  # --epochs fixes every cell (weakly ones: --weakly_epochs, if given)
    minutes = the_plan["estimated_minutes"]
    return {"cells": len(table) * len(args.seed_list),
            "estimated_hours": minutes / 60 if minutes else None,
            "epochs_by_suite": {s: args.weakly_epochs if s == "weakly" and args.weakly_epochs
                                else the_plan["epochs"] for s in args.suite_list}}

  the_plan = engine.run_study(args, table, values, args.budget_hours * 3600, extend=extend)
  if not the_plan:  # --plan_only printed it, or --report found no plan.json
    return
  finished = []
  for cell in table:
    params = engine.params(cell, values)
    for seed in args.seed_list:
      r = records.record(cell, seed, args.runs_dir, values,
                         the_plan["epochs_by_suite"][cell.meta["suite"]])
      if r is None:
        print(f"{cell.name} seed {seed} has no evaluation yet; see its log.txt.", flush=True)
      else:
        finished.append({**r, "params": params})
  out = {"command": command_line, "plan": the_plan, "cells": finished}
  report.save(args.out_dir, args.name, out, render(out))


if __name__ == "__main__":
  main()
