r"""How much the paper's random window split inflates accuracy on WISDM-2019 (real data).

The same windows (200 × 6, step 100) and the same recipe (the authors' WISDM DanHAR file,
configs/wisdm2019.py) under three protocols (danhar_jax/splits.py, docs/datasets.md):

  subjects             test subjects `--test_subjects` (1608-1611), the other 8 train;
  random_windows       the paper's: a random 30% of all windows test, drawn by the seed;
  random_windows_gap   the same test windows, minus from training every window that shares
                       samples with one of them.

Each protocol × seed is a cell of experiments/engine.py; `resnet_<protocol>` (`--cells=...,resnet`)
adds the ResNet with its own file's recipe, and `rf_<protocol>` is the random-forest baseline
(experiments/baselines.py) on the same splits. The seed draws the random protocols' test windows
as well as the initialisation, so random_windows and random_windows_gap of one seed share their
test windows. Every run writes its split's overlap audit to `<workdir>/split_audit.json`. The
findings give the inflation in points (random_windows minus subjects, random_windows minus
random_windows_gap), mean ± std over seeds, and the audit's counts.

  python -m experiments.leakage_audit --budget_minutes=240          # full: sized to the budget
  python -m experiments.leakage_audit --cells=danhar,resnet,rf --budget_minutes=480
  python -m experiments.leakage_audit --report                      # the report alone, any time
  python -m experiments.leakage_audit --cells=danhar_subjects --seeds=0 --epochs=1 \
      --steps_per_epoch=2 --runs_dir=/tmp/leak_smoke --out_dir=/tmp/leak_smoke   # smoke

`--manual_dir` defaults to ../shared/data/wisdm_2019 beside the checkout. Without `--epochs` the
engine times the first trained cell and plans as many epochs as fit `--budget_minutes` (the
authors train 500). random_windows_gap keeps about half the training windows, so its cells
train twice the planned epochs (`engine.Cell.epoch_factor`): every cell takes about the same
optimiser steps, and a gap is not an undertrained model's.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

if not __package__:  # run as a file, the packages are not importable
  sys.exit("run it from the repository root as: python -m experiments.leakage_audit")
from experiments import engine, records, report  # pylint: disable=g-import-not-at-top

FILE = "configs/wisdm2019.py"
TEST_SUBJECTS = "1608,1609,1610,1611"
PROTOCOLS = ("subjects", "random_windows", "random_windows_gap")
MODELS = ("danhar", "resnet", "rf")
DEFAULT_MODELS = ("danhar", "rf")  # resnet: optional (--cells=...,resnet)
AUTHORS_EPOCHS = 500
NAMES = {"danhar": "DanHAR", "resnet": "ResNet", "rf": "random forest"}
GAP_EPOCH_FACTOR = 2  # the gap removes about half the training windows (the audit says how many)
# (minuend, subtrahend, what the report calls it): the inflation of the random split.
COMPARISONS = (("random_windows", "subjects", "random_windows minus subjects"),
               ("random_windows", "random_windows_gap", "random_windows minus random_windows_gap"))
METRICS = (("last_accuracy", "last accuracy"), ("last_macro_f1", "last macro-F1"))
COLORS = {"subjects": "tab:blue", "random_windows": "tab:red", "random_windows_gap": "tab:orange"}


def protocol_overrides(protocol: str, test_subjects: str = TEST_SUBJECTS) -> dict:
  """The config fields of a protocol; only the subject split names test subjects (the random
  ones refuse them)."""
  return {"split": protocol, **({"test_subjects": test_subjects} if protocol == "subjects"
                                else {})}


def make_cells(test_subjects: str = TEST_SUBJECTS) -> dict[str, engine.Cell]:
  """{name: cell}: model × protocol, named `<model>_<protocol>`, models first."""
  return {f"{m}_{p}": engine.Cell(f"{m}_{p}", FILE if m == "rf" else f"{FILE}:{m}",
                                  protocol_overrides(p, test_subjects),
                                  "rf" if m == "rf" else "danhar", {"model": m, "protocol": p},
                                  GAP_EPOCH_FACTOR if p == "random_windows_gap" else 1)
          for m in MODELS for p in PROTOCOLS}


CELLS = make_cells()
DEFAULT_CELLS = tuple(n for n, c in CELLS.items() if c.meta["model"] in DEFAULT_MODELS)


def cell_names(tokens: str) -> list[str]:
  """`--cells`: cell names, or a model's name for its three protocols; in CELLS' order."""
  wanted = set()
  for t in (t.strip() for t in tokens.split(",") if t.strip()):
    if t in MODELS:
      wanted |= {f"{t}_{p}" for p in PROTOCOLS}
    elif t in CELLS:
      wanted.add(t)
    else:
      raise ValueError(f"unknown cell {t!r}; valid: {', '.join([*MODELS, *CELLS])}")
  return [n for n in CELLS if n in wanted]


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  engine.study_flags(p, "0,1,2", str(engine.ROOT / "runs" / "leakage_audit"), "leakage_audit")
  p.add_argument("--cells", default=",".join(DEFAULT_MODELS),
                 help=f"cells, or models for all three protocols: {', '.join(MODELS)}")
  p.add_argument("--budget_minutes", type=float, default=240.0)
  p.add_argument("--margin", type=float, default=1.3,
                 help="measured times are multiplied by this: the CPU is shared")
  p.add_argument("--jobs", type=int, default=1, help="cells run at once (an accelerator)")
  args = p.parse_args(argv)
  args.data_dir = args.data_dir or os.path.join(args.runs_dir, "tfds")
  try:
    args.cell_list = cell_names(args.cells)
  except ValueError as e:
    p.error(str(e))
  args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
  args.table = make_cells(args.test_subjects)
  return args


def common(args) -> dict:
  return {"data_dir": args.data_dir, "manual_dir": args.manual_dir, "seed": 0, "num_epochs": 1,
          "steps_per_epoch": args.steps_per_epoch, "checkpoint_every_steps": 0,
          "max_checkpoints_to_keep": 2}


# ---------------------------------------------------------------------------------------------
# Findings: pure functions of the records ({cell: {seed: record}}), so tests feed them by hand.


def inflation(summary: dict, model: str) -> dict:
  """{comparison: {metric: {seed: points}}}: random_windows minus each other protocol, paired
  by seed, for the seeds both cells have."""
  out = {}
  for hi, lo, what in COMPARISONS:
    pair = report.paired(summary, f"{model}_{hi}", [f"{model}_{lo}"], [k for k, _ in METRICS])
    if pair:
      out[what] = pair[f"{model}_{lo}"]
  return out


def spread(d: dict) -> str:
  """'+m ± s points over n seeds (per seed a, b)' of {seed: points}."""
  v = np.array(list(d.values()), float)
  sd = f" ± {np.std(v, ddof=1):.2f}" if len(v) > 1 else ""
  return (f"{v.mean():+.2f}{sd} points over {len(v)} seed{'s' * (len(v) != 1)} (per seed "
          + ", ".join(f"{x:+.2f}" for x in v) + ")")


def verdict(d: dict) -> str:
  """A clause on random_windows minus the other protocol, {seed: points}."""
  v = np.array(list(d.values()), float)
  if len(v) > 1 and (v > 0).all() and v.mean() > 2 * np.std(v, ddof=1) / np.sqrt(len(v)):
    return "random_windows is higher on every seed: inflated"
  if (v > 0).all():
    return "random_windows is " + (
        "higher on every seed, but small against the seed spread" if len(v) > 1 else
        "higher on the one seed (no spread to judge it against)")
  if (v < 0).all():
    return "random_windows is LOWER on every seed: no inflation"
  return (f"the sign changes between seeds (random_windows higher on {(v > 0).sum()} of "
          f"{len(v)}): no inflation shown")


def audits(summary: dict) -> tuple[dict, list[str]]:
  """({protocol: {seed: audit}} from the runs' split_audit.json, [disagreements]): every model
  of one protocol and seed must have had the same split."""
  out, bad = {}, []
  for cell, by_seed in summary.items():
    for seed, r in by_seed.items():
      a = r.get("split_audit")
      if not a:
        continue
      protocol = r.get("protocol") or a["split"]
      seen = out.setdefault(protocol, {}).setdefault(int(seed), a)
      if seen != a:
        bad.append(f"{cell} seed {seed}: {a} differs from {seen}")
  return {p: dict(sorted(v.items())) for p, v in out.items()}, bad


def overlap_text(a: dict) -> str:
  n, o = a["test_windows"], a["test_windows_overlapping_train"]
  share = f" ({100 * o / n:.1f}%)" if isinstance(o, int) and n else ""
  return f"{o:,}{share} of {n:,}" if isinstance(o, int) else f"{o} of {n:,}"


def audit_findings(found: dict, protocols) -> list[str]:
  out = []
  for p in protocols:
    by_seed = found.get(p)
    if not by_seed:
      out.append(f"- {p}: no split_audit.json in its runs (run before the audit was written); "
                 "each run's log.txt has the counts ('Split ... test windows sharing samples "
                 "with training').")
      continue
    seeds = ", ".join(f"seed {s}: {overlap_text(a)}" for s, a in by_seed.items())
    removed = [a["removed_from_train"] for a in by_seed.values()]
    train = [a["train_windows"] for a in by_seed.values()]
    text = f"- {p}: test windows sharing samples with a training window: {seeds}"
    if any(removed):
      text += (f"; the gap removed {', '.join(f'{x:,}' for x in removed)} training windows, "
               f"leaving {', '.join(f'{x:,}' for x in train)}")
    else:
      text += f"; {', '.join(f'{x:,}' for x in sorted(set(train)))} training windows"
    out.append(text + ".")
  return out


def findings(summary: dict, epochs: int | None = None) -> list[str]:
  """Plain statements: the inflation per model and metric, what it mixes, the audit's counts,
  and what the epochs cut."""
  out = []
  models = [m for m in MODELS if any(c.startswith(f"{m}_") for c in summary)]
  for m in models:
    found = inflation(summary, m)
    if not found:
      out.append(f"- {NAMES[m]}: no random_windows run with a run to compare it with; no "
                 "inflation measured.")
    for what, by_key in found.items():
      for key, metric in METRICS:
        if by_key.get(key):
          out.append(f"- {NAMES[m]}, {metric}, {what}: {spread(by_key[key])}; "
                     f"{verdict(by_key[key])}.")
  found, bad = audits(summary)
  protocols = [p for p in PROTOCOLS if any(c.endswith(f"_{p}") for c in summary)]
  out += audit_findings(found, protocols)
  if "random_windows_gap" in found and "random_windows" in found:
    seed = next(iter(found["random_windows_gap"]))
    gap, rw = found["random_windows_gap"][seed], found["random_windows"].get(seed)
    if rw:
      out.append(f"- What the differences mix: random_windows_gap trains on "
                 f"{gap['train_windows']:,} windows against random_windows' "
                 f"{rw['train_windows']:,} (seed {seed}) in about as many steps, so part of its "
                 "gap is less training data, not leakage; the subjects protocol tests people "
                 "never seen in training, so its gap is leakage plus the cross-subject shift. "
                 "Neither difference is leakage alone; random_windows minus random_windows_gap "
                 "is the closer one.")
  out += [f"- WARNING, splits differ between models: {b}" for b in bad]
  if epochs and any(not c.startswith("rf_") for c in summary):  # a forest has no epochs
    out.append(f"- Every trained cell ran {epochs} epoch{'s' * (epochs != 1)} of the authors' "
               f"{AUTHORS_EPOCHS} ({100 * epochs / AUTHORS_EPOCHS:.1f}%; random_windows_gap "
               f"{GAP_EPOCH_FACTOR * epochs} over about half the windows); how large the "
               "inflation is after 500 epochs is not measured here.")
  return out


# ---------------------------------------------------------------------------------------------
# The report.


def views(out: dict) -> dict:
  return {c: {int(s): r for s, r in v.items()} for c, v in out["cells"].items()}


def collect(args, the_plan: dict) -> dict:
  """The report's JSON, from the runs; `render` makes the markdown of it."""
  epochs = the_plan.get("epochs", args.epochs) or 1
  out = records.report_fields(args, "experiments.leakage_audit", common(args), epochs)
  out["conditions"].update({
      "data": ("WISDM-2019 smartwatch, the 12 staged subjects (1600-1611), 200 × 6 windows, "
               f"step 100; subjects: test {args.test_subjects}, train the others; "
               "random_windows(_gap): 30% of all windows test, drawn by the seed"),
      "epochs": epochs, "authors_epochs": AUTHORS_EPOCHS,
      "steps_per_epoch": the_plan.get("steps_per_epoch"),
      "global_batch": the_plan.get("global_batch"), "seeds": args.seed_list})
  not_run = [c for c in CELLS if c not in args.cell_list]
  return {**out, "plan": the_plan,
          "not_run": [*([f"cells {', '.join(not_run)}"] if not_run else []),
                      f"more than {epochs} epoch{'s' * (epochs != 1)} (the authors train for "
                      f"{AUTHORS_EPOCHS})",
                      "the other 39 subjects of WISDM-2019 (only 12 are staged), its phone "
                      "sensors"]}


def render(out: dict, png_name: str) -> str:
  """The report's markdown from its JSON; the findings are recomputed."""
  summary, c = views(out), out["conditions"]
  lines = [
      *report.head("Leakage audit: the random window split against subject-wise testing, "
                   "WISDM-2019 (real data)", out, "variant, protocol and workdir"),
      (f"- Every trained cell: {c['epochs']} epoch{'s' * (c['epochs'] != 1)} (the authors "
       f"train {c['authors_epochs']}) of {c['steps_per_epoch']} steps of batch "
       f"{c['global_batch']} on the subjects split (each protocol trains on its own split's "
       "full batches: about 5% more under random_windows; random_windows_gap, with about half "
       f"the windows, trains {GAP_EPOCH_FACTOR}× the epochs, so the steps column stays about "
       "equal); "
       "the authors' recipe of each model file (configs/wisdm2019.py); evaluated on the "
       "protocol's test windows after every epoch." if c.get("steps_per_epoch") else
       "- No trained cell ran."),
      f"- Seeds {', '.join(map(str, c['seeds']))}. The random forest: 300 trees on per-channel "
      "window statistics, the same splits.",
      *report.tail(out)]
  rows = []
  for cell, by_seed in summary.items():
    rs = list(by_seed.values())
    a = rs[0].get("split_audit") or {}
    rows.append([cell, len(rs), "/".join(str(r["epochs_done"]) for r in rs),
                 "/".join(str(r["step"]) for r in rs) if rs[0]["step"] else "–",
                 f"{a['train_windows']:,}" if a else "–",
                 overlap_text(a) if a else "–",
                 report.pm([r["last_accuracy"] for r in rs]),
                 report.pm([r["last_macro_f1"] for r in rs]), report.interval(by_seed)])
  lines += ["## Results", "",
            "Accuracy and macro-F1 in %, mean ± std over seeds, on each protocol's own test "
            "windows at the last epoch (none is chosen on the test windows). The audit columns "
            "are the first seed's. The "
            "interval resamples the test subjects (4 under subjects, all 12 under the random "
            f"protocols; {report.DRAWS:,} draws, seed {report.BOOTSTRAP_SEED}).", "",
            *report.table(["cell", "seeds", "epochs done", "steps", "train windows",
                           "test windows sharing samples with training", "last accuracy",
                           "last macro-F1", "last accuracy, subject-bootstrap 95%"], rows)]
  inf_rows = []
  for m in MODELS:
    for what, by_key in inflation(summary, m).items():
      for key, metric in METRICS:
        d = by_key.get(key)
        if d:
          v = list(d.values())
          inf_rows.append([NAMES[m], metric, what, ", ".join(f"{x:+.2f}" for x in v),
                           f"{np.mean(v):+.2f}" + (f" ± {np.std(v, ddof=1):.2f}"
                                                   if len(v) > 1 else "")])
  if inf_rows:
    lines += ["", "### Inflation, points, paired by seed", "", *report.table(
        ["model", "metric", "difference", "per seed", "mean ± std"], inf_rows)]
  found, _ = audits(summary)
  if found:
    lines += ["", "### The overlap audit (split_audit.json of each run)", "", *report.table(
        ["protocol", "seed", "train", "validation", "test",
         "test sharing samples with training", "removed from training (gap)"],
        [[pr, s, f"{a['train_windows']:,}", f"{a['validation_windows']:,}",
          f"{a['test_windows']:,}", overlap_text(a), f"{a['removed_from_train']:,}"]
         for pr in PROTOCOLS for s, a in found.get(pr, {}).items()])]
  lines += ["", f"![last accuracy per protocol]({png_name})", "",
            "## What it shows", "", *findings(summary, c.get("epochs")), ""]
  return "\n".join(lines)


def plot(path: str, summary: dict) -> None:
  models = [m for m in MODELS if any(c.startswith(f"{m}_") for c in summary)]
  series = []
  for p in PROTOCOLS:
    accs = [[r["last_accuracy"] for r in summary[f"{m}_{p}"].values()]
            if f"{m}_{p}" in summary else [0.0] for m in models]
    series.append((p, [float(np.mean(a)) for a in accs], COLORS[p], 0.85,
                   [float(np.std(a, ddof=1)) if len(a) > 1 else 0.0 for a in accs]))
  report.bars(path, [NAMES[m] for m in models], series, [],
              "test accuracy, last epoch (seed mean ± std)",
              "WISDM-2019: the same windows under three split protocols")


def main(argv=None):
  args = parse_args(argv)
  engine.study_main(
      args, [args.table[c] for c in args.cell_list], common(args), collect=collect,
      plot=lambda png, out: plot(png, views(out)),
      findings=lambda out: findings(views(out), out["conditions"]["epochs"]), render=render,
      extend=lambda _: {"authors_epochs": AUTHORS_EPOCHS})

if __name__ == "__main__":
  main()
