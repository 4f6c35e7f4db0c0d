"""`--mode=predict`: a trained model on raw recordings, windowed exactly as its builder windows them.

Inputs, by the dataset the model was trained on (`config.dataset`):

- its own raw format, read by the builder's own functions (tfds_builders/): WISDM v1.1 lines,
  WISDM-2019 watch files (accelerometer and gyroscope of one subject: `--input=ACCEL,GYRO`),
  PAMAP2 `.dat`, OPPORTUNITY `.dat` (with its dataset's column_names.txt and label_legend.txt
  beside it), UniMiB `acc_data.mat` (optionally followed by its acc_labels.mat);
- a CSV with a header: a timestamp column (`timestamp` or `time` in seconds, `timestamp_ms`, or
  `timestamp_ns`) and the model's sensor channels by name (`CHANNELS`).

The output has one row per window: its file, start and end time (s), the predicted class in
`label`, the true class where the file has labels, and the probability of every class.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import sys
import time

import numpy as np

from tfds_builders import _common
from tfds_builders.opportunity import opportunity_dataset_builder as opportunity
from tfds_builders.pamap2 import pamap2_dataset_builder as pamap2
from tfds_builders.unimib_shar import unimib_shar_dataset_builder as unimib
from tfds_builders.wisdm import wisdm_dataset_builder as wisdm
from tfds_builders.wisdm2019 import wisdm2019_dataset_builder as wisdm2019


@dataclasses.dataclass(frozen=True)
class Spec:
  """What a model of one dataset expects from a recording."""
  raw_rate_hz: float  # the rate of the raw files (and of a CSV)
  rate_hz: float  # the rate of the model's windows (after the builder's resampling)
  channels: tuple[str, ...] | None  # CSV column names, in model order (None: from the files)
  window: int
  preprocessing: str


SPECS = {
    "wisdm": Spec(20, 20, ("x", "y", "z"), wisdm.WINDOW,
                  f"phone accelerometer (10 = 1 g) as recorded, {wisdm.WINDOW}-sample windows "
                  f"every {wisdm.STEP} samples; no normalisation"),
    "wisdm2019": Spec(20, 20, tuple(f"{s}_{a}" for s in wisdm2019.SENSORS for a in "xyz"),
                      wisdm2019.WINDOW,
                      "watch accelerometer (m/s^2) and gyroscope (rad/s) interpolated linearly "
                      "onto one 50 ms grid, never across a gap over 100 ms; "
                      f"{wisdm2019.WINDOW}-sample windows every {wisdm2019.STEP}; "
                      "no normalisation"),
    "pamap2": Spec(100, 100 / pamap2.DOWNSAMPLE, pamap2.CHANNELS, pamap2.WINDOW,
                   "heart rate held, IMU gaps interpolated linearly per channel; every 3rd "
                   f"sample (100 -> 33.3 Hz); {pamap2.WINDOW}-sample windows every "
                   f"{pamap2.STEP}; no normalisation"),
    "opportunity": Spec(30, 30, None, opportunity.WINDOW,
                        "113 body-worn channels chosen by name, NaN gaps interpolated "
                        "linearly, min-max normalised with DeepConvLSTM's fixed thresholds and "
                        f"clipped; {opportunity.WINDOW}-sample windows every "
                        f"{opportunity.STEP}"),
    "unimib_shar": Spec(50, 50, tuple(unimib.AXES), unimib.WINDOW,
                        "phone acceleration (m/s^2), 151-sample windows as released (a CSV is "
                        "cut into windows every 75 samples: the dataset has no stream "
                        "windowing); no normalisation"),
}
RATE_TOLERANCE = 0.10
TIME_COLUMNS = {"timestamp": 1.0, "time": 1.0, "timestamp_s": 1.0, "timestamp_ms": 1e-3,
                "timestamp_ns": 1e-9}


@dataclasses.dataclass
class Windows:
  signal: np.ndarray  # [n, time, channels] float32
  start_s: np.ndarray  # [n] float64
  end_s: np.ndarray  # [n]
  source: list[str]  # [n] the file each window came from
  true_class: np.ndarray | None = None  # [n] int, -1 where unknown

  def __len__(self) -> int:
    return len(self.signal)


def spec(dataset: str) -> Spec:
  name = dataset.partition("/")[0]
  if name not in SPECS:
    raise ValueError(f"--mode=predict reads recordings of {', '.join(SPECS)}; a model of "
                     f"config.dataset={dataset!r} has no raw recording format.")
  return SPECS[name]


def read_windows(dataset: str, paths: list[str]) -> Windows:
  """The windows of the recordings `paths` as the builder of `dataset` cuts them."""
  name, _, builder_config = dataset.partition("/")
  s = spec(dataset)
  if not paths:
    raise ValueError("--mode=predict needs --input=PATH[,PATH...].")
  for p in paths:
    if not os.path.isfile(p):
      raise FileNotFoundError(f"--input: {p}: no such file.")
  parts = []
  if all(p.lower().endswith(".csv") for p in paths):
    parts = [read_csv(name, builder_config, p) for p in paths]
  elif name == "wisdm2019":
    if len(paths) % 2:
      raise ValueError("WISDM-2019 recordings come in pairs: --input=ACCEL,GYRO[,ACCEL,GYRO...] "
                       f"(got {len(paths)} files).")
    parts = [read_wisdm2019(a, g) for a, g in zip(paths[::2], paths[1::2])]
  else:
    reader = {"wisdm": lambda p: read_wisdm(p, builder_config),
              "pamap2": read_pamap2,
              "opportunity": lambda p: read_opportunity(p, builder_config),
              "unimib_shar": None}[name]
    if reader is None:
      parts = [read_unimib(paths[0], paths[1] if len(paths) > 1 else None)]
    else:
      parts = [reader(p) for p in paths]
  windows = concatenate(parts)
  if not len(windows):
    raise ValueError(f"{', '.join(paths)}: no complete window of {s.window} samples "
                     f"({s.window / s.rate_hz:g} s at {s.rate_hz:g} Hz): the recording is too "
                     "short (or has gaps everywhere). Nothing was written.")
  return windows


def concatenate(parts: list[Windows]) -> Windows:
  parts = [p for p in parts if len(p)]
  if not parts:
    return Windows(np.zeros((0, 1, 1), np.float32), np.zeros(0), np.zeros(0), [])
  true = None
  if any(p.true_class is not None for p in parts):
    true = np.concatenate([p.true_class if p.true_class is not None else
                           np.full(len(p), -1) for p in parts])
  return Windows(np.concatenate([p.signal for p in parts]),
                 np.concatenate([p.start_s for p in parts]),
                 np.concatenate([p.end_s for p in parts]),
                 [s for p in parts for s in p.source], true)


def _cut(signal: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
  if not len(starts):
    return np.zeros((0, window, signal.shape[1]), np.float32)
  return np.stack([signal[s:s + window] for s in starts.tolist()]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Each dataset's own raw files, through its builder's functions.


def read_wisdm(path: str, builder_config: str) -> Windows:
  records = wisdm.parse_raw(path)
  starts = (wisdm.subject_run_windows(records) if builder_config == "subject_runs"
            else wisdm.authors_window_starts(len(records)))
  t = records.timestamp.astype(np.float64) / 1e9
  true = np.array([_common.majority(records.activity[s:s + wisdm.WINDOW])
                   for s in starts.tolist()], np.int64)
  return Windows(_cut(records.xyz, starts, wisdm.WINDOW), t[starts],
                 t[starts + wisdm.WINDOW - 1], [path] * len(starts), true)


def read_wisdm2019(accel: str, gyro: str) -> Windows:
  paths = {"accel": accel, "gyro": gyro}
  first = _common.Path(accel).read_bytes()[:64].split(b",", 1)[0]
  try:
    subject = int(first)
  except ValueError:
    raise _common.RawFormatError(accel, 1, f"subject {first[:20]!r} is not an integer") from None
  streams = {k: wisdm2019.parse_stream(p, subject) for k, p in paths.items()}
  letters = list(wisdm2019.ACTIVITIES)
  signal, start_s, end_s, true = [], [], [], []
  for letter, origin, run, starts in wisdm2019.activity_windows(streams, paths):
    signal.append(_cut(run, starts, wisdm2019.WINDOW))
    start_s.append((origin + starts * wisdm2019.PERIOD_NS) / 1e9)
    end_s.append((origin + (starts + wisdm2019.WINDOW - 1) * wisdm2019.PERIOD_NS) / 1e9)
    true.append(np.full(len(starts), letters.index(letter)))
  return Windows(np.concatenate(signal), np.concatenate(start_s), np.concatenate(end_s),
                 [accel] * sum(map(len, true)), np.concatenate(true))


def read_pamap2(path: str) -> Windows:
  table = pamap2.load_subject(path)
  rows = list(pamap2.subject_windows(table, path))
  if not rows:
    return Windows(np.zeros((0, pamap2.WINDOW, len(pamap2.CHANNELS)), np.float32),
                   np.zeros(0), np.zeros(0), [], np.zeros(0, np.int64))
  starts = np.array([r[0] for r in rows])
  return Windows(np.stack([r[2] for r in rows]), table[starts, 0],
                 table[starts + pamap2.DOWNSAMPLE * (pamap2.WINDOW - 1), 0], [path] * len(rows),
                 np.array([r[1] for r in rows]))


def read_opportunity(path: str, builder_config: str) -> Windows:
  protocol = opportunity.Protocol(os.path.dirname(os.path.abspath(path)))
  signal, classes, ms = protocol.load_run(path, with_time=True)
  config = {c.name: c for c in opportunity.Builder.BUILDER_CONFIGS}[builder_config or "challenge"]
  starts = _common.window_starts(len(signal), opportunity.WINDOW, opportunity.STEP)
  # Every window is predicted; the gestures17 builder drops those whose true label is Null.
  true = np.array([-1 if (c := config.label(int(classes[s + opportunity.WINDOW - 1]))) is None
                   else c for s in starts.tolist()], np.int64)
  return Windows(_cut(signal, starts, opportunity.WINDOW), ms[starts] / 1e3,
                 ms[starts + opportunity.WINDOW - 1] / 1e3, [path] * len(starts), true)


def read_unimib(data_path: str, labels_path: str | None) -> Windows:
  signal = unimib.load_windows(data_path)
  true = None
  if labels_path:
    labels = unimib.load_mat(labels_path, "acc_labels")
    if labels.ndim != 2 or len(labels) != len(signal):
      raise _common.RawFormatError(labels_path, None, f"acc_labels is {labels.shape}; "
                                   f"{data_path} has {len(signal)} windows")
    true = labels[:, 0].astype(np.int64) - 1
  # The windows are independent 3 s excerpts: their times count them back to back.
  length = unimib.WINDOW / 50
  start = np.arange(len(signal)) * length
  return Windows(signal, start, start + (unimib.WINDOW - 1) / 50, [data_path] * len(signal),
                 true)


# ---------------------------------------------------------------------------------------------
# CSV recordings: a timestamp column and the model's channels by name.


def read_csv(name: str, builder_config: str, path: str) -> Windows:
  s = SPECS[name]
  if s.channels is None:
    raise ValueError(f"{path}: a CSV cannot be read for an {name} model: its channels are "
                     "named by the dataset's column_names.txt. Give the run's .dat file with "
                     "column_names.txt and label_legend.txt beside it.")
  with open(path, newline="") as f:
    header = next(csv.reader(f), None)
  if not header:
    raise _common.RawFormatError(path, 1, "empty file: expected a header line")
  header = [h.strip() for h in header]
  time_column = next((h for h in header if h.lower() in TIME_COLUMNS), None)
  missing = [c for c in s.channels if c not in header]
  if time_column is None:
    missing = ["timestamp"] + missing
  if missing:
    raise ValueError(f"{path}: missing columns {', '.join(missing)}. A {name} model needs a "
                     f"timestamp column ({', '.join(TIME_COLUMNS)}) and {', '.join(s.channels)}; "
                     f"the header has {', '.join(header)}.")
  columns = [header.index(time_column)] + [header.index(c) for c in s.channels]
  table = _read_numbers(path, len(header), columns)
  t = table[:, 0] * TIME_COLUMNS[time_column.lower()]
  x = table[:, 1:]
  line = lambda row: int(row) + 2  # noqa: E731 -- row 0 is line 2, after the header
  if not len(x) or np.isnan(x).all():
    raise ValueError(f"{path}: {'no samples' if not len(x) else 'every value is NaN'}: nothing "
                     "to predict. Nothing was written.")
  if np.isnan(t).any():
    raise _common.RawFormatError(path, line(np.argmax(np.isnan(t))), "no timestamp")
  step = np.diff(t)
  if (step <= 0).any():
    row = int(np.argmax(step <= 0)) + 1
    raise _common.RawFormatError(path, line(row), f"timestamp {t[row]!r} does not increase "
                                 f"(the line before has {t[row - 1]!r})")
  x, t = _to_model_rate(name, path, t, x, line)
  if name == "wisdm2019":
    return _csv_wisdm2019(path, t, x, line)
  if name == "pamap2":
    empty = np.isnan(x).all(axis=0)
    if empty.any():
      raise ValueError(f"{path}: no value at all in column(s) "
                       f"{', '.join(np.asarray(s.channels)[empty])}. Nothing was written.")
    x = pamap2.fill_run(x)[::pamap2.DOWNSAMPLE]
    t = t[::pamap2.DOWNSAMPLE]
    starts = _common.window_starts(len(x), pamap2.WINDOW, pamap2.STEP)
  else:
    _common.check_finite(x, path, "the sensor columns", first_line=2)
    if name == "wisdm":
      starts = (_common.window_starts(len(x), wisdm.WINDOW, wisdm.STEP)
                if builder_config == "subject_runs" else wisdm.authors_window_starts(len(x)))
    else:  # unimib_shar: the released windows are cut around peaks; a stream gets 50% overlap
      starts = _common.window_starts(len(x), unimib.WINDOW, unimib.WINDOW // 2)
  return Windows(_cut(x, starts, s.window), t[starts], t[starts + s.window - 1] if len(starts)
                 else t[starts], [path] * len(starts))


def _read_numbers(path: str, num_fields: int, columns: list[int]) -> np.ndarray:
  """The CSV's `columns` as float64 [rows, len(columns)]; empty fields and NaN read as NaN."""
  import warnings  # pylint: disable=import-outside-toplevel
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      table = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=columns,
                            dtype=np.float64, invalid_raise=True, ndmin=2)
    raw = open(path, "rb").read().rstrip(b"\r\n ").count(b"\n")  # data lines after the header
    if table.shape[0] == raw and not np.isinf(table).any():
      return table.reshape(-1, len(columns))
  except ValueError:
    pass
  # The slow path names the first bad line.
  with open(path, newline="") as f:
    reader = csv.reader(f)
    next(reader)
    for lineno, fields in enumerate(reader, start=2):
      if len(fields) != num_fields:
        raise _common.RawFormatError(path, lineno, f"{len(fields)} fields, the header has "
                                     f"{num_fields}")
      for c in columns:
        value = fields[c].strip()
        try:
          v = float(value) if value else float("nan")
        except ValueError:
          raise _common.RawFormatError(path, lineno, f"column {c + 1}: {value[:30]!r} is not a "
                                       "number") from None
        if np.isinf(v):
          raise _common.RawFormatError(path, lineno, f"column {c + 1}: {value!r} is infinite")
  raise _common.RawFormatError(path, None, "not a numeric CSV (blank lines?)")


