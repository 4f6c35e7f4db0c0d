"""Checkpoints of a run: the train state, its config and the input pipeline's position.

Orbax commits each step atomically and never lists an uncommitted one, so an interrupted save
leaves the previous checkpoint as the latest.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp
from etils import epath


def manager(workdir: str, max_to_keep: int | None = None) -> ocp.CheckpointManager:
  """The checkpoints of `workdir` (in `workdir/checkpoints`)."""
  # Remote workdirs (gs://...) go through epath as they are; local ones become absolute.
  remote = "://" in os.fspath(workdir)
  return ocp.CheckpointManager(
      epath.Path(workdir if remote else os.path.abspath(workdir)) / "checkpoints",
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           cleanup_tmp_directories=True),
      item_names=("state", "config", "pipeline"))


def save(mngr: ocp.CheckpointManager, step: int, state, config: dict, pipeline: dict) -> None:
  """Saves a host-side `state`, the config as a dict, and the pipeline position."""
  mngr.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config),
      pipeline=ocp.args.JsonSave(pipeline)))


def restore(mngr: ocp.CheckpointManager, state, expected: dict | None = None):
  """(state, step) of the latest checkpoint, or (`state`, 0) if there is none.

  `state` gives the structure to restore into. `expected` holds the pipeline settings a resumed
  run must share with the checkpoint (global_batch, steps_per_epoch, seed): any difference is a
  ValueError, since the batch order would silently change.
  """
  step = mngr.latest_step()
  if step is None:
    return state, 0
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), pipeline=ocp.args.JsonRestore()))
  pipe = restored.pipeline
  keys = ("global_batch", "steps_per_epoch", "seed")
  if expected is not None and any(pipe[k] != expected[k] for k in keys):
    raise ValueError(
        f"{mngr.directory} was trained with batch {pipe['global_batch']}, "
        f"{pipe['steps_per_epoch']} steps/epoch and seed {pipe['seed']}; this config gives "
        f"{expected['global_batch']}, {expected['steps_per_epoch']} and {expected['seed']}. "
        "Resume with the same config, or use a new --workdir.")
  return restored.state, int(step)


def restore_as_saved(workdir: str) -> tuple[dict, dict, int]:
  """(state as saved, config dict, step) of the latest checkpoint, with no target structure:
  what a trained model needs outside training. FileNotFoundError if there is none."""
  directory = epath.Path(workdir) / "checkpoints"
  mngr = manager(workdir) if directory.exists() else None
  step = mngr.latest_step() if mngr is not None else None
  if step is None:
    raise FileNotFoundError(f"--workdir={workdir} holds no checkpoint (untrained): train it "
                            "first with --mode=train.")
  try:
    restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                          config=ocp.args.JsonRestore()))
  finally:
    mngr.close()
  return restored.state, restored.config, int(step)
