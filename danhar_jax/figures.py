"""The paper's figures from a workdir: attention (Figs. 10, 12), confusion (13), curves (2-5, 8).

  make_all(config, workdir, baseline_workdir=None, compare_workdirs=())  ->  [PNG paths]

writes into `<workdir>/figures/`:

* `temporal_attention.png` (Fig. 10): a few test windows, one per class, their signal and the
  temporal attention of every block mapped onto input time (`localization`), with the true
  segment shaded when the dataset has one (the weakly dataset).
* `sensor_attention.png` (Fig. 12): the temporal-attention mask averaged over time per sensor
  column and over the test windows of each true activity: a heat map of activity x sensor per
  block. (The authors' Fig. 12 script plots a channel-attention-weighted feature map of one
  sample; the mask's sensor columns are the per-sensor
  quantity the model actually has, so this is what we average.)
* `confusion.png` (Fig. 13): the last evaluation's confusion matrix of this run, and of the
  baseline run (e.g. the ResNet) beside it when `baseline_workdir` is given; rows normalised to
  recall, counts in the cells.
* `test_error.png` (Figs. 2-5, 8): test error (1 - accuracy) per epoch of this run and of every
  run in `compare_workdirs` (and the baseline), with the training error dashed.

Attention figures need a checkpoint and a model with temporal attention; the others need only
`eval_metrics.jsonl`. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import ticker  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from danhar_jax import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from danhar_jax import localization  # pylint: disable=g-import-not-at-top,wrong-import-position
from danhar_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from danhar_jax import writers  # pylint: disable=g-import-not-at-top,wrong-import-position

# Sensor columns of each dataset's windows, in order.
SENSOR_NAMES = {
    "wisdm": ("acc_x", "acc_y", "acc_z"),
    "wisdm2019": ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"),
    "unimib_shar": ("acc_x", "acc_y", "acc_z"),
    "weakly/wisdm2019": ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"),
    "weakly/wisdm2019_2048": ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"),
    "weakly/wisdm": ("acc_x", "acc_y", "acc_z"),
}
SENSOR_NAMES["weakly"] = SENSOR_NAMES["weakly/wisdm2019"]  # the default builder config
# The paper's names for the model variants (config.model.backbone, config.model.attention).
VARIANT_NAMES = {
    ("resnet", "channel_temporal"): "DanHAR", ("resnet", "none"): "ResNet",
    ("cnn", "none"): "CNN", ("cnn", "channel_temporal"): "Att-CNN",
    ("resnet", "channel"): "ResNet + channel", ("resnet", "temporal"): "ResNet + temporal",
    ("resnet", "temporal_channel"): "ResNet + temporal→channel",
}
DPI = 110


def sensor_names(config, num_sensors: int) -> list[str]:
  """The dataset's sensor column names, or s0, s1, ... when unknown or not matching."""
  names = SENSOR_NAMES.get(config.dataset) or SENSOR_NAMES.get(config.dataset.split("/")[0])
  if names is None or len(names) != num_sensors:
    return [f"s{i}" for i in range(num_sensors)]
  return list(names)


def run_label(workdir: str, default: str | None = None) -> str:
  """The variant a workdir trained (read from its latest checkpoint's config), else its name."""
  folder = os.path.join(workdir, "checkpoints")
  steps = sorted((int(s) for s in os.listdir(folder) if s.isdigit()), reverse=True) if (
      os.path.isdir(folder)) else []
  for step in steps:
    try:
      with open(os.path.join(folder, str(step), "config", "metadata")) as f:
        model = json.load(f)["model"]
      return VARIANT_NAMES.get((model["backbone"], model["attention"]), model["attention"])
    except (OSError, ValueError, KeyError):
      continue
  return default or os.path.basename(os.path.normpath(workdir))


def _save(fig, path: str) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=DPI, bbox_inches="tight")
  plt.close(fig)
  return path


# ---------------------------------------------------------------------------------------------
# Fig. 10: temporal attention over the signal.