def _to_model_rate(name, path, t, x, line):
  """Checks the CSV's rate against the model's; more than 10% off is resampled, with a warning.

  WISDM-2019's builder puts every stream on its 20 Hz grid anyway, but never interpolates across
  a gap over 100 ms: a slower stream is an error naming the first such gap.
  """
  s = SPECS[name]
  if len(t) < 2:
    return x, t
  rate = 1 / float(np.median(np.diff(t)))
  if abs(rate / s.raw_rate_hz - 1) <= RATE_TOLERANCE:
    return x, t
  if name == "wisdm2019":
    if rate < s.raw_rate_hz:
      gap = np.diff(t) > wisdm2019.MAX_GAP_NS / 1e9
      row = int(np.argmax(gap)) + 1 if gap.any() else 1
      raise _common.RawFormatError(path, line(row), f"sample rate {rate:.3g} Hz is below the "
                                   f"model's {s.raw_rate_hz:g} Hz: gaps over "
                                   f"{wisdm2019.MAX_GAP_NS // 1_000_000} ms leave no window")
    logging.warning("%s: sample rate %.3g Hz, the model's is %g Hz; the builder's alignment "
                    "resamples it onto its 50 ms grid.", path, rate, s.raw_rate_hz)
    return x, t
  grid = t[0] + np.arange(int(np.floor((t[-1] - t[0]) * s.raw_rate_hz)) + 1) / s.raw_rate_hz
  resampled = np.stack([np.interp(grid, t, x[:, k]) for k in range(x.shape[1])], axis=1)
  logging.warning("%s: sample rate %.3g Hz is more than %d%% off the model's %g Hz: resampled "
                  "linearly to %g Hz (%d samples -> %d).", path, rate, RATE_TOLERANCE * 100,
                  s.raw_rate_hz, s.raw_rate_hz, len(t), len(grid))
  return resampled, grid


