"""Where metrics go: TensorBoard event files, readable log lines, and `eval_metrics.jsonl`.

CLU's own writers import TensorFlow for TensorBoard, so the event files come from tensorboardX,
which needs only protobuf. Only process 0 writes.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
from etils import epath
from flax import traverse_util

from danhar_jax import disk


class Writers:
  """TensorBoard scalars, plus one JSON object per evaluation."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.jsonl = os.path.join(os.fspath(workdir), "eval_metrics.jsonl")
    self._tb = None
    if enabled:
      from tensorboardX import SummaryWriter  # deferred: only process 0 pays the import
      with disk.writing(os.path.join(workdir, "tensorboard")):  # writes the file's header
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
        self._watch_event_writes()

  def _watch_event_writes(self) -> None:
    """tensorboardX writes from a thread, where an error would go unseen and its queue would
    then block the run: the thread records a failed write instead, and the run raises it."""
    self._tb_error = None
    events = self._tb._get_file_writer().event_writer._ev_writer  # what its thread writes to

    def recorded(write):
      def wrapper(*args):
        if self._tb_error is None:
          try:
            return write(*args)
          except Exception as e:  # pylint: disable=broad-except  (re-raised by _check_events)
            self._tb_error = e
        return None
      return wrapper

    events.write_event = recorded(events.write_event)
    events.flush = recorded(events.flush)
    self._events_path = getattr(events, "_file_name", os.path.join(
        self._tb.logdir, "events.out.tfevents.*"))

  def _check_events(self) -> None:
    e = self._tb_error
    if e is not None:
      if disk.is_disk_full(e):
        raise disk.full_error(self._events_path)
      raise OSError(f"Writing {self._events_path} failed: {e}") from e

  def scalars(self, step: int, values: dict[str, float]) -> None:
    if self._tb:
      self._check_events()
      for k, v in values.items():
        self._tb.add_scalar(k, float(v), step)

  def hparams(self, config: dict) -> None:
    """The config as text (JSON) and as TensorBoard hparams, linked to the test metrics."""
    if not self._tb:
      return
    from tensorboardX.summary import hparams  # pylint: disable=import-outside-toplevel
    self._tb.add_text("config", "```\n" + json.dumps(config, indent=1, default=str) + "\n```")
    flat = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
            for k, v in traverse_util.flatten_dict(config, sep=".").items()}
    metrics = {f"test_{k}": 0.0 for k in ("accuracy", "macro_f1", "weighted_f1", "loss")}
    writer = self._tb._get_file_writer()  # the run's own folder, beside its scalars
    for summary in hparams(flat, metrics):
      writer.add_summary(summary)

  def eval_record(self, record: dict) -> None:
    """Appends one evaluation; flushed and fsynced, so a crash right after keeps it."""
    if not self.enabled:
      return
    if "://" in self.jsonl:  # a remote workdir: epath appends by rewriting the object
      path = epath.Path(self.jsonl)
      path.write_text((path.read_text() if path.exists() else "") + json.dumps(record) + "\n")
      return
    data = (json.dumps(record) + "\n").encode()
    # Unbuffered, so that a failed write leaves nothing queued to retry on close.
    fd = os.open(self.jsonl, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      size = os.lseek(fd, 0, os.SEEK_END)
      try:
        with disk.writing(self.jsonl):
          while data:
            data = data[os.write(fd, data):]
          os.fsync(fd)
      except disk.DiskFullError:
        os.ftruncate(fd, size)  # no half line for the resumed run to trip over
        raise
    finally:
      os.close(fd)

  def forget_after(self, step: int) -> None:
    """Drops evaluations logged after `step`: a resumed run redoes them, so none appear twice."""
    if not self.enabled or not os.path.exists(self.jsonl):
      return
    with open(self.jsonl) as f:
      lines = [l for l in f if l.strip()]
    kept = [l for l in lines if json.loads(l)["step"] <= step]
    if len(kept) != len(lines):
      tmp = self.jsonl + ".tmp"
      with open(tmp, "w") as f:
        f.writelines(kept)
      os.replace(tmp, self.jsonl)

  def close(self) -> None:
    if self._tb:
      tb, self._tb = self._tb, None
      tb.close()  # drains the thread's queue and flushes
      self._check_events()

  def __enter__(self) -> Writers:
    return self

  def __exit__(self, kind, *_) -> None:
    # Closed on every exit: an open writer's atexit hook starts a thread, which Python 3.12+
    # refuses at shutdown, printing a traceback under the run's one-line error.
    if kind is None:
      self.close()
      return
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except  (the error in flight is the one to report)
      pass


SPLIT_AUDIT = "split_audit.json"


def write_split_audit(workdir: str, audit: dict) -> None:
  """`<workdir>/split_audit.json`: the protocol's overlap audit (splits.audit), which a run
  otherwise only logs, for a study to read (`read_split_audit`). Replaced whole on a rerun."""
  path = epath.Path(workdir) / SPLIT_AUDIT
  with disk.writing(os.fspath(path)):
    path.write_text(json.dumps(audit, indent=1) + "\n")


def read_split_audit(workdir: str) -> dict | None:
  """The audit a run wrote (`write_split_audit`); None for a run from before it was written."""
  path = epath.Path(workdir) / SPLIT_AUDIT
  return json.loads(path.read_text()) if path.exists() else None


def read_eval_metrics(workdir: str) -> list[dict]:
  path = epath.Path(workdir) / "eval_metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def best_accuracy(records: list[dict]) -> tuple[float, int] | None:
  """(accuracy, epoch) of the best evaluation in `records`, the earliest on a tie; None if none."""
  best = None
  for r in records:
    if best is None or r["accuracy"] > best[0]:
      best = (r["accuracy"], r["epoch"])
  return best


class Progress:
  """Steps/s, windows/s and ETA for the log line."""

  def __init__(self, total_steps: int, start_step: int, global_batch: int):
    self.total, self.global_batch = total_steps, global_batch
    self.t0, self.step0 = time.perf_counter(), start_step

  def line(self, step: int) -> str:
    elapsed = time.perf_counter() - self.t0
    rate = (step - self.step0) / elapsed if elapsed > 0 else 0.0
    eta = (self.total - step) / rate if rate > 0 else float("nan")
    return (f"{rate:.2f} steps/s, {rate * self.global_batch:.0f} windows/s, "
            f"ETA {_duration(eta)}")


def _duration(seconds: float) -> str:
  if not np.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"
