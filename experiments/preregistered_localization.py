r"""The pre-registered block-1 localisation test on `weakly/wisdm2019`: verdict, table and figure.

The rule, seeds and threshold are fixed in results/preregistered_localization.md (committed before
any of its runs). This script only reads the runs and applies that rule:

  python main.py --config=configs/weakly.py:danhar --workdir=<runs_dir>/seed<S> \
      --config.manual_dir=<wisdm_2019 folder> --config.test_subjects=1608,1609,1610,1611 \
      --config.seed=<S> --config.num_epochs=10                        # S = 3, 4, 5
  python -m experiments.preregistered_localization --runs_dir=<runs_dir> \
      --manual_dir=<wisdm_2019 folder> --wall_minutes=3=13.0,4=...,5=...

It writes `<out_dir>/<name>.json`, `<name>.png` (block-1 pointing per seed beside the baselines)
and `<name>_results.md`, the text that goes under "## Results" in the registration file.
The primary measure is `loc_pointing_block1` of the last evaluation; everything else is exploratory.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import numpy as np

if not __package__:  # run as a file, the packages are not importable
  sys.exit("run it from the repository root as: python -m experiments.preregistered_localization")

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The registration's numbers: success iff every seed's block-1 pointing >= THRESHOLD.
RANDOM_BOX = 0.220
THRESHOLD = 0.420
SEEDS = (3, 4, 5)
EDGE_SAMPLE, EDGE_HALF_WIDTH = 965, 32  # the last block's peak seen in the seed-0 run
EXPLORATORY = ("loc_pointing_block2", "loc_pointing_block3", "loc_pointing_blocks",
               "loc_iou_block1", "loc_iou_block2", "loc_iou_block3", "loc_iou_blocks",
               "accuracy", "macro_f1")


def verdict(pointing: dict[int, float], chance: float = RANDOM_BOX,
            threshold: float = THRESHOLD) -> tuple[str, str]:
  """(SUCCESS | FAILURE, one sentence) by the registered rule; `pointing` is {seed: score}."""
  below = {s: p for s, p in pointing.items() if p < threshold}
  at_chance = {s: p for s, p in pointing.items() if p <= chance}
  scores = ", ".join(f"seed {s} {p:.3f}" for s, p in sorted(pointing.items()))
  if not below:
    return "SUCCESS", (f"every seed's block-1 pointing is at least {threshold:.3f} ({scores}): "
                       "the registered test succeeds.")
  if not at_chance:
    return "FAILURE", (f"every seed is above the random-box baseline {chance:.3f}, but seed(s) "
                       f"{', '.join(map(str, sorted(below)))} fall below the registered "
                       f"threshold {threshold:.3f} ({scores}): above chance, below the "
                       "registered threshold, a failure of the registered test.")
  return "FAILURE", (f"seed(s) {', '.join(map(str, sorted(at_chance)))} are not above the "
                     f"random-box baseline {chance:.3f} ({scores}): the block-1 hypothesis "
                     "fails.")


def edge_shares(peaks: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> dict[str, float]:
  """Share of peaks within ±EDGE_HALF_WIDTH of EDGE_SAMPLE, overall and where no segment is."""
  lo, hi = EDGE_SAMPLE - EDGE_HALF_WIDTH, EDGE_SAMPLE + EDGE_HALF_WIDTH
  near = (peaks >= lo) & (peaks <= hi)
  clear = (np.asarray(ends) <= lo) | (np.asarray(starts) > hi)  # segment misses the band
  return {"near_all": float(near.mean()), "near_where_no_segment":
          float(near[clear].mean()) if clear.any() else float("nan"),
          "windows_no_segment": int(clear.sum()), "windows": int(len(peaks)),
          "median_peak": float(np.median(peaks))}


def last_record(workdir: str) -> dict | None:
  from danhar_jax import writers  # pylint: disable=g-import-not-at-top
  records = writers.read_eval_metrics(workdir)
  return records[-1] if records else None


def block3_peaks(config, workdir: str, test: dict) -> np.ndarray:
  """Per test window, the peak sample of the last checkpoint's block-3 map (the 'last' rule)."""
  from danhar_jax import localization, train  # pylint: disable=g-import-not-at-top
  state, _ = train.restore_state(config, workdir)
  mapped = localization.temporal_attention(state, test["signal"], config, rule="block3")
  return localization.peaks(mapped)


