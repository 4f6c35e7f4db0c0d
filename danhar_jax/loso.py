r"""Leave-one-subject-out: one fold per subject, each a full run in `<workdir>/subject_<id>/`.

  python main.py --config=configs/wisdm2019.py --workdir=runs/loso --mode=loso \
      --config.manual_dir=/path/to/wisdm_2019 [--loso_subjects=1600,1601]
  python -m danhar_jax.loso --config=... --workdir=...       # the same

Fold s trains on every other subject and tests on s (`config.test_subjects`). A fold resumes
from its own checkpoint, and a finished fold is not run again, so the whole run resumes fold by
fold. The table (loso.csv, loso.md: windows, accuracy and macro-F1 per subject, then mean ± std
over the subjects that have windows) and loso.png go to the workdir. A requested subject with no
windows in the dataset is listed in the table as such and left out of the mean.
"""

from __future__ import annotations

import csv
import io
import logging
import os

import ml_collections
import numpy as np

from danhar_jax import input_pipeline
from danhar_jax import train
from danhar_jax import writers as writers_lib


def dataset_subjects(config) -> dict[int, int]:
  """{subject: windows} over both splits of the prepared dataset (built if missing)."""
  b = input_pipeline.prepare(config)
  counts: dict[int, int] = {}
  for split in ("train", "test"):
    source = b.as_data_source(split=split)
    subjects = input_pipeline.read_records(source, np.arange(len(source)),
                                           features=("subject",))["subject"]
    for s, n in zip(*np.unique(subjects, return_counts=True)):
      counts[int(s)] = counts.get(int(s), 0) + int(n)
  return dict(sorted(counts.items()))


def fold_config(config, subject: int) -> ml_collections.ConfigDict:
  fold = ml_collections.ConfigDict(config.to_dict())
  fold.test_subjects = str(subject)
  return fold


def fold_result(workdir: str, total_steps: int | None = None) -> dict | None:
  """The fold's last evaluation, if it finished (reached its last step)."""
  records = writers_lib.read_eval_metrics(workdir)
  if not records or (total_steps is not None and records[-1]["step"] < total_steps):
    return None
  return records[-1]


def run(config, workdir: str, subjects: list[str] | None = None) -> str:
  """Runs (or resumes) every fold; writes and returns the Markdown table."""
  if not workdir:
    raise ValueError("--mode=loso needs --workdir (one sub-workdir per subject goes there).")
  if config.test_subjects:
    raise ValueError("--mode=loso chooses config.test_subjects itself, one subject per fold; "
                     f"leave it empty (it is {config.test_subjects!r}).")
  counts = dataset_subjects(config)
  try:
    wanted = [int(s) for s in subjects] if subjects else list(counts)
  except ValueError:
    raise ValueError(f"--loso_subjects={','.join(subjects)} must be integers.") from None
  empty = [s for s in wanted if not counts.get(s)]
  for s in empty:
    logging.warning("LOSO: subject %d has no windows in %s; reported, not trained.", s,
                    config.dataset)
  rows = []
  for i, s in enumerate(wanted):
    if s in empty:
      rows.append({"subject": s, "windows": 0, "accuracy": None, "macro_f1": None,
                   "note": "no windows"})
      continue
    fold_dir = os.path.join(workdir, f"subject_{s}")
    done = fold_result(fold_dir, planned_steps(config, sum(counts.values()) - counts[s]))
    if done is None:
      logging.info("LOSO fold %d/%d: test subject %d (%d windows), workdir %s.", i + 1,
                   len(wanted), s, counts[s], fold_dir)
      train.train_and_evaluate(fold_config(config, s), fold_dir)
      done = fold_result(fold_dir)
    else:
      logging.info("LOSO fold %d/%d: subject %d finished already.", i + 1, len(wanted), s)
    rows.append({"subject": s, "windows": int(sum(map(sum, done["confusion"]))),
                 "accuracy": done["accuracy"], "macro_f1": done["macro_f1"], "note": ""})
  return write_table(rows, workdir, config)