def plot_temporal_attention(path: str, signals: np.ndarray, attention: dict[str, np.ndarray],
                            labels: np.ndarray, predictions: np.ndarray,
                            class_names: Sequence[str], sensors: Sequence[str],
                            segments: tuple[np.ndarray, np.ndarray] | None = None,
                            title: str = "") -> str:
  """One row per window: the signal (left axis) and each block's attention (right axis).

  `attention` maps 'block<k>' to `[N, T]` time-mapped masks; the last block is drawn thickest.
  """
  n, t = signals.shape[:2]
  blocks = localization.block_names(attention)
  fig, axes = plt.subplots(n, 1, figsize=(12, 2.6 * n + 0.8), squeeze=False,
                           layout="constrained")
  colours = plt.cm.viridis(np.linspace(0.15, 0.85, max(len(blocks), 1)))
  for i, ax in enumerate(axes[:, 0]):
    for s, name in enumerate(sensors):
      ax.plot(signals[i, :, s], lw=0.5, alpha=0.5, label=name)  # faint: attention on top
    if segments is not None:
      ax.axvspan(segments[0][i], segments[1][i], color="tab:red", alpha=0.15,
                 label="true segment")
    ax.set_xlim(0, t - 1)
    ax.set_ylabel("signal")
    twin = ax.twinx()
    for b, colour in zip(blocks, colours):
      last = b == blocks[-1]
      twin.plot(attention[b][i], color="black" if last else colour, lw=1.8 if last else 1.0,
                label=f"attention, {b}" + (" (scored)" if last else ""))
    twin.set_ylabel("temporal attention")
    heading = f"true: {class_names[labels[i]]}, predicted: {class_names[predictions[i]]}"
    if segments is not None:
      peak = localization.peaks(attention[blocks[-1]][i:i + 1])[0]
      hit = segments[0][i] <= peak < segments[1][i]
      heading += f"; peak at {peak} ({'inside' if hit else 'outside'} the segment)"
    ax.set_title(heading, fontsize=10)
    if i == 0:
      legend = [sum(pair, []) for pair in zip(ax.get_legend_handles_labels(),
                                              twin.get_legend_handles_labels())]
  axes[-1, 0].set_xlabel("time (input samples)")
  # One legend for all rows above the first, carrying the title (constrained layout places a
  # suptitle and an outside legend on top of each other).
  fig.legend(*legend, loc="outside upper center", ncol=min(5, len(legend[1])), fontsize=8,
             frameon=False, title=title or None, title_fontsize=11)
  return _save(fig, path)


def example_windows(labels: np.ndarray, num_windows: int) -> np.ndarray:
  """Indices of up to `num_windows` test windows: the first of each class in turn."""
  chosen = []
  classes = np.unique(labels)
  for rank in range(len(labels)):
    for c in classes:
      idx = np.flatnonzero(labels == c)
      if rank < len(idx) and len(chosen) < num_windows:
        chosen.append(int(idx[rank]))
    if len(chosen) >= num_windows:
      break
  return np.array(chosen, np.int64)


# ---------------------------------------------------------------------------------------------
# Fig. 12: attention per sensor and activity.


def sensor_attention(masks: dict[str, np.ndarray], labels: np.ndarray,
                     num_classes: int) -> dict[str, np.ndarray]:
  """Per block, `[K, S]`: each mask `[N, T_k, S]` averaged over time and over each class's windows.

  Classes with no test window are NaN.
  """
  out = {}
  for block, mask in masks.items():
    per_window = np.asarray(mask, np.float64).mean(axis=1)  # [N, S]
    out[block] = np.stack([per_window[labels == c].mean(axis=0) if (labels == c).any()
                           else np.full(per_window.shape[1], np.nan)
                           for c in range(num_classes)])
  return out


def plot_sensor_attention(path: str, per_class: dict[str, np.ndarray],
                          class_names: Sequence[str], sensors: Sequence[str],
                          title: str = "") -> str:
  """Heat maps activity x sensor, one per block, each with its own colour scale."""
  blocks = localization.block_names(per_class)
  k, s = len(class_names), len(sensors)
  width = max(3.2, 0.55 * s + 1.8)
  height = max(2.8, 1.0 + 0.34 * k)
  fig, axes = plt.subplots(1, len(blocks), figsize=(width * len(blocks), height), squeeze=False)
  for ax, block in zip(axes[0], blocks):
    values = per_class[block]
    image = ax.imshow(values, aspect="auto", cmap="magma")
    ax.set_xticks(range(s), sensors, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names if ax is axes[0, 0] else [""] * k, fontsize=8)
    ax.set_xlabel("sensor")
    ax.set_title(f"{block}: mean temporal attention", fontsize=9)
    if k * s <= 150:  # readable: write each value in its cell
      mid = np.nanmean(values)
      digits = 3 if np.nanmax(values) - np.nanmin(values) < 0.05 else 2
      for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
          ax.text(c, r, f"{v:.{digits}f}", ha="center", va="center", fontsize=6,
                  color="black" if v > mid else "white")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
  axes[0, 0].set_ylabel("activity (true class)")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Fig. 13: confusion matrices.


