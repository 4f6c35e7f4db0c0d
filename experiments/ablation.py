r"""Ablation on real data: the paper's Table VII (with the CNN and ResNet rows), mean ± std over seeds.

Two suites, both from the real WISDM-2019 smartwatch recordings (12 staged subjects):

* `wisdm2019`: subject-wise (train 1600-1607, test `--test_subjects` = 1608-1611), variants
  cnn, resnet, channel, temporal, danhar (channel → temporal), temporal_channel with the
  authors' WISDM settings (configs/wisdm2019.py:<variant>): accuracy, macro-F1, parameters and
  training time.
* `weakly`: the weakly labeled windows composed from the same recordings (tfds_builders/weakly,
  config wisdm2019: 1024 × 6, 4 targets; train and test subjects as above), variants cnn,
  resnet, temporal, danhar (configs/weakly.py:<variant>): the same, plus how well the temporal
  attention localises the target (danhar_jax/localization.py: pointing accuracy, IoU) next to
  the uniform-attention and random-position baselines.

Every cell (suite, variant, seed) is one `python main.py ...` subprocess in its own workdir under
`--runs_dir`; its result is saved beside it, so a re-run skips finished cells and resumes an
interrupted one from its checkpoint. Results go to `<out_dir>/<name>.json` and `.md` (the exact
command at the top).

Sizing. Without `--epochs`, the script first measures (in-process, on the real data) the
seconds of one training step and of one evaluation of the largest variant of each suite, then
gives every cell the same number of epochs so that the whole plan fits `--budget_hours`, prints
the plan, and runs it:

  python -m experiments.ablation --manual_dir=/path/to/wisdm_2019 --budget_hours=2
  python -m experiments.ablation --plan_only ...        # measure and print the plan, run nothing
  python -m experiments.ablation --epochs=1 --steps_per_epoch=2 --seeds=0 \
      --variants=cnn,danhar --weakly_variants=danhar --name=ablation_smoke   # smoke (minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shlex
import sys
import time

import numpy as np

if not __package__:  # run as a file, the packages are not importable
  sys.exit("run it from the repository root as: python -m experiments.ablation")
from experiments import cell_runner  # pylint: disable=g-import-not-at-top

ROOT = pathlib.Path(__file__).resolve().parents[1]

SUITES = {
    # suite: (config file, overrides applied to every cell)
    "wisdm2019": ("configs/wisdm2019.py", {}),
    "weakly": ("configs/weakly.py", {"dataset": "weakly/wisdm2019", "input_shape": (1024, 6)}),
}
WISDM2019_VARIANTS = ("cnn", "resnet", "channel", "temporal", "danhar", "temporal_channel")
WEAKLY_VARIANTS = ("cnn", "resnet", "temporal", "danhar")
METRICS = ("accuracy", "macro_f1", "weighted_f1")
LOCALISATION = ("loc_pointing", "loc_iou", "loc_iou_topk", "loc_pointing_blocks", "loc_iou_blocks")
BASELINES = ("loc_pointing_uniform", "loc_iou_uniform", "loc_pointing_random", "loc_iou_random")


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--suites", default="wisdm2019,weakly")
  p.add_argument("--variants", default=",".join(WISDM2019_VARIANTS),
                 help="variants of the wisdm2019 suite")
  p.add_argument("--weakly_variants", default=",".join(WEAKLY_VARIANTS))
  p.add_argument("--seeds", default="0,1,2")
  p.add_argument("--epochs", type=int, default=0, help="0: sized from --budget_hours")
  p.add_argument("--weakly_epochs", type=int, default=0, help="0: as --epochs")
  p.add_argument("--steps_per_epoch", type=int, default=-1, help="-1: the whole train split")
  p.add_argument("--budget_hours", type=float, default=2.0)
  p.add_argument("--test_subjects", default="1608,1609,1610,1611")
  p.add_argument("--manual_dir", default=str(ROOT.parent / "shared" / "data" / "wisdm_2019"))
  p.add_argument("--data_dir", default="~/tensorflow_datasets")
  p.add_argument("--runs_dir", default=str(ROOT / "runs" / "ablation"))
  p.add_argument("--out_dir", default=str(ROOT / "results"))
  p.add_argument("--name", default="ablation_wisdm2019")
  p.add_argument("--plan_only", action="store_true", help="measure and print the plan only")
  p.add_argument("--calibration_steps", type=int, default=3)
  return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# Cells: one config, one command line, one workdir each.


def overrides(args, suite: str, seed: int, epochs: int) -> dict:
  return {**SUITES[suite][1], "data_dir": args.data_dir, "manual_dir": args.manual_dir,
          "test_subjects": args.test_subjects, "seed": seed, "num_epochs": epochs,
          "steps_per_epoch": args.steps_per_epoch}


def make_config(suite: str, variant: str, values: dict):
  """The config `main.py --config=<file>:<variant> --config.<k>=<v> ...` would build."""
  import importlib  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(SUITES[suite][0][:-3].replace("/", "."))
  config = module.get_config(variant)
  for k, v in values.items():
    setattr(config, k, v)
  return config


def command(suite: str, variant: str, values: dict, workdir: str) -> list[str]:
  def flag(v):  # a tuple as ml_collections parses it: (1024,6)
    return f"({','.join(map(str, v))})" if isinstance(v, tuple) else str(v)

  return [sys.executable, "main.py", f"--config={SUITES[suite][0]}:{variant}",
          f"--workdir={workdir}", *(f"--config.{k}={flag(v)}" for k, v in values.items())]


def cell_dir(args, suite: str, variant: str, seed: int) -> str:
  return os.path.join(args.runs_dir, suite, variant, f"seed{seed}")


# ---------------------------------------------------------------------------------------------
# Sizing: measure a step and an evaluation, then share the budget.


def calibrate(config, steps: int) -> dict:
  """Seconds of one train step (after compiling), one evaluation and one localisation pass."""
  import jax  # pylint: disable=g-import-not-at-top
  from danhar_jax import input_pipeline, localization, train  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  train_split, test, _ = input_pipeline.load(config)
  t = train.Trainer(config, train_split, test)
  pstate = t.par.replicate(train.create_train_state(config, t.model, t.steps_per_epoch))
  load_s = time.perf_counter() - start

  def timed(fn):
    started = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - started

  (pstate, _), compile_s = timed(lambda: t.train_steps(pstate, t.empty_tally, 0, 1))
  step_s = []
  for step in range(1, steps + 1):
    (pstate, _), s = timed(lambda step=step: t.train_steps(pstate, t.empty_tally, step, step + 1))
    step_s.append(s)
  # One evaluation and one localisation pass each, compiling included: an upper bound that
  # keeps the measurement short (an evaluation of the WISDM-2019 test split takes a minute here).
  _, eval_s = timed(lambda: t.evaluate(pstate))
  out = {"steps_per_epoch": t.steps_per_epoch, "train_windows": t.n_train,
         "test_windows": t.n_test, "global_batch": t.global_batch, "load_s": load_s,
         "first_step_s": compile_s, "step_s": float(np.median(step_s)), "eval_s": eval_s,
         "loc_s": 0.0}
  segments = localization.test_segments(test)
  if segments is not None:
    state = t.par.unreplicate(pstate)
    _, out["loc_s"] = timed(lambda: localization.evaluate(state, test["signal"], *segments,
                                                          config))
  out["epoch_s"] = out["steps_per_epoch"] * out["step_s"] + out["eval_s"] + out["loc_s"]
  # Start-up (about 10 s), data, and compiling the train step: paid once per cell.
  out["overhead_s"] = 10 + load_s + compile_s - out["step_s"]
  return out


def relative_cost(suite: str, variant: str, reference: str, values: dict) -> float:
  """Forward FLOPs of `variant` over those of the calibrated `reference` (same suite)."""
  from danhar_jax import models, summary  # pylint: disable=g-import-not-at-top
  flops = [summary.forward_flops(models.create_model(c), c.input_shape)
           for c in (make_config(suite, v, values) for v in (variant, reference))]
  return flops[0] / flops[1]


def fixed_epochs(args, suites) -> dict[str, int]:
  """Epochs per suite that the flags fix (--epochs, --weakly_epochs); 0 where the plan decides."""
  epochs = {s: args.epochs for s in suites}
  if "weakly" in epochs and args.weakly_epochs:
    epochs["weakly"] = args.weakly_epochs
  return epochs


def plan(args, cells) -> dict:
  """Measures each suite once (its danhar cell) and sizes the free epochs to the budget."""
  measured = {}
  suites = list(dict.fromkeys(s for s, _, _ in cells))
  for suite in suites:
    config = make_config(suite, "danhar", overrides(args, suite, 0, 1))
    print(f"Measuring {suite} (danhar, {args.calibration_steps} steps) ...", flush=True)
    measured[suite] = calibrate(config, args.calibration_steps)
    print(f"  {json.dumps({k: round(v, 2) for k, v in measured[suite].items()})}", flush=True)
  costs = {(s, v): relative_cost(s, v, "danhar", overrides(args, s, 0, 1))
           for s, v, _ in cells}
  per_epoch = {s: sum(measured[s]["epoch_s"] * costs[(s, v)] for s2, v, _ in cells if s2 == s)
               for s in suites}
  overhead = sum(measured[s]["overhead_s"] for s, _, _ in cells)
  epochs = fixed_epochs(args, suites)
  left = args.budget_hours * 3600 - overhead - sum(epochs[s] * per_epoch[s] for s in suites)
  free = [s for s in suites if not epochs[s]]
  for s in free:  # the same number of epochs for every suite the flags leave open
    epochs[s] = max(1, int(left // sum(per_epoch[f] for f in free)))
  estimated = (overhead + sum(epochs[s] * per_epoch[s] for s in suites)) / 3600
  if estimated > args.budget_hours * 1.05:
    print(f"WARNING: the plan needs {estimated:.2f} h, more than --budget_hours="
          f"{args.budget_hours}; fewer seeds, variants or --steps_per_epoch would fit it.",
          flush=True)
  return {"measured": measured, "relative_cost": {f"{s}/{v}": c for (s, v), c in costs.items()},
          "cells": len(cells), "epochs": epochs, "seconds_per_epoch_all_cells": per_epoch,
          "overhead_s": overhead, "estimated_hours": estimated}


# ---------------------------------------------------------------------------------------------
# Running and collecting.


def evaluate_localization(config, workdir: str) -> dict[str, float]:
  """Localisation scores of the latest checkpoint of `workdir` on `config`'s test split."""
  from danhar_jax import input_pipeline, localization, train  # pylint: disable=g-import-not-at-top
  test, _ = input_pipeline.load_test(config)
  if localization.test_segments(test) is None:
    raise ValueError(f"{config.dataset} has no segment_start/segment_end features to score "
                     "localisation against; use the weakly dataset.")
  state, _ = train.restore_state(config, workdir)
  return localization.evaluator(state, test, config)


