"""The experiment engine: cells × seeds, the commands that run them, epochs sized to a budget,
runs that resume, and one record per finished run.

A `Cell` is a config (`configs/wisdm2019.py:danhar`) plus dotted overrides
(`{"model.logit_standardization": False}`); its kind says which entry point runs it: `main.py`
trains DanHAR and its relatives, `experiments.baselines` fits the random forest. Both write
`eval_metrics.jsonl` in the cell's workdir `<runs_dir>/<cell>/seed<k>`, which `record` reads, so
a study sees every cell the same way. A run whose `done.json` holds the same command is not run
again; an unfinished one resumes from its checkpoints.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import importlib
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

import jax
import numpy as np

from danhar_jax import input_pipeline, models, summary, train
from experiments import report

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENTRY = {"danhar": ["main.py"], "rf": ["-m", "experiments.baselines"]}


@dataclasses.dataclass
class Cell:
  name: str  # also its folder under the runs directory
  config: str  # "<config file>:<variant>", as main.py's --config takes it
  overrides: dict = dataclasses.field(default_factory=dict)  # dotted config keys
  kind: str = "danhar"  # a key of ENTRY
  meta: dict = dataclasses.field(default_factory=dict)  # what a study's tables show about it
  # k: k epochs per planned epoch, for a split with about 1/k of the windows, so that every
  # cell takes the same optimiser steps (and about the same time) as the others.
  epoch_factor: int = 1


def study_flags(p, seeds: str, runs_dir: str, name: str, data_dir: str = "",
                sized: bool = True) -> None:
  """The flags every study's CLI takes, on the parser `p`; `sized`: the epochs are planned."""
  p.add_argument("--seeds", default=seeds)
  if sized:
    p.add_argument("--epochs", type=int, default=0, help="0: sized from the time budget")
    p.add_argument("--steps_per_epoch", type=int, default=-1, help="-1: the whole train split")
    p.add_argument("--calibration_steps", type=int, default=3)
    p.add_argument("--plan_only", action="store_true", help="measure and print the plan only")
  p.add_argument("--test_subjects", default="1608,1609,1610,1611")
  p.add_argument("--manual_dir", default=str(ROOT.parent / "shared" / "data" / "wisdm_2019"))
  p.add_argument("--data_dir", default=data_dir, help="TFDS data_dir of the runs")
  p.add_argument("--runs_dir", default=runs_dir)
  p.add_argument("--out_dir", default=str(ROOT / "results"))
  p.add_argument("--name", default=name)
  p.add_argument("--report", action="store_true", help="write the report from the runs so far")


def now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def values(cell: Cell, common: dict, seed: int, epochs: int | None = None) -> dict:
  """The run's overrides in command order: `common`'s keys keep their places (seed and
  num_epochs filled in), then the cell's own; a cell's num_epochs wins over the plan's."""
  out = {**common, "seed": seed}
  if epochs is not None:
    out["num_epochs"] = epochs * cell.epoch_factor
  return {**out, **cell.overrides}


def make_config(config: str, overrides: dict):
  """The config `main.py --config=<config> --config.<k>=<v> ...` would build."""
  file, _, variant = config.partition(":")
  module = importlib.import_module(file.removesuffix(".py").replace("/", "."))
  c = module.get_config(variant or None)
  for key, v in overrides.items():
    *parents, leaf = key.split(".")
    node = c
    for part in parents:
      node = getattr(node, part)
    setattr(node, leaf, v)
  return c


def command(cell: Cell, overrides: dict, workdir: str) -> list[str]:
  def flag(v):  # a tuple as ml_collections parses it: (1024,6)
    return f"({','.join(map(str, v))})" if isinstance(v, tuple) else str(v)

  return [sys.executable, *ENTRY[cell.kind], f"--config={cell.config}", f"--workdir={workdir}",
          *(f"--config.{k}={flag(v)}" for k, v in overrides.items())]


def hidden(text: str, hide: dict[str, str]) -> str:
  """`text` relative to the checkout, and with each of `hide`'s paths as its placeholder."""
  text = text.replace(f"{ROOT}/", "")
  for path, placeholder in hide.items():
    text = text.replace(path, placeholder) if path else text  # "" would match everywhere
  return text