def figure(path: str, per_seed: dict, baselines: dict) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  seeds = sorted(per_seed)
  fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
  width, x = 0.2, np.arange(len(seeds))
  bars = (("loc_pointing_block1", "block 1 (registered)", "tab:red", 1.0),
          ("loc_pointing_block2", "block 2 (exploratory)", "tab:orange", 0.5),
          ("loc_pointing_block3", "block 3 (exploratory)", "tab:blue", 0.5),
          ("loc_pointing_blocks", "mean of blocks (exploratory)", "tab:purple", 0.5))
  for i, (key, label, color, alpha) in enumerate(bars):
    ax.bar(x + (i - 1.5) * width, [per_seed[s][key] for s in seeds], width, label=label,
           color=color, alpha=alpha)
  for xi, s in zip(x, seeds):  # a score near zero has no visible bar: print every block-1 value
    v = per_seed[s]["loc_pointing_block1"]
    ax.text(xi - 1.5 * width, v + 0.01, f"{v:.3f}", ha="center", fontsize=7)
  ax.axhline(THRESHOLD, color="black", ls="--", lw=1, label=f"registered threshold {THRESHOLD}")
  ax.axhline(baselines["random"], color="gray", ls=":", lw=1.2,
             label=f"random true-length box {baselines['random']:.3f}")
  ax.axhline(baselines["uniform"], color="gray", ls="-.", lw=1,
             label=f"uniform attention {baselines['uniform']:.3f}")
  ax.set_xticks(x, [f"seed {s}" for s in seeds])
  ax.set_ylim(0, 1)
  ax.set_ylabel("pointing (share of 1,024 test windows)")
  ax.set_title("weakly/wisdm2019, DanHAR after 10 epochs: temporal-attention pointing")
  ax.legend(fontsize=7, loc="upper right", ncol=2)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def markdown(out: dict, png_name: str) -> str:
  rows = out["per_seed"]
  seeds = sorted(rows, key=int)
  lines = [
      f"**Verdict: {out['verdict']}.** By the registered rule, {out['verdict_text']}", "",
      "Conditions: " + out["conditions"], "",
      "```", *out["commands"], "```", "",
      "| seed | block-1 pointing (registered) | ≥ 0.420 | wall min |", "|---|---|---|---|"]
  for s in seeds:
    r = rows[s]
    wall = out["wall_minutes"].get(s)
    lines.append(f"| {s} | {r['loc_pointing_block1']:.3f} | "
                 f"{'yes' if r['loc_pointing_block1'] >= THRESHOLD else 'NO'} | "
                 f"{wall if wall is not None else '–'} |")
  b = out["baselines"]
  lines += ["", f"Chance: random true-length box {b['random']:.3f}, uniform attention "
            f"{b['uniform']:.3f} (exact, from the segments).", "",
            f"![block-1 pointing per seed beside the baselines]({png_name})", "",
            "### Exploratory (decides nothing)", "",
            "| seed | pointing block 2 | block 3 | mean of blocks | IoU block 1 | block 2 | "
            "block 3 | mean of blocks | accuracy % | macro-F1 % |", "|---" * 10 + "|"]
  for s in seeds:
    r = rows[s]
    lines.append(
        f"| {s} | {r['loc_pointing_block2']:.3f} | {r['loc_pointing_block3']:.3f} | "
        f"{r['loc_pointing_blocks']:.3f} | {r['loc_iou_block1']:.3f} | {r['loc_iou_block2']:.3f} "
        f"| {r['loc_iou_block3']:.3f} | {r['loc_iou_blocks']:.3f} | {100 * r['accuracy']:.2f} | "
        f"{100 * r['macro_f1']:.2f} |")
  if out.get("edge"):
    lines += ["", f"**Last-block edge effect** (block-3 peak within ±{EDGE_HALF_WIDTH} samples "
              f"of sample {EDGE_SAMPLE}):", "",
              "| seed | median block-3 peak | share of all windows | share of windows whose "
              "segment misses the band (n) |", "|---|---|---|---|"]
    for s in seeds:
      e = out["edge"][s]
      lines.append(f"| {s} | {e['median_peak']:.0f} | {e['near_all']:.3f} | "
                   f"{e['near_where_no_segment']:.3f} ({e['windows_no_segment']}) |")
  lines += ["", *out["edge_findings"]]
  return "\n".join(lines) + "\n"


