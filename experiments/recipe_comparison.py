r"""CNN → ResNet → DanHAR on real WISDM-2019 data, each with its authors' file recipe.

Subject-wise on the 12 staged WISDM-2019 subjects (train 1600-1607, test `--test_subjects` =
1608-1611). Every cell trains with its authors' file settings (configs/wisdm2019.py:<variant>)
and its authors' objective: the logit LayerNorm (`config.model.logit_standardization`) is on for
every ResNet/attention file and off for the CNN baseline. `danhar_no_ln` is DanHAR without it,
to measure what the objective changes.

  cell           config                      logit LayerNorm
  cnn            configs/wisdm2019.py:cnn    off
  resnet         ...:resnet                  on
  channel        ...:channel                 on      (Table VII rows: the GPU run only)
  temporal       ...:temporal                on
  temporal_channel ...:temporal_channel      on
  danhar         ...:danhar                  on
  danhar_no_ln   ...:danhar                  off

Every (cell, seed) is one `python main.py ...` subprocess in its own workdir
`<runs_dir>/<cell>/seed<k>`, checkpointing at an epoch end at most once a minute: a re-run skips
finished cells and resumes an interrupted one from its last checkpoint. The plan (epochs for every cell) is
saved in `<runs_dir>/plan.json` and reused by a re-run, so a resumed cell keeps its schedule.

Sizing. Without `--epochs`, the script measures (in-process, on the real data) a train step and an
evaluation of DanHAR, scales them by each cell's forward FLOPs, and gives every cell the same
number of epochs so that the plan, times `--margin` (the CPU is shared), fits `--budget_minutes`.

Report. At the end, or alone with `--report`, it reads each cell's eval_metrics.jsonl, evaluates
each cell's latest checkpoint per test subject, and writes `<out_dir>/<name>.md`, `.json` and
`<name>_curves.png` (test error per epoch, one line per cell).

CPU (2 cores, about 90 minutes; the run used for results/recipe_wisdm2019.*):

  python -m experiments.recipe_comparison --manual_dir=<wisdm_2019 folder> --budget_minutes=90
  python -m experiments.recipe_comparison --report               # the report alone, at any time
  python -m experiments.recipe_comparison --epochs=1 --steps_per_epoch=2 \
      --runs_dir=/tmp/recipe_smoke --name=recipe_smoke --out_dir=/tmp/recipe_smoke  # smoke

Accelerator, full size (3 seeds × cnn, resnet and the 4 Table VII attention variants, plus
danhar_no_ln; up to 100 epochs, as the device call's time allows): `bash benchmarks/device_check.sh
recipe OUTDIR`, with the prepared dataset folder (wisdm2019/, about 33 MiB) carried to the
machine; it needs no raw data there.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import platform
import shlex
import sys

import numpy as np

if not __package__:  # run as a file, the packages are not importable
  sys.exit("run it from the repository root as: python -m experiments.recipe_comparison")
from experiments import cell_runner  # pylint: disable=g-import-not-at-top
from experiments.ablation import calibrate  # pylint: disable=g-import-not-at-top

ROOT = pathlib.Path(__file__).resolve().parents[1]

CONFIG_FILE = "configs/wisdm2019.py"
# cell: (config variant, logit LayerNorm), as each variant's authors' WISDM file trains it.
CELLS = {
    "cnn": ("cnn", False),
    "resnet": ("resnet", True),
    "channel": ("channel", True),
    "temporal": ("temporal", True),
    "temporal_channel": ("temporal_channel", True),
    "danhar": ("danhar", True),
    "danhar_no_ln": ("danhar", False),
}
CPU_CELLS = ("cnn", "resnet", "danhar", "danhar_no_ln")
ALL_SUBJECTS = tuple(range(1600, 1612))  # the 12 staged subjects


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--cells", default=",".join(CPU_CELLS), help=f"of {', '.join(CELLS)}")
  p.add_argument("--seeds", default="0")
  p.add_argument("--epochs", type=int, default=0, help="0: sized from --budget_minutes")
  p.add_argument("--steps_per_epoch", type=int, default=-1, help="-1: the whole train split")
  p.add_argument("--budget_minutes", type=float, default=90.0)
  p.add_argument("--margin", type=float, default=1.3,
                 help="measured times are multiplied by this: the CPU is shared")
  p.add_argument("--test_subjects", default="1608,1609,1610,1611")
  p.add_argument("--manual_dir", default=str(ROOT.parent / "shared" / "data" / "wisdm_2019"))
  p.add_argument("--runs_dir", default=str(ROOT.parent / "runs_recipe"))
  p.add_argument("--data_dir", default="", help="TFDS data_dir; default <runs_dir>/tfds")
  p.add_argument("--out_dir", default=str(ROOT / "results"))
  p.add_argument("--name", default="recipe_wisdm2019")
  p.add_argument("--jobs", type=int, default=1,
                 help="cells run at once (an accelerator has room for several small runs)")
  p.add_argument("--calibration_steps", type=int, default=3)
  p.add_argument("--plan_only", action="store_true", help="measure and print the plan only")
  p.add_argument("--report", action="store_true", help="write the report from the runs so far")
  p.add_argument("--previous", default="",
                 help="an earlier report's JSON: (cell, seed) runs missing here are taken from it")
  args = p.parse_args(argv)
  args.data_dir = args.data_dir or os.path.join(args.runs_dir, "tfds")
  args.cell_list = [c for c in args.cells.split(",") if c.strip()]
  if unknown := [c for c in args.cell_list if c not in CELLS]:
    p.error(f"unknown cells {unknown}; valid: {', '.join(CELLS)}")
  args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
  return args


# ---------------------------------------------------------------------------------------------
# Cells: one config, one command line, one workdir each.


def overrides(args, cell: str, seed: int, epochs: int) -> dict:
  return {"data_dir": args.data_dir, "manual_dir": args.manual_dir,
          "test_subjects": args.test_subjects, "seed": seed, "num_epochs": epochs,
          "steps_per_epoch": args.steps_per_epoch, "checkpoint_every_steps": 0,
          "max_checkpoints_to_keep": 2, "model.logit_standardization": CELLS[cell][1]}


def make_config(cell: str, values: dict):
  """The config `main.py --config=<file>:<variant> --config.<k>=<v> ...` would build."""
  from configs import wisdm2019  # pylint: disable=g-import-not-at-top
  config = wisdm2019.get_config(CELLS[cell][0])
  for key, v in values.items():
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
      node = getattr(node, part)
    setattr(node, leaf, v)
  return config


def command(cell: str, values: dict, workdir: str) -> list[str]:
  return [sys.executable, "main.py", f"--config={CONFIG_FILE}:{CELLS[cell][0]}",
          f"--workdir={workdir}", *(f"--config.{k}={v}" for k, v in values.items())]


def printable(cmd: list[str], args) -> str:
  """The command without this machine's paths: the raw data folder as a placeholder."""
  text = shlex.join(["python", *cmd[1:]])
  # An empty manual_dir (a prepared dataset) has nothing to hide, and would match everywhere.
  return text.replace(args.manual_dir, "<wisdm_2019 folder>") if args.manual_dir else text


