r"""Training throughput of DanHAR against PyTorch, resumable across short device leases.

  python -m benchmarks.throughput                          # the plan's next missing rows
  python -m benchmarks.throughput --time_budget_s=400 --require_priority=1
  python -m benchmarks.throughput --configs=wisdm --contenders=block,eager --max_priority=1
  python -m benchmarks.throughput --dry_run                # what is measured, what is left

Every row goes to benchmarks/results/<device>.jsonl as soon as it is measured. A run skips the
settings already measured on this device with the same versions and the same step code
(--remeasure measures them again) and measures the highest-priority missing ones first, so
every run, however short, adds the next rows of one table (benchmarks/plan.py has the plan).
Then `python -m benchmarks.report` renders the tables and plots from every ledger.
"""

from __future__ import annotations

import argparse
import pathlib
import shlex
import sys

if __package__ in (None, ""):
  sys.exit("run it from the repository root as: python -m benchmarks.throughput")

from benchmarks import ledger  # pylint: disable=g-import-not-at-top
from benchmarks import plan
from benchmarks import runner


def listed(kind, allowed=None):
  """An argparse type: a comma-separated list, each item checked against `allowed`."""
  def parse(text: str) -> tuple:
    items = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
    for item in items if allowed is not None else ():
      if item not in allowed:
        raise argparse.ArgumentTypeError(f"{item!r} is not one of: {', '.join(allowed)}")
    return items
  return parse


def options(argv: list[str]) -> runner.Options:
  p = argparse.ArgumentParser(prog="python -m benchmarks.throughput",
                              description=__doc__.splitlines()[0])
  p.add_argument("--configs", type=listed(str, plan.CONFIGS), default=())
  p.add_argument("--contenders", type=listed(str, tuple(plan.CONTENDERS)), default=())
  p.add_argument("--numerics", type=listed(str, tuple(plan.NUMERICS)), default=())
  p.add_argument("--batches", type=listed(int), default=())
  p.add_argument("--max_priority", type=int, default=0, help="0: every priority")
  p.add_argument("--time_budget_s", type=float, default=0, help="0: no limit. Groups that "
                 "would not fit are left for the next run; one cut midway writes nothing.")
  p.add_argument("--require_priority", type=int, default=0,
                 help="exit 3 if a row of this priority or higher is still missing")
  p.add_argument("--remeasure", action="store_true",
                 help="measure the selected settings again even where the ledger has them")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--min_repeats", type=int, default=3)
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--min_repeat_s", type=float, default=0.2,
                 help="each timed repeat runs enough steps to last this long")
  p.add_argument("--widths", type=listed(int), default=(),
                 help="shrink every model (a QUICK rehearsal on a CPU), e.g. 16,32,48")
  p.add_argument("--batch_cap", type=int, default=0,
                 help="every planned batch above this becomes this (a rehearsal on a CPU)")
  p.add_argument("--split_windows", type=int, default=0,
                 help="train-split size of block and trainer; 0: each config's real one")
  p.add_argument("--trainer_epoch_s", type=float, default=3.0)
  p.add_argument("--trainer_epochs", type=int, default=3)
  p.add_argument("--results", type=pathlib.Path, default=ledger.RESULTS)
  p.add_argument("--log_dir", type=pathlib.Path, default=runner.ROOT / "runs" / "bench_logs")
  p.add_argument("--dry_run", action="store_true", help="plan and summarise; measure nothing")
  a = p.parse_args(argv)
  for name in ("time_budget_s", "min_repeat_s", "split_windows", "max_priority",
               "require_priority", "batch_cap"):
    if getattr(a, name) < 0:
      p.error(f"--{name}={getattr(a, name)}: must be 0 or more")
  if a.repeats < a.min_repeats or a.min_repeats < 1:
    p.error(f"--repeats={a.repeats} --min_repeats={a.min_repeats}: need repeats >= "
            "min_repeats >= 1")
  return runner.Options(
      results=a.results, log_dir=a.log_dir, time_budget_s=a.time_budget_s,
      remeasure=a.remeasure, repeats=a.repeats, min_repeats=a.min_repeats, warmup=a.warmup,
      min_repeat_s=a.min_repeat_s, widths=a.widths, batch_cap=a.batch_cap, split_windows=a.split_windows,
      trainer_epoch_s=a.trainer_epoch_s, trainer_epochs=a.trainer_epochs,
      require_priority=a.require_priority, configs=a.configs, contenders=a.contenders,
      numerics=a.numerics, batches=a.batches, max_priority=a.max_priority, dry_run=a.dry_run,
      command=shlex.join(["python", "-m", "benchmarks.throughput", *argv]))


def main(argv: list[str] | None = None) -> int:
  return runner.run(options(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
  sys.exit(main())
