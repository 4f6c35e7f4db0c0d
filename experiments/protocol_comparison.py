r"""CNN, ResNet and DanHAR on WISDM-2019 under a reviewer's protocol: subject-wise, the epoch
selected on held-out validation subjects, the test reported once there (real data).

Train on subjects 1600-1605, select the epoch on 1606-1607 (`config.validation_subjects`), test
on 1608-1611 (`config.split='subjects'`, `config.test_subjects`): configs/wisdm2019.py:cnn,
:resnet and the default DanHAR, each with its authors' file recipe, seeds 0-2, and the random
forest (experiments/baselines.py) trained on the same 6 subjects and tested on the same 4.

Selection: `select_on='validation_accuracy'`. The 18 activities of WISDM-2019 are scripted for
about three minutes each per subject, so the classes are near balance and accuracy and macro-F1
rank epochs alike; accuracy keeps the authors' own criterion (their best test accuracy) and
changes only where it is measured.

The report gives, per model, the test at the selected epoch and at the last one, mean ± std
over seeds with a subject-bootstrap 95% interval each, the optimism of choosing the epoch on
the test subjects as the authors do, and plain findings (DanHAR's losses named).

  python -m experiments.protocol_comparison --budget_minutes=240    # full: sized to the budget
  python -m experiments.protocol_comparison --report                # the report alone
  python -m experiments.protocol_comparison --cells=danhar --seeds=0 --epochs=1 \
      --steps_per_epoch=2 --runs_dir=/tmp/proto_smoke --out_dir=/tmp/proto_smoke   # smoke

`--manual_dir` defaults to ../shared/data/wisdm_2019 beside the checkout. Without `--epochs` the
engine times DanHAR's epoch on these splits (the first trained cell of the file; the others scale
by FLOPs) and plans as many epochs as fit `--budget_minutes` (the authors train 500).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

if not __package__:  # run as a file, the packages are not importable
  sys.exit("run it from the repository root as: python -m experiments.protocol_comparison")
from experiments import engine, records, report  # pylint: disable=g-import-not-at-top

FILE = "configs/wisdm2019.py"
TRAIN_SUBJECTS = "1600-1605"  # what remains of the 12 staged subjects: not a config field
VALIDATION_SUBJECTS = "1606,1607"
TEST_SUBJECTS = "1608,1609,1610,1611"
SELECT_ON = "validation_accuracy"
AUTHORS_EPOCHS = 500
MODELS = ("danhar", "resnet", "cnn", "rf")  # DanHAR first: the engine times it
NAMES = {"danhar": "DanHAR", "resnet": "ResNet", "cnn": "CNN", "rf": "random forest"}
# (record key, what the report calls it): at the validation-selected epoch, and the last.
METRICS = (("test_accuracy_at_selected", "test accuracy at the selected epoch"),
           ("last_accuracy", "test accuracy at the last epoch"),
           ("test_macro_f1_at_selected", "test macro-F1 at the selected epoch"),
           ("last_macro_f1", "test macro-F1 at the last epoch"))
STYLES = {"cnn": ("tab:gray", "-"), "resnet": ("tab:blue", "-"), "danhar": ("tab:red", "-"),
          "rf": ("black", ":")}


def protocol(test_subjects: str = TEST_SUBJECTS,
             validation_subjects: str = VALIDATION_SUBJECTS) -> dict:
  return {"split": "subjects", "test_subjects": test_subjects,
          "validation_subjects": validation_subjects}


def make_cells(test_subjects: str = TEST_SUBJECTS,
               validation_subjects: str = VALIDATION_SUBJECTS) -> dict[str, engine.Cell]:
  """{name: cell}: the three networks select on validation; the forest has no epochs."""
  split = protocol(test_subjects, validation_subjects)
  cells = {m: engine.Cell(m, f"{FILE}:{m}", {**split, "select_on": SELECT_ON},
                          meta={"model": m}) for m in MODELS if m != "rf"}
  cells["rf"] = engine.Cell("rf", FILE, dict(split), "rf", {"model": "rf"})
  return cells


CELLS = make_cells()


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  engine.study_flags(p, "0,1,2", str(engine.ROOT / "runs" / "protocol_comparison"),
                     "protocol_comparison")
  p.add_argument("--validation_subjects", default=VALIDATION_SUBJECTS)
  p.add_argument("--cells", default=",".join(MODELS), help=f"of {', '.join(MODELS)}")
  p.add_argument("--budget_minutes", type=float, default=240.0)
  p.add_argument("--margin", type=float, default=1.3,
                 help="measured times are multiplied by this: the CPU is shared")
  p.add_argument("--jobs", type=int, default=1, help="cells run at once (an accelerator)")
  args = p.parse_args(argv)
  args.data_dir = args.data_dir or os.path.join(args.runs_dir, "tfds")
  wanted = {c.strip() for c in args.cells.split(",") if c.strip()}
  if unknown := sorted(wanted - set(MODELS)):
    p.error(f"unknown cells {unknown}; valid: {', '.join(MODELS)}")
  args.cell_list = [m for m in MODELS if m in wanted]
  args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
  args.table = make_cells(args.test_subjects, args.validation_subjects)
  return args


def common(args) -> dict:
  return {"data_dir": args.data_dir, "manual_dir": args.manual_dir, "seed": 0, "num_epochs": 1,
          "steps_per_epoch": args.steps_per_epoch, "checkpoint_every_steps": 0,
          "max_checkpoints_to_keep": 2}


# ---------------------------------------------------------------------------------------------
# Findings: pure functions of {cell: {seed: record}}, so tests feed them by hand.


def settled(r: dict) -> dict:
  """A record with its selected-epoch fields: a forest (one fit, no epochs) is its only
  evaluation, selected and last alike."""
  if r.get("test_accuracy_at_selected") is not None:
    return r
  return {**r, "test_accuracy_at_selected": r["last_accuracy"],
          "test_macro_f1_at_selected": r["last_macro_f1"], "selected_epoch": r.get("epochs_done"),
          "selected_checkpoint": r.get("selected_checkpoint") or r.get("last_checkpoint"),
          "selected_on": r.get("selected_on") or "– (one fit)"}


def views(out: dict) -> dict:
  return {c: {int(s): settled(r) for s, r in v.items()} for c, v in out["cells"].items()}


def mean(summary: dict, cell: str, key: str) -> float:
  return float(np.mean([r[key] for r in summary[cell].values()]))


def findings(summary: dict, epochs: int | None = None) -> list[str]:
  """Who wins where, DanHAR's losses said plainly; selection's effect; the epochs cut."""
  if "danhar" not in summary:
    return ["- DanHAR has no finished evaluation; nothing to compare."]
  others = [c for c in summary if c != "danhar"]
  out = []
  if not others:
    out.append("- Only DanHAR ran; nothing to compare.")
  for key, what in METRICS if others else ():
    d = mean(summary, "danhar", key)
    beaten = [c for c in others if mean(summary, c, key) >= d]
    gaps = ", ".join(f"{NAMES[c]} {100 * (d - mean(summary, c, key)):+.2f}" for c in others)
    out.append(f"- {what}: DanHAR {100 * d:.2f}%; "
               + ("DanHAR does NOT win: " + ", ".join(
                   f"{NAMES[c]} ({100 * mean(summary, c, key):.2f}%)" for c in beaten)
                  + (" is" if len(beaten) == 1 else " are") + " as good or better"
                  if beaten else "DanHAR wins")
               + f" (DanHAR minus each, points: {gaps}).")
  keys = ("test_accuracy_at_selected", "last_accuracy")
  for other, by_key in report.paired(summary, "danhar", others, keys).items():
    v = np.array(list(by_key["test_accuracy_at_selected"].values()), float)
    if len(v) < 2:
      continue
    word = ("DanHAR ahead on every seed" if (v > 0).all() else
            "DanHAR behind on every seed" if (v < 0).all() else
            f"the sign changes between seeds (DanHAR ahead on {(v > 0).sum()} of {len(v)})")
    out.append(f"- DanHAR minus {NAMES[other]}, test accuracy at the selected epoch, paired over "
               f"{len(v)} seeds: {v.mean():+.2f} ± {np.std(v, ddof=1):.2f} points (per seed "
               f"{', '.join(f'{x:+.2f}' for x in v)}): {word}.")
  ci = {c: report.subject_means(summary[c], "selected_checkpoint") for c in summary}
  if ci["danhar"][0]:
    lo, hi = report.subject_bootstrap(ci["danhar"][0], ci["danhar"][2])
    for c in others:
      if ci[c][0]:
        olo, ohi = report.subject_bootstrap(ci[c][0], ci[c][2])
        if olo <= hi and lo <= ohi:
          out.append(f"- At the selected epoch the subject-bootstrap intervals of DanHAR "
                     f"[{100 * lo:.2f}, {100 * hi:.2f}] and {NAMES[c]} [{100 * olo:.2f}, "
                     f"{100 * ohi:.2f}] overlap: {len(ci[c][0])} test subjects cannot tell them "
                     "apart.")
  for c in (c for c in summary if c != "rf"):
    sel = mean(summary, c, "test_accuracy_at_selected")
    out.append(f"- {NAMES[c]}: the best epoch chosen on the test subjects (the authors' way) "
               f"reads {100 * (mean(summary, c, 'best_accuracy') - sel):+.2f} points above the "
               f"epoch chosen on validation, and the last epoch "
               f"{100 * (mean(summary, c, 'last_accuracy') - sel):+.2f}.")
  if epochs:
    out.append(f"- Every network ran {epochs} epoch{'s' * (epochs != 1)} of the authors' "
               f"{AUTHORS_EPOCHS} ({100 * epochs / AUTHORS_EPOCHS:.1f}%); the ranking after 500 "
               "epochs is not measured here.")
  return out


# ---------------------------------------------------------------------------------------------
# The report.


def collect(args, the_plan: dict) -> dict:
  """The report's JSON, from the runs; `render` makes the markdown of it."""
  epochs = the_plan.get("epochs", args.epochs) or 1
  out = records.report_fields(args, "experiments.protocol_comparison", common(args), epochs)
  out["conditions"].update({
      "data": ("WISDM-2019 smartwatch, the 12 staged subjects (1600-1611), 200 × 6 windows, "
               f"step 100: train {TRAIN_SUBJECTS} (the others), validation "
               f"{args.validation_subjects}, test {args.test_subjects}"),
      "select_on": SELECT_ON, "epochs": epochs, "authors_epochs": AUTHORS_EPOCHS,
      "steps_per_epoch": the_plan.get("steps_per_epoch"),
      "global_batch": the_plan.get("global_batch"), "seeds": args.seed_list})
  return {**out, "plan": the_plan,
          "not_run": [*([f"cells {', '.join(c for c in MODELS if c not in args.cell_list)}"]
                        if len(args.cell_list) < len(MODELS) else []),
                      f"more than {epochs} epoch{'s' * (epochs != 1)} (the authors train for "
                      f"{AUTHORS_EPOCHS})",
                      "early stopping (config.early_stopping_patience: off)",
                      "the other 39 subjects of WISDM-2019 (only 12 are staged), its phone "
                      "sensors"]}