def plot_confusions(path: str, confusions: Sequence[tuple[str, np.ndarray]],
                    class_names: Sequence[str]) -> str:
  """Side by side, rows (true classes) normalised to recall; counts written in the cells."""
  k = len(class_names)
  side = max(3.5, 0.42 * k + 2.0)
  fig, axes = plt.subplots(1, len(confusions), figsize=(side * len(confusions) + 0.8, side),
                           squeeze=False)
  for ax, (title, cm) in zip(axes[0], confusions):
    cm = np.asarray(cm, np.float64)
    recall = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    image = ax.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=8)
    first = ax is axes[0, 0]
    ax.set_yticks(range(k), class_names if first else [""] * k, fontsize=8)
    ax.set_xlabel("predicted")
    if first:
      ax.set_ylabel("true")
    accuracy = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title}\naccuracy {accuracy:.3f} on {int(cm.sum())} windows", fontsize=10)
    for (r, c), v in np.ndenumerate(cm):
      if v:
        ax.text(c, r, f"{int(v)}", ha="center", va="center", fontsize=max(4, 9 - k // 4),
                color="white" if recall[r, c] > 0.5 else "black")
  fig.colorbar(image, ax=list(axes[0]), fraction=0.03, pad=0.02, label="recall (row share)")
  return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Figs. 2-5, 8: test error per epoch.


def plot_error_curves(path: str, runs: Sequence[tuple[str, list[dict]]], title: str = "") -> str:
  """Test error (solid) and training error (dashed, when logged) per epoch, one colour per run."""
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for (label, records), colour in zip(runs, plt.cm.tab10.colors * 3):
    if not records:
      continue
    epochs = [r["epoch"] for r in records]
    ax.plot(epochs, [1 - r["accuracy"] for r in records], color=colour, lw=1.6, marker="o",
            ms=3 if len(epochs) < 60 else 0, label=f"{label} (test)")
    if all("train_accuracy" in r for r in records):
      ax.plot(epochs, [1 - r["train_accuracy"] for r in records], color=colour, lw=1.0,
              ls="--", alpha=0.8, label=f"{label} (train)")
  ax.set_xlabel("epoch")
  ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
  ax.set_ylabel("error (1 - accuracy)")
  ax.set_ylim(bottom=0)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(title or "Test error per epoch", fontsize=10)
  fig.tight_layout()
  return _save(fig, path)


# ---------------------------------------------------------------------------------------------
# Everything for one workdir.


def make_all(config, workdir: str, baseline_workdir: str | None = None,
             compare_workdirs: Sequence[str] = (), num_windows: int = 4,
             batch_size: int = 256) -> list[str]:
  """Writes every figure the workdir (and the optional other runs) allows; returns the PNG paths.

  `config` is the run's config (the dataset and model of `workdir`). `baseline_workdir` adds a
  second confusion matrix (Fig. 13) and a curve; `compare_workdirs` add curves.
  """
  out_dir = os.path.join(workdir, "figures")
  label = run_label(workdir, "this run")
  records = writers.read_eval_metrics(workdir)
  paths = []
  test, class_names = input_pipeline.load_test(config)
  name = config.dataset

  if os.path.isdir(os.path.join(workdir, "checkpoints")):
    state, step = train.restore_state(config, workdir)
    logits, maps = localization.attention(state, test["signal"], batch_size=batch_size)
    mapped = localization.time_mapped(maps, config, test["signal"].shape[1])
    if mapped:
      sensors = sensor_names(config, test["signal"].shape[2])
      segments = localization.test_segments(test)
      predictions = logits.argmax(axis=1)
      idx = example_windows(test["label"], num_windows)
      title = f"{label} on {name}, step {step}"
      if segments is not None:
        last = localization.block_names(mapped)[-1]
        scored = localization.scores(mapped[last], *segments)
        title += (f": pointing accuracy {scored['pointing']:.3f}, IoU {scored['iou']:.3f} "
                  f"over {len(test['label'])} test windows")
      paths.append(plot_temporal_attention(
          os.path.join(out_dir, "temporal_attention.png"), test["signal"][idx],
          {k: v[idx] for k, v in mapped.items()}, test["label"][idx], predictions[idx],
          class_names, sensors,
          None if segments is None else (segments[0][idx], segments[1][idx]), title))
      per_class = sensor_attention({b: m["mask"] for b, m in maps.items() if "mask" in m},
                                   test["label"], len(class_names))
      paths.append(plot_sensor_attention(
          os.path.join(out_dir, "sensor_attention.png"), per_class, class_names, sensors,
          f"{label} on {name}: temporal attention per sensor and activity (test set)"))

  confusions = []
  if records and "confusion" in records[-1]:
    confusions.append((f"{label}, epoch {records[-1]['epoch']}", records[-1]["confusion"]))
  baseline_records = writers.read_eval_metrics(baseline_workdir) if baseline_workdir else []
  if baseline_records and "confusion" in baseline_records[-1]:
    confusions.append((f"{run_label(baseline_workdir, 'baseline')}, epoch "
                       f"{baseline_records[-1]['epoch']}", baseline_records[-1]["confusion"]))
  if confusions:
    paths.append(plot_confusions(os.path.join(out_dir, "confusion.png"), confusions,
                                 class_names))

  runs = [(label, records)]
  if baseline_workdir:
    runs.append((run_label(baseline_workdir, "baseline"), baseline_records))
  runs += [(run_label(w), writers.read_eval_metrics(w)) for w in compare_workdirs]
  folders = [workdir, *([baseline_workdir] if baseline_workdir else []), *compare_workdirs]
  labels = [l for l, _ in runs]
  runs = [(l if labels.count(l) == 1 else f"{l} ({os.path.basename(os.path.normpath(w))})", r)
          for (l, r), w in zip(runs, folders)]  # several runs of one variant: name the folders
  if any(r for _, r in runs):
    paths.append(plot_error_curves(os.path.join(out_dir, "test_error.png"), runs,
                                   f"Error per epoch on {name}"))
  return paths