def run_cell(args, suite: str, variant: str, seed: int, epochs: int) -> dict:
  """Trains one cell (or reuses its saved result) and returns its result."""
  from danhar_jax import models, summary, writers  # pylint: disable=g-import-not-at-top
  workdir = cell_dir(args, suite, variant, seed)
  result_path = os.path.join(workdir, "result.json")
  values = overrides(args, suite, seed, epochs)
  cmd = command(suite, variant, values, workdir)
  label = f"{suite} {variant} seed {seed}"
  done = cell_runner.finished_before(result_path, cmd)
  if done:
    print(f"[{label}] done before; skipped.", flush=True)
    return done
  ran = cell_runner.run(cmd, workdir, label)
  wall = ran["wall_seconds"]
  if ran["returncode"]:
    raise RuntimeError(f"{shlex.join(cmd)} failed with exit code {ran['returncode']}; see "
                       f"{workdir}/log.txt")
  records = writers.read_eval_metrics(workdir)
  last = records[-1]
  config = make_config(suite, variant, values)
  model = models.create_model(config)
  import jax  # pylint: disable=g-import-not-at-top
  shapes = jax.eval_shape(lambda: models.init_variables(model, config.input_shape))
  result = {"suite": suite, "variant": variant, "seed": seed, "command": cmd[1:],
            "epochs": last["epoch"], "step": last["step"],
            **{k: last[k] for k in METRICS},
            "params": summary.count_params(shapes["params"]),
            "wall_seconds": wall, "eval_seconds": sum(r.get("eval_seconds", 0) for r in records),
            "resumed": ran["resumed"]}
  result["train_seconds"] = wall - result["eval_seconds"]
  if suite == "weakly":
    if "loc_pointing_uniform" in last:  # the trainer scored localisation itself
      result.update({k: v for k, v in last.items() if k.startswith("loc_")})
    else:
      result.update(evaluate_localization(config, workdir))
  with open(result_path, "w") as f:
    json.dump(result, f, indent=1)
  print(f"[{suite} {variant} seed {seed}] accuracy {result['accuracy']:.4f}, macro-F1 "
        f"{result['macro_f1']:.4f}, {wall:.0f} s"
        + (f", pointing {result['loc_pointing']:.3f}, IoU {result['loc_iou']:.3f}"
           if "loc_pointing" in result else ""), flush=True)
  return result