def render(out: dict, png_name: str) -> str:
  """The report's markdown from its JSON; the findings are recomputed."""
  summary, c = views(out), out["conditions"]

  def pct(cell, key):
    return report.pm([r.get(key) for r in summary[cell].values()])

  def per_seed(cell, key):
    return "/".join(str(r.get(key)) for r in summary[cell].values())

  lines = [
      *report.head("CNN, ResNet and DanHAR on WISDM-2019, the epoch selected on validation "
                   "subjects (real data)", out, "variant and workdir"),
      f"- Every network: {c['epochs']} epoch{'s' * (c['epochs'] != 1)} (the authors train "
      f"{c['authors_epochs']}) of "
      f"{c['steps_per_epoch']} steps of batch {c['global_batch']}; seeds "
      f"{', '.join(map(str, c['seeds']))}; its authors' file recipe "
      f"(configs/wisdm2019.py); `select_on={c['select_on']}`: the test reported at the epoch of "
      "the best validation accuracy (the earliest on a tie), and at the last. The random forest: "
      "300 trees on per-channel window statistics, fitted once on the same training subjects.",
      *report.tail(out)]
  rows = []
  for cell in summary:
    params = out["params"].get(cell)
    rows.append([NAMES.get(cell, cell), f"{params:,}" if params else "–",
                 per_seed(cell, "epochs_done"), per_seed(cell, "selected_epoch"),
                 pct(cell, "validation_accuracy_at_selected"),
                 pct(cell, "test_accuracy_at_selected"), pct(cell, "test_macro_f1_at_selected"),
                 report.interval(summary[cell], "selected_checkpoint"),
                 pct(cell, "last_accuracy"), pct(cell, "last_macro_f1"),
                 report.interval(summary[cell])])
  lines += ["## Results", "",
            "In %, mean ± std over seeds, on the test subjects. Selected = the epoch of the best "
            "validation accuracy; last = the last epoch; the intervals resample the test "
            "subjects (seed-mean accuracy of each, weighted by its windows; "
            f"{report.DRAWS:,} draws, seed {report.BOOTSTRAP_SEED}). No number here is chosen on "
            "the test subjects.", "",
            *report.table(["model", "params", "epochs done", "selected epoch",
                           "validation accuracy, selected", "test accuracy, selected",
                           "test macro-F1, selected", "selected, subject-bootstrap 95%",
                           "test accuracy, last", "test macro-F1, last",
                           "last, subject-bootstrap 95%"], rows)]
  subjects = {cell: report.subject_means(summary[cell], "selected_checkpoint")
              for cell in summary}
  subjects = {k: v for k, v in subjects.items() if v[0]}
  if subjects:
    subs = sorted(next(iter(subjects.values()))[0])
    windows = next(iter(subjects.values()))[2]
    lines += ["", "### Test accuracy per subject at the selected epoch, seed means", "",
              *report.table(["model", *(f"{s} ({windows[s]} windows)" for s in subs)],
                            [[NAMES.get(cell, cell), *(f"{100 * m[0][s]:.2f}" for s in subs)]
                             for cell, m in subjects.items()])]
  lines += ["", f"![test error per epoch]({png_name})", "",
            "## What it shows", "", *findings(summary, c.get("epochs")), ""]
  return "\n".join(lines)


def main(argv=None):
  args = parse_args(argv)
  engine.study_main(
      args, [args.table[c] for c in args.cell_list], common(args), collect=collect,
      plot=lambda png, out: report.curves(
          png, views(out), lambda m: NAMES.get(m, m),
          f"WISDM-2019, test subjects {args.test_subjects}, selected on "
          f"{args.validation_subjects}", STYLES),
      findings=lambda out: findings(views(out), out["conditions"]["epochs"]), render=render,
      extend=lambda _: {"authors_epochs": AUTHORS_EPOCHS})

if __name__ == "__main__":
  main()
