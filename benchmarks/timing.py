"""How a prepared contender is timed: its first calls apart, repeats sized by time, statistics.

A contender module turns a Setting into a `Prepared`: `run(n)` does n steps (or n batch-1
calls) and synchronises, so that the time of a call is the time of its steps. The worker
(worker.py) warms it up, sizes a repeat to last `min_repeat_s`, and times one repeat whenever
the runner asks, so repeats of contenders in different processes interleave.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np


@dataclasses.dataclass
class Prepared:
  run: Callable[[int], None]           # n steps, then synchronise
  windows_per_step: int                # the global batch (1 for latency)
  info: dict = dataclasses.field(default_factory=dict)   # extras known once built
  finish: Callable[[], dict] = dict    # extras after timing: peak memory, cost analysis
  latency: bool = False                # time each call alone: p50 and p99


def steps_for(step_s: float, min_repeat_s: float, most: int = 100_000) -> int:
  """Steps that last at least `min_repeat_s` at `step_s` each."""
  return int(min(max(math.ceil(min_repeat_s / max(step_s, 1e-9)), 1), most))


@dataclasses.dataclass
class Timer:
  """One prepared contender's timing state inside its worker."""
  prepared: Prepared
  min_repeat_s: float
  steps: int = 1
  first_s: float = 0.0
  step_s: list = dataclasses.field(default_factory=list)
  call_ms: list = dataclasses.field(default_factory=list)   # latency: each call

  def warm(self, warmup: int, clock=time.perf_counter) -> None:
    """The first call (it compiles) timed apart, then `warmup` untimed repeats that size the
    next ones."""
    start = clock()
    self.prepared.run(1)
    self.first_s = clock() - start
    start = clock()
    self.prepared.run(1)
    second = clock() - start
    self.steps = steps_for(second, self.min_repeat_s)
    for _ in range(warmup):
      start = clock()
      self.prepared.run(self.steps)
      self.steps = steps_for((clock() - start) / self.steps, self.min_repeat_s)

  def repeat(self, clock=time.perf_counter) -> float:
    """One timed repeat; returns its seconds."""
    if self.prepared.latency:
      start = clock()
      for _ in range(self.steps):
        t = clock()
        self.prepared.run(1)
        self.call_ms.append((clock() - t) * 1e3)
      return clock() - start
    start = clock()
    self.prepared.run(self.steps)
    seconds = clock() - start
    self.step_s.append(seconds / self.steps)
    return seconds

  def stats(self) -> dict:
    """The row's timing fields (schema.Row names)."""
    out = {"repeats": len(self.step_s) or (1 if self.call_ms else 0),
           "steps_per_repeat": self.steps}
    if self.call_ms:
      ms = np.array(self.call_ms)
      p50 = float(np.percentile(ms, 50))
      out.update(latency_p50_ms=p50, latency_p99_ms=float(np.percentile(ms, 99)),
                 ms_per_step=p50, ms_min=float(ms.min()), ms_max=float(ms.max()),
                 windows_per_s=self.prepared.windows_per_step / p50 * 1e3,
                 compile_s=max(self.first_s - p50 / 1e3, 0.0),
                 repeats=len(ms))
      return out
    if not self.step_s:
      return dict(out, compile_s=self.first_s)
    ms = np.array(self.step_s) * 1e3
    med = float(np.median(ms))
    q1, q3 = np.percentile(ms, [25, 75])
    return dict(out, windows_per_s=self.prepared.windows_per_step / med * 1e3,
                ms_per_step=med, ms_min=float(ms.min()), ms_max=float(ms.max()),
                ms_iqr=float(q3 - q1), compile_s=max(self.first_s - med / 1e3, 0.0))
