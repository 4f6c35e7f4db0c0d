"""Records: what a finished run's eval_metrics.jsonl says, one shape for every kind of cell
(a trained network, a random forest), so a study reads every cell the same way."""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from danhar_jax import train, writers
from experiments import engine, report


def subjects_of(last: dict, config, wd: str) -> dict:
  """{step, accuracy, windows, subjects: {s: {accuracy, windows}}} of the last evaluation:
  from its record, or (an older run without the window counts) `train.evaluate`."""
  if "subject_windows" not in last:
    last = {**train.evaluate(config, wd), "step": last["step"]}
  if "subject_accuracy" not in last:
    return {}
  n = last["subject_windows"]
  return {"step": last["step"], "accuracy": last["accuracy"], "windows": sum(n.values()),
          "subjects": {s: {"accuracy": a, "windows": n[s]}
                       for s, a in last["subject_accuracy"].items()}}


def record(cell: engine.Cell, seed: int, runs_dir: str, common: dict,
           epochs: int) -> dict | None:
  """The run's record, or None before its first evaluation: last and best accuracy and F1, the
  curve, per-subject accuracy of the last evaluation (and of the selected one), the epoch
  selected under config.select_on, the split's overlap audit, localisation scores, seconds."""
  wd = engine.workdir(runs_dir, cell, seed)
  evals = writers.read_eval_metrics(wd)
  if not evals:
    return None
  done = os.path.join(wd, "done.json")
  ran = json.load(open(done)) if os.path.exists(done) else {}
  last, acc, f1 = evals[-1], [r["accuracy"] for r in evals], [r["macro_f1"] for r in evals]
  best, best_f1 = int(np.argmax(acc)), int(np.argmax(f1))
  hide = {common.get("manual_dir", ""): "<manual_dir>"}
  shown_command = [engine.hidden(arg, hide) for arg in ran.get("command") or []] or None
  out = {"cell": cell.name, "seed": seed, **cell.meta, "command": shown_command,
         "epochs_done": last["epoch"], "step": last["step"],
         "accuracy": acc[-1], "macro_f1": f1[-1], "weighted_f1": last.get("weighted_f1"),
         "best_accuracy": acc[best], "best_epoch": evals[best]["epoch"], "last_accuracy": acc[-1],
         "best_macro_f1": f1[best_f1], "best_macro_f1_epoch": evals[best_f1]["epoch"],
         "last_macro_f1": f1[-1],
         "complete": bool(ran) and last["epoch"] >= epochs * cell.epoch_factor,
         "curve": [{k: r.get(k) for k in ("epoch", "accuracy", "macro_f1", "loss", "train_loss",
                                          "train_accuracy", "validation_accuracy")}
                   for r in evals],
         **{k: v for k, v in last.items() if k.startswith("loc_")}}
  # The epoch selected under config.select_on (docs/reliability.md); a record without the
  # fields (a random forest, an older run) has none.
  out.update({k: last.get(k) for k in ("selected_on", "selected_epoch", "selected_score",
                                       "test_accuracy_at_selected", "test_macro_f1_at_selected")})
  at = [r for r in evals if r["epoch"] == last.get("selected_epoch")]
  out["validation_accuracy_at_selected"] = at[0].get("validation_accuracy") if at else None
  out["selected_checkpoint"] = (subjects_of(at[0], None, wd)
                                if at and "subject_windows" in at[0] else {})
  out["split_audit"] = writers.read_split_audit(wd)  # None for a run from before it was written
  config = engine.make_config(cell.config, engine.values(cell, common, seed, epochs))
  out["last_checkpoint"] = subjects_of(last, config, wd)
  out.update({k: ran.get(k) for k in ("started", "finished", "wall_seconds")})
  out["eval_seconds"] = sum(r.get("eval_seconds", 0) for r in evals)
  out["train_seconds"] = out["wall_seconds"] and out["wall_seconds"] - out["eval_seconds"]
  return out


def records(table: dict[str, engine.Cell], names, seeds, runs_dir: str, common: dict,
            epochs: int, previous: dict | None = None) -> tuple[dict, list[str]]:
  """({cell: {"<seed>": record}}, ["<cell> seed <k>" of each run without an evaluation yet]);
  `previous` ({cell: {"<seed>": record}} of an earlier report) fills in a run not here."""
  cells, missing = {}, []
  for name in names:
    for seed in seeds:
      r = record(table[name], seed, runs_dir, common, epochs)
      if r is None and str(seed) in (previous or {}).get(name, {}):
        r = previous[name][str(seed)]
      if r is None:
        missing.append(f"{name} seed {seed}")
      else:
        cells.setdefault(name, {})[str(seed)] = r
  return cells, missing


def report_fields(args, study: str, values: dict, epochs: int) -> dict:
  """What every study report's JSON holds: its command and one cell's (paths hidden), the code
  version, the machine's conditions, the runs' records by cell and seed, the runs without an
  evaluation yet, and each cell's parameters. `study`: the module, as `python -m` runs it."""
  cells, missing = records(args.table, args.cell_list, args.seed_list, args.runs_dir, values,
                           epochs)
  hide = {args.manual_dir: "<wisdm_2019 folder>"}
  example = engine.example_command(args.table, args.cell_list, args.seed_list[0],
                                   args.runs_dir, values, epochs)
  return {
      "command": engine.shown([sys.executable, "-m", study, *sys.argv[1:]], hide),
      "cell_command_example": engine.shown(example, hide),
      "code": report.code_version(),
      "conditions": {**report.conditions([r for c in cells.values() for r in c.values()]),
                     "report_written": engine.now()},
      "missing": missing,
      "params": {c: engine.params(args.table[c], values) for c in cells},
      "cells": cells}