def shown(cmd: list[str], hide: dict[str, str]) -> str:
  """The command as a report prints it: `python`, and this machine's paths as placeholders."""
  return hidden(shlex.join(["python", *cmd[1:]]), hide)


def workdir(runs_dir: str, cell: Cell, seed: int) -> str:
  return os.path.join(runs_dir, cell.name, f"seed{seed}")


# ---------------------------------------------------------------------------------------------
# Sizing: time a short run of one model per config file, scale by FLOPs, share the budget.


def calibrate(config, steps: int) -> dict:
  """Seconds of one train step (after compiling) and of one evaluation, from a short run on the
  splits of the config's protocol (config.split, config.validation_*), as main.py has them."""
  start = time.perf_counter()
  split_set = input_pipeline.open_split_set(config)
  t = train.Trainer(config, split_set.train, split_set.test, split_set.validation)
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
  # One evaluation, compiling and the config's evaluators (localisation) included: an upper
  # bound that keeps the measurement short.
  _, eval_s = timed(lambda: (t.evaluate(pstate), t.evaluate_validation(pstate)))
  out = {"steps_per_epoch": t.steps_per_epoch, "train_windows": t.n_train,
         "test_windows": t.n_test, "global_batch": t.global_batch, "load_s": load_s,
         "first_step_s": compile_s, "step_s": float(np.median(step_s)), "eval_s": eval_s}
  out["epoch_s"] = out["steps_per_epoch"] * out["step_s"] + out["eval_s"]
  # Start-up (about 10 s), data, and compiling the train step: paid once per run.
  out["overhead_s"] = 10 + load_s + compile_s - out["step_s"]
  return out


def forward_flops(config) -> float:
  return summary.forward_flops(models.create_model(config), config.input_shape)


def split_sizes(config) -> dict:
  """What a plan records without measuring: the splits and the steps of an epoch."""
  split_set = input_pipeline.open_split_set(config)
  return {"steps_per_epoch": train.epoch_steps(config, len(split_set.train)),
          "global_batch": config.batch_size, "train_windows": len(split_set.train),
          "test_windows": len(split_set.test)}


def references(cells: list[Cell]) -> dict[str, Cell]:
  """{config file: its first trained cell}: the one timed, and the one that builds the data."""
  refs = {}
  for c in cells:
    if c.kind == "danhar":
      refs.setdefault(c.config.split(":")[0], c)
  return refs