def cell_dir(args, cell: str, seed: int) -> str:
  return os.path.join(args.runs_dir, cell, f"seed{seed}")


# ---------------------------------------------------------------------------------------------
# Sizing: measure a step and an evaluation of DanHAR, then share the budget.


def relative_cost(cell: str, values: dict) -> float:
  """Forward FLOPs of `cell` over DanHAR's (the calibrated model)."""
  from danhar_jax import models  # pylint: disable=g-import-not-at-top
  from danhar_jax import summary as summary_lib  # pylint: disable=g-import-not-at-top
  flops = [summary_lib.forward_flops(models.create_model(c), c.input_shape)
           for c in (make_config(cell, values), make_config("danhar", values))]
  return flops[0] / flops[1]


def make_plan(args) -> dict:
  runs = [(c, s) for c in args.cell_list for s in args.seed_list]
  values = overrides(args, "danhar", 0, 1)
  print(f"Measuring danhar ({args.calibration_steps} steps and one evaluation) ...", flush=True)
  m = calibrate(make_config("danhar", values), args.calibration_steps)
  print("  " + json.dumps({k: round(v, 2) for k, v in m.items()}), flush=True)
  costs = {c: relative_cost(c, values) for c in args.cell_list}
  # Epoch cost of every run together, the margin for a shared CPU included; the per-subject
  # evaluation of the report costs about one evaluation plus loading per run.
  per_epoch = args.margin * sum(m["epoch_s"] * costs[c] for c, _ in runs) / args.jobs
  fixed = args.margin * sum(m["overhead_s"] + m["load_s"] + m["eval_s"] * costs[c]
                            for c, _ in runs) / args.jobs
  epochs = args.epochs or max(1, int((args.budget_minutes * 60 - fixed) // per_epoch))
  return {"created": cell_runner.now(), "cells": args.cell_list, "seeds": args.seed_list,
          "epochs": epochs,
          "steps_per_epoch": m["steps_per_epoch"], "global_batch": m["global_batch"],
          "train_windows": m["train_windows"], "test_windows": m["test_windows"],
          "measured": m, "relative_cost": costs, "margin": args.margin, "jobs": args.jobs,
          "budget_minutes": args.budget_minutes,
          "estimated_minutes": (fixed + epochs * per_epoch) / 60}


def fixed_plan(args) -> dict:
  from danhar_jax import input_pipeline, train  # pylint: disable=g-import-not-at-top
  config = make_config("danhar", overrides(args, "danhar", 0, args.epochs))
  train_split, test, _ = input_pipeline.open_splits(config)
  steps = train.epoch_steps(config, len(train_split))
  return {"created": cell_runner.now(), "cells": args.cell_list, "seeds": args.seed_list,
          "epochs": args.epochs, "steps_per_epoch": steps, "global_batch": config.batch_size,
          "train_windows": len(train_split), "test_windows": len(test), "measured": None,
          "margin": args.margin, "jobs": args.jobs, "budget_minutes": args.budget_minutes,
          "estimated_minutes": None}


# ---------------------------------------------------------------------------------------------
# Running.


def run_cell(args, cell: str, seed: int, epochs: int) -> dict:
  """Trains one (cell, seed), or finds it done before; returns what happened."""
  workdir = cell_dir(args, cell, seed)
  done_path = os.path.join(workdir, "done.json")
  cmd = command(cell, overrides(args, cell, seed, epochs), workdir)
  done = cell_runner.finished_before(done_path, cmd)
  if done:
    print(f"[{cell} seed {seed}] done before; skipped.", flush=True)
    return done
  env = dict(os.environ)
  if args.jobs > 1:  # several runs share one accelerator: none may take most of its memory
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  result = {"cell": cell, "seed": seed,
            **cell_runner.run(cmd, workdir, f"{cell} seed {seed}", printable(cmd, args), env)}
  wall = result["wall_seconds"]
  if result["returncode"]:
    print(f"[{cell} seed {seed}] FAILED (exit code {result['returncode']}); see "
          f"{workdir}/log.txt", flush=True)
    return result
  with open(done_path, "w") as f:
    json.dump(result, f, indent=1)
  print(f"[{cell} seed {seed}] finished in {wall / 60:.1f} min.", flush=True)
  return result


# ---------------------------------------------------------------------------------------------
# Report.


def per_subject(args, cell: str, seed: int, epochs: int) -> dict:
  """Accuracy of the latest checkpoint of a run on each test subject, and overall."""
  import jax  # pylint: disable=g-import-not-at-top
  from danhar_jax import input_pipeline, models, train  # pylint: disable=g-import-not-at-top
  config = make_config(cell, overrides(args, cell, seed, epochs))
  test, _ = input_pipeline.load_test(config)
  model = models.create_model(config)
  try:
    state, step = train.restore_state(config, cell_dir(args, cell, seed))
  except FileNotFoundError:
    return {}
  predict = jax.jit(lambda v, x: jnp_argmax(model.apply(v, x, train=False)))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  n, batch = len(test["label"]), config.eval_batch_size
  preds = []
  for lo in range(0, n, batch):  # the last batch padded to one shape: one compilation
    x = test["signal"][lo:lo + batch]
    pad = batch - len(x)
    x = np.concatenate([x, np.repeat(x[:1], pad, 0)]) if pad else x
    preds.append(np.asarray(predict(variables, x))[:batch - pad])
  correct = np.concatenate(preds) == test["label"]
  out = {"step": step, "accuracy": float(correct.mean()), "windows": int(n), "subjects": {}}
  for s in np.unique(test["subject"]):
    mask = test["subject"] == s
    out["subjects"][str(int(s))] = {"accuracy": float(correct[mask].mean()),
                                    "windows": int(mask.sum())}
  return out


def jnp_argmax(logits):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return jnp.argmax(logits, -1)


def summarise_run(records: list[dict]) -> dict:
  acc = [r["accuracy"] for r in records]
  f1 = [r["macro_f1"] for r in records]
  best, best_f1 = int(np.argmax(acc)), int(np.argmax(f1))
  return {"epochs_done": records[-1]["epoch"], "step": records[-1]["step"],
          "best_accuracy": acc[best], "best_epoch": records[best]["epoch"],
          "last_accuracy": acc[-1], "best_macro_f1": f1[best_f1],
          "best_macro_f1_epoch": records[best_f1]["epoch"], "last_macro_f1": f1[-1],
          "curve": [{"epoch": r["epoch"], "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                     "loss": r["loss"], "train_loss": r.get("train_loss"),
                     "train_accuracy": r.get("train_accuracy")} for r in records]}


def conditions(args, the_plan: dict, runs: list[dict]) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  started = [r["started"] for r in runs if r.get("started")]
  finished = [r["finished"] for r in runs if r.get("finished")]
  return {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
          "cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__,
          "python": platform.python_version(),
          "started": min(started) if started else None,
          "finished": max(finished) if finished else None,
          "report_written": cell_runner.now(),
          "data": ("WISDM-2019 smartwatch, the 12 staged subjects (1600-1611): train = the "
                   f"others, test = {args.test_subjects}; {the_plan.get('train_windows')} train "
                   f"and {the_plan.get('test_windows')} test windows of 200 × 6"),
          "epochs": the_plan.get("epochs"), "steps_per_epoch": the_plan.get("steps_per_epoch"),
          "global_batch": the_plan.get("global_batch"), "seeds": args.seed_list}


def figure(path: str, summary: dict) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top,unused-import
  fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
  styles = {"cnn": ("tab:gray", "-"), "resnet": ("tab:blue", "-"), "danhar": ("tab:red", "-"),
            "danhar_no_ln": ("tab:red", "--"), "channel": ("tab:green", "-"),
            "temporal": ("tab:orange", "-"), "temporal_channel": ("tab:purple", "-")}
  for cell, runs in summary.items():
    color, line = styles.get(cell, (None, "-"))
    curves = [[100 * (1 - p["accuracy"]) for p in r["curve"]] for r in runs.values()]
    if len(curves) > 1 and len({len(c) for c in curves}) == 1:  # seed band: mean ± std
      epochs = [p["epoch"] for p in next(iter(runs.values()))["curve"]]
      mean, std = np.mean(curves, 0), np.std(curves, 0, ddof=1)
      ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15, lw=0)
      ax.plot(epochs, mean, line, color=color, lw=2.2,
              label=f"{cell} (LN {'on' if CELLS[cell][1] else 'off'}), mean ± std of "
                    f"{len(curves)} seeds")
      continue
    for i, (seed, run) in enumerate(sorted(runs.items())):
      epochs = [p["epoch"] for p in run["curve"]]
      error = [100 * (1 - p["accuracy"]) for p in run["curve"]]
      label = f"{cell} (LN {'on' if CELLS[cell][1] else 'off'})" if i == 0 else None
      ax.plot(epochs, error, line, color=color, label=label, marker="." if len(epochs) < 40
              else None, alpha=1.0 if len(runs) == 1 else 0.6)
  ax.set_xlim(left=0)
  ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  ax.set_xlabel("epoch")
  ax.set_ylabel("test error (%)")
  ax.set_title("WISDM-2019, subject-wise (test subjects 1608-1611)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def findings(summary: dict, subjects: dict) -> list[str]:
  """Plain statements of who wins where, DanHAR's losses first (seed means)."""
  def mean(cell, key):
    return float(np.mean([r[key] for r in summary[cell].values()]))

  out = []
  cells = list(summary)
  if "danhar" not in summary:
    return ["DanHAR has no finished evaluation; nothing to compare."]
  if cells == ["danhar"]:
    return ["Only DanHAR ran; nothing to compare."]
  for key, what in (("best_accuracy", "best accuracy"), ("last_accuracy", "last accuracy"),
                    ("best_macro_f1", "best macro-F1"), ("last_macro_f1", "last macro-F1")):
    others = [c for c in cells if c != "danhar"]
    beaten = [c for c in others if mean(c, key) >= mean("danhar", key)]
    d = mean("danhar", key)
    gaps = ", ".join(f"{c} {100 * (d - mean(c, key)):+.2f}" for c in others)
    out.append(f"- {what}: DanHAR {100 * d:.2f}%"
               + (f"; it does NOT win: {', '.join(beaten)} is as good or better" if beaten
                  else "; it wins") + f" (DanHAR minus each, points: {gaps}).")
  if "danhar" in subjects:
    for s, acc in sorted(subjects["danhar"].items()):
      better = [c for c in subjects if c != "danhar" and subjects[c].get(s, -1) >= acc]
      if better:
        out.append(f"- test subject {s} (last checkpoint): DanHAR {100 * acc:.2f}% does NOT "
                   f"win; {', '.join(f'{c} {100 * subjects[c][s]:.2f}%' for c in better)}.")
  if "danhar_no_ln" in summary:
    out.append("- the logit LayerNorm (danhar minus danhar_no_ln, points): best accuracy "
               f"{100 * (mean('danhar', 'best_accuracy') - mean('danhar_no_ln', 'best_accuracy')):+.2f}, "
               f"last accuracy {100 * (mean('danhar', 'last_accuracy') - mean('danhar_no_ln', 'last_accuracy')):+.2f}, "
               f"last macro-F1 {100 * (mean('danhar', 'last_macro_f1') - mean('danhar_no_ln', 'last_macro_f1')):+.2f}.")
  return out


PAIRED_KEYS = (("last_accuracy", "last accuracy"), ("last_macro_f1", "last macro-F1"))


def paired_differences(summary: dict) -> dict:
  """{other: {key: {seed: DanHAR minus other, in points}}} over the seeds both have."""
  if "danhar" not in summary:
    return {}
  out = {}
  for other in (c for c in ("resnet", "cnn") if c in summary):
    seeds = sorted(set(summary["danhar"]) & set(summary[other]))
    out[other] = {key: {str(s): 100 * (summary["danhar"][s][key] - summary[other][s][key])
                        for s in seeds} for key, _ in PAIRED_KEYS}
  return out


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
        word = f"does NOT survive: the sign changes between seeds (DanHAR ahead on {(d > 0).sum()} of {len(d)})"
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


def report(args) -> None:
  from danhar_jax import models, writers  # pylint: disable=g-import-not-at-top
  from danhar_jax import summary as summary_lib  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  plan_path = os.path.join(args.runs_dir, "plan.json")
  the_plan = json.load(open(plan_path)) if os.path.exists(plan_path) else {}
  epochs = the_plan.get("epochs", args.epochs)
  summary, subjects, runs, missing, params = {}, {}, [], [], {}
  previous = {}
  if args.previous:
    with open(args.previous) as f:
      previous = json.load(f)
  for cell in args.cell_list:
    config = make_config(cell, overrides(args, cell, 0, max(1, epochs or 1)))
    shapes = jax.eval_shape(lambda c=config: models.init_variables(models.create_model(c),
                                                                   c.input_shape))
    params[cell] = summary_lib.count_params(shapes["params"])
    for seed in args.seed_list:
      workdir = cell_dir(args, cell, seed)
      records = writers.read_eval_metrics(workdir)
      done_path = os.path.join(workdir, "done.json")
      run = json.load(open(done_path)) if os.path.exists(done_path) else {}
      runs.append(run)
      if not records and str(seed) in previous.get("cells", {}).get(cell, {}):
        summary.setdefault(cell, {})[seed] = {**previous["cells"][cell][str(seed)],
                                              "reused": args.previous}
        continue
      if not records:
        missing.append(f"{cell} seed {seed}")
        continue
      s = summarise_run(records)
      s["complete"] = bool(run) and s["epochs_done"] >= (epochs or 0)
      s["wall_seconds"] = run.get("wall_seconds")
      print(f"Per-subject evaluation of {cell} seed {seed} ...", flush=True)
      s["last_checkpoint"] = per_subject(args, cell, seed, epochs or 1)
      summary.setdefault(cell, {})[seed] = s
  subject_std = {}
  for cell, by_seed in summary.items():  # seed means per subject
    accs = [r["last_checkpoint"]["subjects"] for r in by_seed.values() if r["last_checkpoint"]]
    if accs:
      subjects[cell] = {k: float(np.mean([a[k]["accuracy"] for a in accs])) for k in accs[0]}
      subject_std[cell] = {k: float(np.std([a[k]["accuracy"] for a in accs], ddof=1))
                           if len(accs) > 1 else 0.0 for k in accs[0]}
  paired = paired_differences(summary)
  cond = conditions(args, the_plan, runs)
  example = command("danhar", overrides(args, "danhar", args.seed_list[0], epochs or 1),
                    cell_dir(args, "danhar", args.seed_list[0]))
  not_run = [c for c in CELLS if c not in args.cell_list]
  not_run_text = [
      f"variants {', '.join(not_run)}" if not_run else None,
      "seeds other than " + ", ".join(map(str, args.seed_list)),
      f"more than {epochs} epochs (the authors train for 500)",
      "the other 39 subjects of WISDM-2019 (only 12 are staged), its phone sensors",
      "a validation split: best-epoch numbers are chosen on the test subjects (optimistic)"]
  os.makedirs(args.out_dir, exist_ok=True)
  png = os.path.join(args.out_dir, f"{args.name}_curves.png")
  if summary:
    figure(png, summary)
  found = findings(summary, subjects) + paired_findings(paired, summary, subjects)
  out = {"command": "python -m experiments.recipe_comparison " + " ".join(
             a.replace(args.manual_dir, "<wisdm_2019 folder>") for a in sys.argv[1:]),
         "cell_command_example": printable(example, args), "conditions": cond,
         "plan": the_plan, "not_run": [t for t in not_run_text if t], "missing": missing,
         "params": params, "cells": {c: {str(k): v for k, v in r.items()}
                                     for c, r in summary.items()},
         "per_subject_last": subjects, "per_subject_last_std": subject_std,
         "paired_differences": paired,
         "reused": {c: sorted(k for k, r in v.items() if r.get("reused"))
                    for c, v in summary.items() if any(r.get("reused") for r in v.values())},
         "previous_conditions": previous.get("conditions"), "findings": found}
  with open(os.path.join(args.out_dir, f"{args.name}.json"), "w") as f:
    json.dump(out, f, indent=1)
  text = markdown(args, out, summary, subjects, png)
  with open(os.path.join(args.out_dir, f"{args.name}.md"), "w") as f:
    f.write(text)
  print(text, flush=True)


def markdown(args, out: dict, summary: dict, subjects: dict, png: str) -> str:
  c = out["conditions"]
  p = out["plan"]

  def pct(cell, key):
    v = [r[key] for r in summary[cell].values()]
    return f"{100 * np.mean(v):.2f}" + (f" ± {100 * np.std(v, ddof=1):.2f}" if len(v) > 1 else "")

  def ep(cell, key):
    return "/".join(str(r[key]) for r in summary[cell].values())

  lines = [
      "# CNN, ResNet and DanHAR on WISDM-2019 with the authors' recipes (real data)", "",
      "```", out["command"], "```", "", "One cell's command (the others differ in variant, "
      "`logit_standardization` and workdir):", "", "```", out["cell_command_example"], "```", "",
      "## Conditions", "",
      f"- {c['backend']} backend, {c['cpu']}, {c['cores']} cores (shared with other work), "
      f"jax {c['jax']}, Python {c['python']}.",
      f"- Runs from {c['started']} to {c['finished']}; report written {c['report_written']}.",
      f"- Data: {c['data']}.",
      f"- Every cell: {c['epochs']} epochs × {c['steps_per_epoch']} steps of batch "
      f"{c['global_batch']}; seed(s) {', '.join(map(str, c['seeds']))}; evaluation on the "
      "test subjects after every epoch; each cell with its authors' file settings "
      "(configs/wisdm2019.py) and its authors' objective (logit LayerNorm on for ResNet and "
      "DanHAR, off for the CNN); `danhar_no_ln` is DanHAR without it.",
      (f"- Plan: estimated {p['estimated_minutes']:.0f} min for a {p['budget_minutes']:.0f}-min "
       f"budget (measured times × {p['margin']})." if p.get("estimated_minutes") else
       "- Plan: epochs fixed by the command line."),
      "- Not run: " + "; ".join(out["not_run"]) + ".", ""]
  if out.get("reused"):
    prev = out.get("previous_conditions") or {}
    lines[-1:-1] = [
        "- Reused from an earlier report (`--previous`), not rerun: " + "; ".join(
            f"{c} seed(s) {', '.join(map(str, v))}" for c, v in out["reused"].items())
        + f" (run {prev.get('started')} to {prev.get('finished')}, jax {prev.get('jax')}, "
        "at an earlier commit of this code)."]
  if out["missing"]:
    lines += [f"**No evaluation yet for: {', '.join(out['missing'])}.**", ""]
  lines += ["## Results", "",
            "Accuracy and macro-F1 in % on the 4 test subjects; best = the best epoch's "
            "evaluation (chosen on the test set, so optimistic), last = the last epoch's.", "",
            "| cell | logit LN | params | epochs done | best accuracy (epoch) | last accuracy | "
            "best macro-F1 (epoch) | last macro-F1 | wall min |",
            "|---|---|---|---|---|---|---|---|---|"]
  for cell in summary:
    walls = [r["wall_seconds"] for r in summary[cell].values() if r.get("wall_seconds")]
    lines.append(
        f"| {cell} | {'on' if CELLS[cell][1] else 'off'} | {out['params'][cell]:,} | "
        f"{ep(cell, 'epochs_done')} | {pct(cell, 'best_accuracy')} ({ep(cell, 'best_epoch')}) | "
        f"{pct(cell, 'last_accuracy')} | {pct(cell, 'best_macro_f1')} "
        f"({ep(cell, 'best_macro_f1_epoch')}) | {pct(cell, 'last_macro_f1')} | "
        f"{np.mean(walls) / 60:.1f} |" if walls else
        f"| {cell} | {'on' if CELLS[cell][1] else 'off'} | {out['params'][cell]:,} | "
        f"{ep(cell, 'epochs_done')} | {pct(cell, 'best_accuracy')} ({ep(cell, 'best_epoch')}) | "
        f"{pct(cell, 'last_accuracy')} | {pct(cell, 'best_macro_f1')} "
        f"({ep(cell, 'best_macro_f1_epoch')}) | {pct(cell, 'last_macro_f1')} | – |")
  if subjects:
    subs = sorted(next(iter(subjects.values())))
    windows = next(iter(next(iter(summary.values())).values()))["last_checkpoint"]["subjects"]
    lines += ["", "### Accuracy per test subject, latest checkpoint", "",
              "| cell | " + " | ".join(f"{s} ({windows[s]['windows']} windows)" for s in subs)
              + " |", "|---" * (len(subs) + 1) + "|"]
    sd = out.get("per_subject_last_std", {})
    for cell, accs in subjects.items():
      lines.append(f"| {cell} | " + " | ".join(
          f"{100 * accs[s]:.2f}" + (f" ± {100 * sd[cell][s]:.2f}" if sd.get(cell, {}).get(s)
                                    else "") for s in subs) + " |")
  for other, by_key in out.get("paired_differences", {}).items():
    seeds = list(by_key["last_accuracy"])
    if len(seeds) < 2:
      continue
    lines += ["", f"### Paired by seed: DanHAR minus {other}, points", "",
              "| metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |",
              "|---" * (len(seeds) + 2) + "|"]
    for key, what in PAIRED_KEYS:
      d = [by_key[key][s] for s in seeds]
      lines.append(f"| {what} | " + " | ".join(f"{v:+.2f}" for v in d)
                   + f" | {np.mean(d):+.2f} ± {np.std(d, ddof=1):.2f} |")
  lines += ["", "### Learning curves", "", f"![test error per epoch]({os.path.basename(png)})",
            "", "## What it shows", "", *out["findings"], ""]
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------------


def main(argv=None):
  args = parse_args(argv)
  os.chdir(ROOT)
  os.environ.setdefault("DANHAR_OFFLINE", "1")
  if args.report:
    report(args)
    return
  from danhar_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  # Build the dataset once, before any timing (a no-op once built).
  input_pipeline.prepare(make_config("danhar", overrides(args, "danhar", 0, 1)))
  plan_path = os.path.join(args.runs_dir, "plan.json")
  the_plan = None
  if os.path.exists(plan_path) and not args.plan_only:
    with open(plan_path) as f:
      the_plan = json.load(f)
    if args.epochs and args.epochs != the_plan["epochs"]:
      raise SystemExit(f"{plan_path} planned {the_plan['epochs']} epochs, not {args.epochs}: "
                       "use another --runs_dir, or drop --epochs to resume that plan.")
    print(f"Resuming the plan of {the_plan['created']} ({plan_path}).", flush=True)
  if the_plan is None and args.epochs and not args.plan_only:
    the_plan = fixed_plan(args)  # nothing to size: no measuring
  if the_plan is None:
    the_plan = make_plan(args)
  print(f"Plan: cells {', '.join(args.cell_list)} × seeds {args.seeds}: {the_plan['epochs']} "
        f"epochs each × {the_plan['steps_per_epoch']} steps (batch {the_plan['global_batch']}); "
        + (f"estimated {the_plan['estimated_minutes']:.0f} min with {args.jobs} job(s), budget "
           f"{args.budget_minutes:.0f} min." if the_plan["estimated_minutes"] else
           "epochs fixed by --epochs, time not estimated."), flush=True)
  if args.plan_only:
    print(json.dumps(the_plan, indent=1))
    return
  os.makedirs(args.runs_dir, exist_ok=True)
  if not os.path.exists(plan_path):
    with open(plan_path, "w") as f:
      json.dump(the_plan, f, indent=1)
  runs = [(c, s) for s in args.seed_list for c in args.cell_list]
  with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
    results = list(pool.map(lambda r: run_cell(args, *r, the_plan["epochs"]), runs))
  print(f"All runs ended at {cell_runner.now()}; "
        f"{sum(r['returncode'] != 0 for r in results)} failed. Writing the report ...", flush=True)
  report(args)


if __name__ == "__main__":
  main()