def planned_steps(config, train_windows: int) -> int:
  """The fold's total steps, as train.Trainer computes them from its train split's size."""
  return config.num_epochs * train.epoch_steps(config, train_windows)


def summary(rows: list[dict]) -> dict:
  scored = [r for r in rows if r["accuracy"] is not None]
  out = {}
  for k in ("accuracy", "macro_f1"):
    values = np.array([r[k] for r in scored], np.float64)
    out[k] = ((float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
              if len(values) else (float("nan"), float("nan")))
  out["windows"] = sum(r["windows"] for r in scored)
  out["subjects"] = len(scored)
  return out


def write_table(rows: list[dict], workdir: str, config) -> str:
  """loso.csv, loso.md and loso.png in `workdir`; returns the Markdown."""
  s = summary(rows)
  fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(["subject", "windows", "accuracy", "macro_f1", "note"])
  for r in rows:
    w.writerow([r["subject"], r["windows"], fmt(r["accuracy"]), fmt(r["macro_f1"]), r["note"]])
  w.writerow(["mean", s["windows"], fmt(s["accuracy"][0]), fmt(s["macro_f1"][0]),
              f"over {s['subjects']} subjects"])
  w.writerow(["std", "", fmt(s["accuracy"][1]), fmt(s["macro_f1"][1]), "sample std (ddof=1)"])
  md = [f"Leave-one-subject-out, {config.dataset}, {config.model.backbone}/"
        f"{config.model.attention}, {config.num_epochs} epochs:", "",
        "| subject | windows | accuracy | macro-F1 |", "|---:|---:|---:|---:|"]
  for r in rows:
    if r["accuracy"] is None:
      md.append(f"| {r['subject']} | 0 | {r['note']} | |")
    else:
      md.append(f"| {r['subject']} | {r['windows']} | {r['accuracy']:.4f} | "
                f"{r['macro_f1']:.4f} |")
  md.append(f"| mean ± std ({s['subjects']} subjects) | {s['windows']} | "
            f"{s['accuracy'][0]:.4f} ± {s['accuracy'][1]:.4f} | "
            f"{s['macro_f1'][0]:.4f} ± {s['macro_f1'][1]:.4f} |")
  text = "\n".join(md) + "\n"
  for name, content in (("loso.csv", buf.getvalue()), ("loso.md", text)):
    with open(os.path.join(workdir, name), "w") as f:
      f.write(content)
  figure(rows, s, os.path.join(workdir, "loso.png"))
  return text


def figure(rows: list[dict], s: dict, path: str) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(rows) + 2), 3.2))
  x = np.arange(len(rows))
  acc = [r["accuracy"] if r["accuracy"] is not None else 0 for r in rows]
  f1 = [r["macro_f1"] if r["macro_f1"] is not None else 0 for r in rows]
  ax.bar(x - 0.2, acc, 0.4, label="accuracy")
  ax.bar(x + 0.2, f1, 0.4, label="macro-F1")
  for i, r in enumerate(rows):
    if r["accuracy"] is None:
      ax.text(i, 0.02, "no windows", rotation=90, ha="center", va="bottom", fontsize=7)
  ax.axhline(s["accuracy"][0], color="C0", ls="--", lw=1)
  ax.set_xticks(x, [str(r["subject"]) for r in rows], rotation=45, fontsize=7)
  ax.set_ylim(0, 1)
  ax.set_xlabel("test subject")
  ax.set_title(f"LOSO: accuracy {s['accuracy'][0]:.3f} ± {s['accuracy'][1]:.3f}", fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  print(run(flags.FLAGS.config, flags.FLAGS.workdir, flags.FLAGS.loso_subjects))


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top,g-multiple-import
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file("config", None, "A configs/<dataset>.py file[:args].")
  flags.DEFINE_string("workdir", None, "Where the folds and the table go.")
  flags.DEFINE_list("loso_subjects", [], "The subjects to hold out (default: all).")
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(_main)