def summarise(results: list[dict]) -> dict:
  """{suite: {variant: {metric: (mean, std, n)}}}; std is the sample std (ddof 1)."""
  out = {}
  for r in results:
    out.setdefault(r["suite"], {}).setdefault(r["variant"], []).append(r)
  summary = {}
  for suite, variants in out.items():
    summary[suite] = {}
    for variant, rs in variants.items():
      keys = [k for k, v in rs[0].items() if isinstance(v, (int, float))
              and not isinstance(v, bool) and k not in ("seed", "step")]
      summary[suite][variant] = {
          k: (float(np.mean([r[k] for r in rs])),
              float(np.std([r[k] for r in rs], ddof=1)) if len(rs) > 1 else 0.0, len(rs))
          for k in keys}
  return summary


def markdown(command_line: str, the_plan: dict, summary: dict) -> str:
  def pm(stats, key, scale=1.0, digits=2):
    if key not in stats:
      return "–"
    mean, std, n = stats[key]
    if n < 2:
      return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"

  epochs = ", ".join(f"{suite} {n}" for suite, n in the_plan["epochs"].items())
  hours = the_plan["estimated_hours"]
  estimate = f"estimated {hours:.2f} h" if np.isfinite(hours) else "time not estimated"
  lines = ["# Ablation on WISDM-2019 (real data)", "", "```", command_line, "```", "",
           f"Epochs per cell: {epochs}; {estimate} for {the_plan['cells']} cells. Mean ± sample "
           "std over seeds (the mean alone for one seed); accuracy and F1 in %, of the last "
           "epoch's evaluation on the test subjects. Localisation: the last block's temporal "
           "attention, and the mean of the blocks' (danhar_jax/localization.py). Params: count "
           "(count / 2^20, the paper's M). Train s: wall seconds per run less its evaluations "
           "(start-up, data loading and compiling included).", ""]
  for suite, variants in summary.items():
    loc = suite == "weakly"
    lines += [f"## {suite}", ""]
    header = "| variant | seeds | params | accuracy | macro-F1 | weighted-F1 | train s |"
    rule = "|---|---|---|---|---|---|---|"
    if loc:
      header += (" pointing | IoU (> mean) | IoU (top-L) | pointing, mean of blocks | "
                 "IoU (> mean), mean of blocks |")
      rule += "---|---|---|---|---|"
    lines += [header, rule]
    for variant, stats in variants.items():
      params = int(stats["params"][0])
      row = (f"| {variant} | {stats['accuracy'][2]} | {params:,} ({params / 2**20:.2f}) | "
             f"{pm(stats, 'accuracy', 100)} | {pm(stats, 'macro_f1', 100)} | "
             f"{pm(stats, 'weighted_f1', 100)} | {pm(stats, 'train_seconds', 1, 0)} |")
      if loc:
        row += (f" {pm(stats, 'loc_pointing', 1, 3)} | {pm(stats, 'loc_iou', 1, 3)} | "
                f"{pm(stats, 'loc_iou_topk', 1, 3)} | {pm(stats, 'loc_pointing_blocks', 1, 3)} | "
                f"{pm(stats, 'loc_iou_blocks', 1, 3)} |")
      lines.append(row)
    if loc:
      any_stats = next(iter(variants.values()))
      if "loc_pointing_uniform" in any_stats:
        lines += ["", "Baselines on the same test windows (exact expectations): uniform "
                  f"attention: pointing {any_stats['loc_pointing_uniform'][0]:.3f}, IoU "
                  f"{any_stats['loc_iou_uniform'][0]:.3f}; a true-length box at a random "
                  f"position: pointing {any_stats['loc_pointing_random'][0]:.3f}, IoU "
                  f"{any_stats['loc_iou_random'][0]:.3f}. Variants without temporal attention "
                  "(cnn, resnet) have no map to score."]
    lines.append("")
  return "\n".join(lines)