def plan(cells: list[Cell], seeds: list[int], common: dict, budget_s: float | None,
         epochs: int = 0, steps: int = 3, margin: float = 1.0, jobs: int = 1) -> dict:
  """Epochs for every cell whose overrides fix none: `epochs`, or as many as fit `budget_s`
  (measured times × `margin`, `jobs` runs at once). The first trained cell of each config file is
  timed; the others scale by forward FLOPs; a random forest costs nothing here."""
  trained, refs = [c for c in cells if c.kind == "danhar"], references(cells)
  out = {"created": now(), "cells": [c.name for c in cells], "seeds": seeds, "margin": margin,
         "jobs": jobs, "budget_minutes": budget_s / 60 if budget_s else None}
  if not refs:  # random forests only: no epochs to size
    return {**out, "epochs": epochs or 1, "measured": None, "estimated_minutes": None}
  first = next(iter(refs.values()))
  if epochs:  # nothing to size: no measuring
    return {**out, **split_sizes(make_config(first.config, values(first, common, 0, epochs))),
            "epochs": epochs, "measured": None, "estimated_minutes": None}
  measured, cost = {}, {}
  for file, ref in refs.items():
    print(f"Measuring {ref.name} ({steps} steps and one evaluation) ...", flush=True)
    measured[file] = calibrate(make_config(ref.config, values(ref, common, 0, 1)), steps)
    print("  " + json.dumps({k: round(v, 2) for k, v in measured[file].items()}), flush=True)
  for c in trained:
    ref = refs[c.config.split(":")[0]]
    ratio = forward_flops(make_config(c.config, values(c, common, 0, 1))) / forward_flops(
        make_config(ref.config, values(ref, common, 0, 1)))
    cost[c.name] = measured[c.config.split(":")[0]]["epoch_s"] * ratio
  scale = margin * len(seeds) / jobs
  fixed = scale * sum(measured[c.config.split(":")[0]]["overhead_s"]
                      + cost[c.name] * c.overrides.get("num_epochs", 0) for c in trained)
  per_epoch = scale * sum(cost[c.name] for c in trained if "num_epochs" not in c.overrides)
  n = max(1, int((budget_s - fixed) // per_epoch)) if per_epoch else 1
  estimated = (fixed + n * per_epoch) / 60
  if estimated > budget_s / 60 * 1.05:
    print(f"WARNING: the plan needs {estimated:.0f} min, more than the budget; fewer seeds, "
          "cells or steps per epoch would fit it.", flush=True)
  m = measured[first.config.split(":")[0]]
  return {**out, **{k: m[k] for k in ("steps_per_epoch", "global_batch", "train_windows",
                                      "test_windows")},
          "epochs": n, "measured": measured, "epoch_seconds": cost, "estimated_minutes": estimated}


def saved_plan(runs_dir: str, epochs: int, make) -> dict:
  """The plan in `<runs_dir>/plan.json`, so that a resumed cell keeps its schedule; or a new
  one from `make()`, saved there."""
  path = os.path.join(runs_dir, "plan.json")
  if os.path.exists(path):
    with open(path) as f:
      the_plan = json.load(f)
    if epochs and epochs != the_plan["epochs"]:
      raise SystemExit(f"{path} planned {the_plan['epochs']} epochs, not {epochs}: use another "
                       "runs folder, or drop the epochs flag to resume that plan.")
    print(f"Resuming the plan of {the_plan['created']} ({path}).", flush=True)
    return the_plan
  the_plan = make()
  os.makedirs(runs_dir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(the_plan, f, indent=1)
  return the_plan


# ---------------------------------------------------------------------------------------------
# Running.


def finished_before(record_path: str, cmd: list[str]) -> dict | None:
  """The saved record, if it is of this same command (the interpreter aside)."""
  if not os.path.exists(record_path):
    return None
  with open(record_path) as f:
    record = json.load(f)
  return record if record.get("command") == cmd[1:] else None


def execute(cmd: list[str], wd: str, label: str, text: str | None = None,
            env: dict | None = None) -> dict:
  """Runs `cmd` from the repository root, output appended to `<wd>/log.txt`."""
  os.makedirs(wd, exist_ok=True)
  print(f"[{label}] {now()} {text or shlex.join(cmd[1:])}", flush=True)
  resumed = os.path.isdir(os.path.join(wd, "checkpoints"))
  # The checkout's package, not whichever one an editable install points at.
  env = dict(os.environ if env is None else env, DANHAR_OFFLINE="1",
             PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
  started, start_time = time.perf_counter(), now()
  with open(os.path.join(wd, "log.txt"), "a") as log:
    proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                          check=False)
  return {"command": cmd[1:], "returncode": proc.returncode, "started": start_time,
          "finished": now(), "wall_seconds": time.perf_counter() - started, "resumed": resumed}


def run(cell: Cell, seed: int, epochs: int, runs_dir: str, common: dict,
        hide: dict | None = None, env: dict | None = None) -> dict:
  """Runs one (cell, seed), or finds it done before; `done.json` records a success."""
  wd = workdir(runs_dir, cell, seed)
  cmd = command(cell, values(cell, common, seed, epochs), wd)
  label = f"{cell.name} seed {seed}"
  done = finished_before(os.path.join(wd, "done.json"), cmd)
  if done:
    print(f"[{label}] done before; skipped.", flush=True)
    return done
  ran = {"cell": cell.name, "seed": seed, **execute(cmd, wd, label, shown(cmd, hide or {}), env)}
  if ran["returncode"]:
    print(f"[{label}] FAILED (exit code {ran['returncode']}); see {wd}/log.txt", flush=True)
    return ran
  with open(os.path.join(wd, "done.json"), "w") as f:
    json.dump(ran, f, indent=1)
  print(f"[{label}] finished in {ran['wall_seconds'] / 60:.1f} min.", flush=True)
  return ran


def run_all(cells: list[Cell], seeds: list[int], epochs: int, runs_dir: str, common: dict,
            jobs: int = 1, hide: dict | None = None) -> list[dict]:
  env = dict(os.environ)
  if jobs > 1:  # several runs share one accelerator: none may take most of its memory
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  runs = [(c, s) for s in seeds for c in cells]
  with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
    return list(pool.map(lambda r: run(*r, epochs, runs_dir, common, hide, env), runs))


def example_command(table: dict[str, Cell], names, seed: int, runs_dir: str, common: dict,
                    epochs: int) -> list[str]:
  """The command of the first trained cell of `names` (else the first cell), for a report."""
  ref = table[next((n for n in names if table[n].kind == "danhar"), names[0])]
  return command(ref, values(ref, common, seed, epochs), workdir(runs_dir, ref, seed))


def params(cell: Cell, common: dict) -> int | None:
  """Trainable parameters of a cell's model; None for a cell that trains no network."""
  if cell.kind != "danhar":
    return None
  config = make_config(cell.config, values(cell, common, 0, 1))
  shapes = jax.eval_shape(lambda: models.init_variables(models.create_model(config),
                                                        config.input_shape))
  return summary.count_params(shapes["params"])


def run_study(args, cells: list[Cell], common: dict, budget_s: float, margin: float = 1.0,
              jobs: int = 1, hide: dict | None = None, extend=None) -> dict | None:
  """A study's CLI flow (study_flags): builds the datasets, plans (or resumes the plan in
  `<runs_dir>/plan.json`; `extend(plan)` adds a study's own fields), runs every (cell, seed)
  and returns the plan. None after --plan_only; --report runs nothing, reads the saved plan."""
  path = os.path.join(args.runs_dir, "plan.json")
  if args.report:
    return json.load(open(path)) if os.path.exists(path) else {}
  for ref in references(cells).values():  # built once, before any timing (then a no-op)
    input_pipeline.prepare(make_config(ref.config, values(ref, common, 0)))

  def make():
    p = plan(cells, args.seed_list, common, budget_s, 0 if args.plan_only else args.epochs,
             args.calibration_steps, margin, jobs)
    return {**p, **(extend(p) if extend else {})}

  if args.plan_only:
    print(json.dumps(make(), indent=1))
    return None
  the_plan = saved_plan(args.runs_dir, args.epochs, make)
  minutes = the_plan["estimated_minutes"]
  print(f"Plan: {', '.join(c.name for c in cells)} × seeds {args.seed_list}: "
        f"{the_plan['epochs']} epochs × {the_plan.get('steps_per_epoch')} steps; "
        + (f"estimated {minutes:.0f} min." if minutes else "time not estimated."), flush=True)
  ran = run_all(cells, args.seed_list, the_plan["epochs"], args.runs_dir, common, jobs, hide)
  print(f"All runs ended at {now()}; {sum(r['returncode'] != 0 for r in ran)} failed.",
        flush=True)
  return the_plan


def study_main(args, cells: list[Cell], common: dict, *, collect, plot, findings, render,
               png_suffix: str = "", extend=None) -> None:
  """A study's whole CLI run: every (cell, seed) run or resumed, then `collect(args, plan)`,
  `plot(png, out)` where cells ran, `findings(out)` and `render(out, png name)` saved."""
  os.chdir(ROOT)
  os.environ.setdefault("DANHAR_OFFLINE", "1")
  the_plan = run_study(args, cells, common, args.budget_minutes * 60, args.margin, args.jobs,
                       {args.manual_dir: "<wisdm_2019 folder>"}, extend=extend)
  if the_plan is None:  # --plan_only
    return
  out = collect(args, the_plan)
  png = os.path.join(args.out_dir, f"{args.name}{png_suffix}.png")
  if out["cells"]:
    plot(png, out)
  out["findings"] = findings(out)
  report.save(args.out_dir, args.name, out, render(out, os.path.basename(png)))