def edge_findings(edge: dict) -> list[str]:
  if not edge:
    return []
  shares = [e["near_all"] for e in edge.values()]
  if max(shares) < 0.5:
    return [f"The seed-0 pattern (block-3 peak near sample {EDGE_SAMPLE} in almost every window) "
            f"does not recur: at most {max(shares):.1%} of windows per seed. The edge-effect "
            "explanation is not supported on these seeds."]
  return [f"The block-3 peak sits within ±{EDGE_HALF_WIDTH} samples of {EDGE_SAMPLE} in "
          f"{min(shares):.1%}–{max(shares):.1%} of windows, also where no segment is near: "
          "consistent with an edge effect of the coarsest map."]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--runs_dir", required=True, help="holds seed<S>/ workdirs")
  p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
  p.add_argument("--manual_dir", default=str(ROOT.parent / "shared" / "data" / "wisdm_2019"))
  p.add_argument("--data_dir", default="", help="TFDS data_dir of the runs")
  p.add_argument("--test_subjects", default="1608,1609,1610,1611")
  p.add_argument("--wall_minutes", default="", help="seed=minutes,... from the run logs")
  p.add_argument("--conditions", default="", help="the machine and software, in words")
  p.add_argument("--no_edge", action="store_true", help="skip the exploratory edge check")
  p.add_argument("--out_dir", default=str(ROOT / "results"))
  p.add_argument("--name", default="preregistered_localization")
  args = p.parse_args(argv)
  os.environ.setdefault("DANHAR_OFFLINE", "1")
  from configs import weakly  # pylint: disable=g-import-not-at-top
  from danhar_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  walls = dict(kv.split("=") for kv in args.wall_minutes.split(",") if kv.strip())
  per_seed, edge, test = {}, {}, None
  for seed in seeds:
    workdir = os.path.join(args.runs_dir, f"seed{seed}")
    record = last_record(workdir)
    if record is None or record.get("epoch") != 10:
      raise SystemExit(f"{workdir}: no epoch-10 evaluation in eval_metrics.jsonl (last: "
                       f"{record and record.get('epoch')}); the registered rule needs it.")
    per_seed[str(seed)] = {k: float(record[k]) for k in
                           ("loc_pointing_block1", *EXPLORATORY, "loc_pointing_random",
                            "loc_pointing_uniform")}
    if not args.no_edge:
      config = weakly.get_config("danhar")
      config.manual_dir, config.test_subjects, config.seed = (args.manual_dir,
                                                              args.test_subjects, seed)
      if args.data_dir:
        config.data_dir = args.data_dir
      if test is None:
        test, _ = input_pipeline.load_test(config)
      print(f"Block-3 peaks of seed {seed} ...", flush=True)
      edge[str(seed)] = edge_shares(block3_peaks(config, workdir, test),
                                    np.asarray(test["segment_start"]),
                                    np.asarray(test["segment_end"]))
  first = next(iter(per_seed.values()))
  baselines = {"random": first["loc_pointing_random"], "uniform": first["loc_pointing_uniform"]}
  word, text = verdict({int(s): r["loc_pointing_block1"] for s, r in per_seed.items()},
                       chance=RANDOM_BOX)
  commands = [
      "python main.py --config=configs/weakly.py:danhar --workdir=runs/prereg/seed<S> \\",
      "    --config.manual_dir=<wisdm_2019 folder> --config.test_subjects="
      f"{args.test_subjects} \\", "    --config.seed=<S> --config.num_epochs=10   # S = "
      + ", ".join(map(str, seeds)),
      "python -m experiments.preregistered_localization --runs_dir=runs/prereg "
      "--manual_dir=<wisdm_2019 folder>"]
  out = {"verdict": word, "verdict_text": text, "threshold": THRESHOLD,
         "random_box": RANDOM_BOX, "baselines": baselines, "per_seed": per_seed, "edge": edge,
         "edge_findings": edge_findings(edge), "wall_minutes": walls,
         "conditions": args.conditions, "commands": commands}
  os.makedirs(args.out_dir, exist_ok=True)
  png = os.path.join(args.out_dir, f"{args.name}.png")
  figure(png, {int(s): r for s, r in per_seed.items()}, baselines)
  with open(os.path.join(args.out_dir, f"{args.name}.json"), "w") as f:
    json.dump(out, f, indent=1)
  text_md = markdown(out, os.path.basename(png))
  with open(os.path.join(args.out_dir, f"{args.name}_results.md"), "w") as f:
    f.write(text_md)
  print(text_md, flush=True)


if __name__ == "__main__":
  main()
