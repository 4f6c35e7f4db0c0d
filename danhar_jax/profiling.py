"""`config.profile_steps=N`: a jax.profiler trace of N train steps, for TensorBoard or Perfetto.

The trace starts after the run's first step (which compiles) and is written under
`<workdir>/tensorboard/plugins/profile/<timestamp>/`, where TensorBoard's profile tab finds it;
its `.trace.json.gz` also opens in ui.perfetto.dev.
"""

from __future__ import annotations

import logging
import os

import jax


class StepProfiler:
  """Starts the trace before step `start + 1` and stops it once N steps have finished."""

  def __init__(self, workdir: str, num_steps: int, start: int):
    self.num_steps, self.first = int(num_steps or 0), start + 1
    self.logdir = os.path.join(workdir, "tensorboard")
    self.active = False
    # Only process 0 writes, as for the other TensorBoard files.
    self.enabled = self.num_steps > 0 and jax.process_index() == 0

  @property
  def stops(self) -> tuple[int, ...]:
    """The steps where a block of train steps must end, so the trace covers whole steps."""
    return (self.first, self.first + self.num_steps) if self.enabled else ()

  def before(self, step: int) -> None:
    if self.enabled and step == self.first and not self.active:
      jax.profiler.start_trace(self.logdir)
      self.active = True
      logging.info("Profiling steps %d-%d into %s.", step + 1, step + self.num_steps,
                   self.logdir)

  def after(self, step: int, outputs) -> None:
    if self.active and step + 1 >= self.first + self.num_steps:
      jax.block_until_ready(outputs)  # the traced steps' device work belongs in the trace
      self.stop()

  def stop(self) -> None:
    if self.active:
      jax.profiler.stop_trace()
      self.active = False
      logging.info("Wrote the profile to %s/plugins/profile.", self.logdir)