def _csv_wisdm2019(path, t, x, line) -> Windows:
  ns = np.round((t - t[0]) * 1e9).astype(np.int64)
  for k in (0, 3):
    _common.check_finite(x[:, k:k + 3], path, "the sensor columns", first_line=2)
  signal, valid = wisdm2019.align((ns, x[:, :3]), (ns, x[:, 3:]))
  starts = wisdm2019.segment_window_starts(valid)
  grid_s = t[0] + np.arange(len(signal)) * wisdm2019.PERIOD_NS / 1e9
  return Windows(_cut(signal, starts, wisdm2019.WINDOW), grid_s[starts],
                 grid_s[starts + wisdm2019.WINDOW - 1] if len(starts) else grid_s[starts],
                 [path] * len(starts))


# ---------------------------------------------------------------------------------------------
# The model, and what is written.


def probabilities(t, signal: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """Softmax probabilities [n, classes], `batch_size` windows at a time, with progress."""
  import jax  # pylint: disable=import-outside-toplevel
  expected = tuple(t.config.input_shape)
  if signal.shape[1:] != expected:
    raise ValueError(f"The recording gives windows of {signal.shape[1:]} (time, channels); the "
                     f"model takes {expected}.")
  forward = t.forward()
  f = jax.jit(lambda x: jax.nn.softmax(forward(x).astype(np.float32), axis=-1))
  pad = not t.config.model.logit_standardization  # its logits depend on the whole batch
  out, n, started, last_log = [], len(signal), time.perf_counter(), 0.0
  for lo in range(0, n, batch_size):
    x = signal[lo:lo + batch_size]
    if pad and len(x) < batch_size:  # one compiled shape for every batch
      x = np.concatenate([x, np.zeros((batch_size - len(x), *x.shape[1:]), x.dtype)])
    out.append(np.asarray(f(x))[:min(batch_size, n - lo)])
    done, now = min(lo + batch_size, n), time.perf_counter()
    if n > batch_size and (now - last_log > 5 or done == n):
      last_log = now
      logging.info("predict: %d/%d windows (%.0f%%), %.0f windows/s", done, n, 100 * done / n,
                   done / max(now - started, 1e-9))
  return np.concatenate(out)


def segments(windows: Windows, labels: list[str]) -> list[dict]:
  """Runs of consecutive windows of one file with the same predicted label."""
  out = []
  for i, label in enumerate(labels):
    if out and out[-1]["label"] == label and out[-1]["file"] == windows.source[i]:
      seg = out[-1]
      seg["end_s"], seg["windows"] = float(windows.end_s[i]), seg["windows"] + 1
    else:
      out.append({"file": windows.source[i], "label": label,
                  "start_s": float(windows.start_s[i]), "end_s": float(windows.end_s[i]),
                  "windows": 1})
  for seg in out:
    seg["duration_s"] = round(seg["end_s"] - seg["start_s"], 3)
  return out


def table(windows: Windows, probs: np.ndarray, class_names: list[str]) -> str:
  """The per-window CSV."""
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  has_true = windows.true_class is not None
  w.writerow(["file", "start_s", "end_s", "label", *(["true_label"] if has_true else []),
              *(f"p_{c}" for c in class_names)])
  predicted = probs.argmax(1)
  for i in range(len(windows)):
    true = []
    if has_true:
      c = int(windows.true_class[i])
      true = [class_names[c] if c >= 0 else ""]
    w.writerow([windows.source[i], f"{windows.start_s[i]:.3f}", f"{windows.end_s[i]:.3f}",
                class_names[predicted[i]], *true, *(f"{p:.6f}" for p in probs[i])])
  return buf.getvalue()


def segments_table(segs: list[dict]) -> str:
  buf = io.StringIO()
  w = csv.DictWriter(buf, ["file", "label", "start_s", "end_s", "duration_s", "windows"],
                     lineterminator="\n")
  w.writeheader()
  for seg in segs:
    w.writerow({**seg, "start_s": f"{seg['start_s']:.3f}", "end_s": f"{seg['end_s']:.3f}"})
  return buf.getvalue()


def _write_atomically(path: str, text: str) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def run(t, inputs: list[str], output: str | None, batch_size: int = 256) -> dict:
  """Predicts every window of `inputs`; writes the CSV (and FILE.segments.csv) or prints it.

  Everything is computed before anything is written, so an error writes nothing.
  """
  windows = read_windows(t.config.dataset, inputs)
  logging.info("predict: %d windows of %s from %s (model: %s).", len(windows),
               windows.signal.shape[1:], ", ".join(inputs), t.source)
  probs = probabilities(t, windows.signal, batch_size)
  labels = [t.class_names[i] for i in probs.argmax(1)]
  segs = segments(windows, labels)
  text = table(windows, probs, t.class_names)
  for seg in segs:
    logging.info("segment: %s %.1f-%.1f s (%.1f s, %d windows) %s", seg["label"], seg["start_s"],
                 seg["end_s"], seg["duration_s"], seg["windows"], os.path.basename(seg["file"]))
  if output:
    if output.lower().endswith(".csv"):
      segments_path = output[:-4] + ".segments.csv"
    else:
      segments_path = output + ".segments.csv"
    _write_atomically(output, text)
    _write_atomically(segments_path, segments_table(segs))
    logging.info("predict: wrote %s and %s.", output, segments_path)
  else:
    sys.stdout.write(text)
  return {"windows": len(windows), "segments": segs}
