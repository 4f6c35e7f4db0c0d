"""What a study's report is made of: records grouped by cell, mean ± std over seeds,
subject-bootstrap intervals, per-subject seed means, the machine, tables and learning curves.

Every function takes records (experiments.records.record's shape, or a committed JSON's), so a
report re-renders from its JSON alone.
"""

from __future__ import annotations

import json
import os
import platform

import jax
import numpy as np

from benchmarks import env

DRAWS, BOOTSTRAP_SEED = 10_000, 0


def by_cell(records: list[dict], key: str = "cell") -> dict[str, dict[int, dict]]:
  """{cell: {seed: record}}, cells in first-seen order."""
  out = {}
  for r in records:
    out.setdefault(r[key], {})[int(r["seed"])] = r
  return out


def pm(values, scale: float = 100, digits: int = 2) -> str:
  """Mean ± sample std (ddof 1), or the mean alone for one value; '–' for none."""
  v = [x * scale for x in values if x is not None]
  if not v:
    return "–"
  return f"{np.mean(v):.{digits}f}" + (f" ± {np.std(v, ddof=1):.{digits}f}" if len(v) > 1 else "")


def paired(summary: dict, cell: str, others, keys) -> dict:
  """{other: {key: {seed: cell minus other, in points}}} over the seeds both have."""
  return {other: {key: {str(s): 100 * (summary[cell][s][key] - summary[other][s][key])
                        for s in sorted(set(summary[cell]) & set(summary[other]))}
                  for key in keys} for other in others if cell in summary and other in summary}


def subject_bootstrap(accuracy: dict, windows: dict, draws: int = DRAWS,
                      seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
  """95% percentile interval of overall accuracy when the test subjects are resampled with
  replacement: each draw's accuracy weights its subjects by their windows."""
  keys = sorted(accuracy)
  acc = np.array([accuracy[k] for k in keys])
  n = np.array([windows[k] for k in keys], np.float64)
  idx = np.random.default_rng(seed).integers(0, len(keys), (draws, len(keys)))
  stat = (acc[idx] * n[idx]).sum(1) / n[idx].sum(1)
  lo, hi = np.percentile(stat, [2.5, 97.5])
  return float(lo), float(hi)


def subject_means(by_seed: dict, at: str = "last_checkpoint") -> tuple[dict, dict, dict]:
  """Per test subject over seeds: (mean accuracy, sample std, windows); empty without them.
  `at`: the evaluation, "last_checkpoint" or "selected_checkpoint" (records.record)."""
  accs = [r[at]["subjects"] for r in by_seed.values() if r.get(at)]
  if not accs:
    return {}, {}, {}
  mean = {k: float(np.mean([a[k]["accuracy"] for a in accs])) for k in accs[0]}
  std = {k: float(np.std([a[k]["accuracy"] for a in accs], ddof=1)) if len(accs) > 1 else 0.0
         for k in accs[0]}
  return mean, std, {k: accs[0][k]["windows"] for k in accs[0]}


def interval(by_seed: dict, at: str = "last_checkpoint") -> str:
  """The subject-bootstrap 95% interval of the seed-mean last (or `at`) accuracy, in %; '–'
  without per-subject accuracies."""
  mean, _, windows = subject_means(by_seed, at)
  if not mean:
    return "–"
  lo, hi = subject_bootstrap(mean, windows)
  return f"[{100 * lo:.2f}, {100 * hi:.2f}]"


def table(header: list[str], rows: list[list]) -> list[str]:
  return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|",
          *("| " + " | ".join(map(str, r)) + " |" for r in rows)]


def conditions(records: list[dict]) -> dict:
  """The machine, and when the runs among `records` that ran here (not reused) began and ended."""
  ran = [r for r in records if not r.get("reused")]
  return {**machine(),
          "started": min((r["started"] for r in ran if r.get("started")), default=None),
          "finished": max((r["finished"] for r in ran if r.get("finished")), default=None)}


def condition_lines(c: dict) -> list[str]:
  return [f"- {c['backend']} backend, {c['cpu']}, {c['cores']} cores (shared with other work), "
          f"jax {c['jax']}, Python {c['python']}.",
          f"- Runs from {c['started']} to {c['finished']}; report written {c['report_written']}."]


def head(title: str, out: dict, differ: str) -> list[str]:
  """A study report's opening: title, its command, one cell's command (the others differ in
  `differ`), and the Conditions every study has: machine and times, code where recorded, data."""
  c, code = out["conditions"], out.get("code")
  return [f"# {title}", "", "```", out["command"], "```", "",
          f"One cell's command (the others differ in {differ}):", "",
          "```", out["cell_command_example"], "```", "", "## Conditions", "",
          *condition_lines(c),
          *([f"- Code: git {code.get('git_sha')}"
             + (" (with uncommitted changes)" if code.get("git_dirty") else "") + "."]
            if code else []),
          f"- Data: {c['data']}."]