def main(argv=None):
  args = parse_args(argv)
  os.chdir(ROOT)
  seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  suites = [s for s in args.suites.split(",") if s.strip()]
  unknown = [s for s in suites if s not in SUITES]
  if unknown:
    raise SystemExit(f"Unknown suites {unknown}; valid: {', '.join(SUITES)}.")
  variants = {"wisdm2019": args.variants.split(","), "weakly": args.weakly_variants.split(",")}
  cells = [(s, v, seed) for s in suites for v in variants[s] if v for seed in seeds]
  command_line = shlex.join(["python", "-m", "experiments.ablation", *sys.argv[1:]])

  # Build the datasets once, before any timing.
  from danhar_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  os.environ.setdefault("DANHAR_OFFLINE", "1")
  for suite in suites:
    input_pipeline.prepare(make_config(suite, "danhar", overrides(args, suite, 0, 1)))

  epochs = fixed_epochs(args, suites)
  if all(epochs.values()) and not args.plan_only:
    the_plan = {"cells": len(cells), "epochs": epochs, "estimated_hours": float("nan"),
                "measured": None}
  else:
    the_plan = plan(args, cells)
  hours = the_plan["estimated_hours"]
  print(f"Plan: {len(cells)} cells ({', '.join(f'{s}/{v}/seed{k}' for s, v, k in cells)}), "
        f"epochs {the_plan['epochs']}, steps/epoch "
        f"{args.steps_per_epoch if args.steps_per_epoch > 0 else 'all'}; "
        + (f"estimated {hours:.2f} h." if np.isfinite(hours)
           else "time not estimated (the flags fix every suite's epochs)."), flush=True)
  if args.plan_only:
    print(json.dumps(the_plan, indent=1))
    return

  results = [run_cell(args, s, v, seed, the_plan["epochs"][s]) for s, v, seed in cells]
  summary = summarise(results)
  os.makedirs(args.out_dir, exist_ok=True)
  with open(os.path.join(args.out_dir, f"{args.name}.json"), "w") as f:
    json.dump({"command": command_line, "plan": the_plan, "cells": results,
               "summary": summary}, f, indent=1)
  text = markdown(command_line, the_plan, summary)
  with open(os.path.join(args.out_dir, f"{args.name}.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