def tail(out: dict, extra=()) -> list[str]:
  """The Conditions' last bullets (the plan, what was not run, then `extra`), and the runs
  without an evaluation yet."""
  p = out["plan"]
  lines = [(f"- Plan: estimated {p['estimated_minutes']:.0f} min for a "
            f"{p['budget_minutes']:.0f}-min budget (measured times × {p['margin']})."
            if p.get("estimated_minutes") else "- Plan: epochs fixed by the command line."),
           "- Not run: " + "; ".join(out["not_run"]) + ".", *extra, ""]
  if out["missing"]:
    lines += [f"**No evaluation yet for: {', '.join(out['missing'])}.**", ""]
  return lines


def code_version() -> dict:
  """The checkout's git commit, and whether tracked files differ from it (None outside git)."""
  return env.git()


def machine() -> dict:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
          "cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__,
          "python": platform.python_version()}


def curves(path: str, cells: dict, label, title: str, styles: dict | None = None) -> None:
  """Test error per epoch, one line per cell: the seed mean ± std as a band where the seeds'
  curves have one length, else one line per seed; a cell evaluated once (no epochs) is a
  horizontal line. `label(cell)` names a line."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top,unused-import
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
  for cell, runs in cells.items():
    color, line = (styles or {}).get(cell, (None, "-"))
    error = [[100 * (1 - p["accuracy"]) for p in r["curve"]] for r in runs.values()]
    epochs = [[p["epoch"] for p in r["curve"]] for r in runs.values()]
    if all(len(e) == 1 for e in error):  # one fit, no epochs (a forest): a level across the plot
      ax.axhline(np.mean(error), color=color, ls=line, lw=1.5,
                 label=f"{label(cell)} (one fit), mean of {len(error)} seed(s)")
      continue
    if len(error) > 1 and len({len(e) for e in error}) == 1:
      mean, std = np.mean(error, 0), np.std(error, 0, ddof=1)
      ax.fill_between(epochs[0], mean - std, mean + std, color=color, alpha=0.15, lw=0)
      ax.plot(epochs[0], mean, line, color=color, lw=2.2,
              label=f"{label(cell)}, mean ± std of {len(error)} seeds")
      continue
    for i, (x, y) in enumerate(zip(epochs, error)):
      ax.plot(x, y, line, color=color, label=label(cell) if i == 0 else None,
              marker="." if len(x) < 40 else None, alpha=1.0 if len(error) == 1 else 0.6)
  ax.set_xlim(left=0)
  ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  ax.set(xlabel="epoch", ylabel="test error (%)", title=title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def bars(path: str, groups: list[str], series: list[tuple], lines: list[tuple], ylabel: str,
         title: str) -> None:
  """Grouped bars, `series` = (label, values, color, alpha[, errors]), every value printed (a
  score near zero has no visible bar), errors (a seed std) as whiskers, and horizontal
  `lines` = (y, label, style); the legend sits above 1, clear of the bars."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
  width, x = 0.8 / len(series), np.arange(len(groups))
  for i, (label, v, color, alpha, *errors) in enumerate(series):
    offset = (i - (len(series) - 1) / 2) * width
    err = errors[0] if errors else None
    ax.bar(x + offset, v, width, yerr=err, capsize=3, label=label, color=color, alpha=alpha)
    for xi, vi, ei in zip(x, v, err if err is not None else [0] * len(v)):
      ax.text(xi + offset, vi + ei + 0.01, f"{vi:.3f}", ha="center", fontsize=7)
  for y, label, style in lines:
    ax.axhline(y, color="black" if style == "--" else "gray", ls=style, lw=1, label=label)
  ax.set_xticks(x, groups)
  ax.set(ylim=(0, 1.15), ylabel=ylabel, title=title)
  ax.set_yticks(np.linspace(0, 1, 6))
  ax.legend(fontsize=7, loc="upper center", ncol=len(series) + len(lines))
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def save(out_dir: str, name: str, out: dict, text: str, md: str = ".md") -> None:
  """`<name>.json` (what the report is rendered from) and its markdown `<name><md>`."""
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
    json.dump(out, f, indent=1)
  with open(os.path.join(out_dir, f"{name}{md}"), "w") as f:
    f.write(text)
  print(text, flush=True)
