"""Checkpoints of a run: the train state, its config and the input pipeline's position.

Single-process runs write their saves in Orbax's background thread while training goes on.
Orbax commits each step atomically and never lists an uncommitted one, so an interrupted save
(a kill, a full disk) leaves the previous checkpoint as the latest. A committed step can still be damaged later (a
truncated or overwritten file): `restore` then falls back to the newest step that reads whole.
A workdir belongs to one config: `restore` refuses a config that would change the state or the
data, before it reads the state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from flax import traverse_util
from jax.experimental import multihost_utils

from danhar_jax import disk

# Config fields that may change when a run resumes: how long it runs, how often it logs and
# checkpoints, how many steps one device call runs, where the prepared data lives, and how steps
# are computed (numerics only, as conv_impl). Any other difference changes the state's structure
# or values, or the data and its order, so a resumed run would silently mix two runs.
# Bit-identical resumes need the same parallelism, matmul_precision and devices too.
RESUMABLE_FIELDS = (
    "num_epochs", "log_every_steps", "checkpoint_every_steps", "checkpoint_every_seconds",
    "max_checkpoints_to_keep", "profile_steps", "steps_per_call", "eval_batch_size",
    "evaluators", "parallelism", "matmul_precision", "data_dir", "manual_dir",
    "model.conv_impl")
# Evaluating a checkpoint (--mode=eval, figures) may also differ in how it was trained and in
# the compute dtype; the model, the data and the test subjects must be the stored ones.
EVAL_MAY_DIFFER = RESUMABLE_FIELDS + (
    "batch_size", "learning_rate", "lr_decay_rate", "lr_schedule", "lr_step_epochs",
    "weight_decay", "seed", "steps_per_epoch", "model.dtype")
# Written beside the config, not part of it: what 'auto' fields resolved to on the backend.
NOT_CONFIG = ("resolved",)
DAMAGED_DIR = "damaged_checkpoints"


class ConfigMismatchError(ValueError):
  """The workdir's checkpoints were trained with a config that differs where it matters."""


class DamagedCheckpointError(ValueError):
  """No checkpoint of the workdir can be read."""


def config_differences(stored: dict, given: dict, may_differ=RESUMABLE_FIELDS
                       ) -> list[tuple[str, object, object]]:
  """(field, stored value, given value) for each field outside `may_differ` that differs.

  Both go through JSON, as a stored one did, so tuples compare equal to lists."""
  stored, given = (json.loads(json.dumps(c, default=str)) for c in (stored, given))
  missing = "(absent)"
  a = {k: v for k, v in traverse_util.flatten_dict(stored, sep=".").items()
       if k.split(".")[0] not in NOT_CONFIG}
  b = traverse_util.flatten_dict(given, sep=".")
  return [(k, a.get(k, missing), b.get(k, missing)) for k in sorted(a.keys() | b.keys())
          if k not in may_differ and a.get(k, missing) != b.get(k, missing)]


def check_config(directory, stored: dict, given: dict, may_differ=RESUMABLE_FIELDS) -> None:
  diffs = config_differences(stored, given, may_differ)
  if diffs:
    listed = "; ".join(f"{k}: {json.dumps(s)} stored, {json.dumps(g)} given"
                       for k, s, g in diffs)
    if may_differ == RESUMABLE_FIELDS:
      advice = (f"Resume with the stored values (only {', '.join(RESUMABLE_FIELDS)} may "
                "change), or use a new --workdir.")
    else:
      advice = "Evaluate it with the stored values of these fields."
    raise ConfigMismatchError(f"{directory} holds a run of another config ({listed}). {advice}")


def _first_line(e: BaseException) -> str:
  line = (str(e).strip().splitlines() or [type(e).__name__])[0]
  return line[:200] + ("..." if len(line) > 200 else "")


def manager(workdir: str, max_to_keep: int | None = None, keep_best: bool = False
            ) -> ocp.CheckpointManager:
  """The checkpoints of `workdir` (in `workdir/checkpoints`): the latest `max_to_keep` (None:
  all), and with `keep_best` also the selected epoch's, ranked by the `metrics` given to `save`."""
  # Remote workdirs (gs://...) go through epath as they are; local ones become absolute.
  remote = "://" in os.fspath(workdir)
  policy = ocp.checkpoint_managers.LatestN(max_to_keep)
  best = {}
  if keep_best:
    # Larger rank is better, the earliest step on a tie, as selection.Selector picks. Saves
    # without metrics (mid-epoch) are LatestN's alone to keep.
    policy = ocp.checkpoint_managers.AnyPreservationPolicy([policy, ocp.checkpoint_managers.BestN(
        get_metric_fn=_best_key, n=1, keep_checkpoints_without_metrics=False)])
    best = {"best_fn": _best_key, "best_mode": "max"}  # best_fn makes Orbax write the metrics
  return ocp.CheckpointManager(
      epath.Path(workdir if remote else os.path.abspath(workdir)) / "checkpoints",
      options=ocp.CheckpointManagerOptions(preservation_policy=policy, create=True,
                                           cleanup_tmp_directories=True, **best),
      item_names=("state", "config", "pipeline"))


def _best_key(metrics: dict):
  return (metrics["rank"], -metrics["step"])


# The step each manager is still writing in the background, so that an error raised when the
# write is next waited for names the checkpoint it belongs to.
_WRITING: dict[str, int] = {}


def save(mngr: ocp.CheckpointManager, step: int, state, config: dict, pipeline: dict,
         rank: float | None = None) -> None:
  """Saves a host-side `state`, the config as a dict, and the pipeline position.

  The write runs in Orbax's background thread, which commits the step atomically when it is
  done; this call first waits for the previous save, so that a full disk is reported, naming
  that step, before anything else is written. `rank` (larger is better) marks an evaluated
  epoch for a manager that keeps the best (`manager(keep_best=True)`)."""
  wait(mngr)
  # Orbax does not notice every flipped byte in its compressed chunks: a digest of the state
  # lets `restore` tell a damaged step from a good one.
  pipeline = {**pipeline, "state_sha256": digest(state)}
  with disk.writing(f"{mngr.directory}/{step}"):
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(config),
        pipeline=ocp.args.JsonSave(pipeline)),
        metrics=None if rank is None else {"rank": rank, "step": step})
  _WRITING[str(mngr.directory)] = step
  if jax.process_count() > 1:
    # A background commit ends in a barrier of every process: a lost peer would abort the
    # survivors from that thread, before they could say so in one line.
    wait(mngr)


def wait(mngr: ocp.CheckpointManager) -> None:
  """Waits until the last save has committed (or failed, reported as the step it was)."""
  step = _WRITING.pop(str(mngr.directory), mngr.latest_step())
  with disk.writing(f"{mngr.directory}/{step}"):
    mngr.wait_until_finished()


def digest(state) -> str:
  """sha256 of the state's arrays, in tree order."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(state):
    a = np.asarray(leaf)
    if a.dtype.kind in "iu":  # the step counter comes back as int64 from a Python int's target
      a = a.astype(np.int64)
    h.update(f"{a.dtype}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def finish(mngr: ocp.CheckpointManager) -> None:
  """Waits for the last save to commit, then closes `mngr`."""
  try:
    wait(mngr)
  finally:
    mngr.close()


@contextlib.contextmanager
def managed(workdir: str, max_to_keep: int | None = None, keep_best: bool = False):
  """`manager(workdir)`, finished on every exit: a save still being written commits, even when
  the run stops with an error. (With several processes saves are synchronous, and an error may
  mean a lost peer, whose barriers would never return: nothing is left to finish then.)"""
  mngr = manager(workdir, max_to_keep, keep_best)
  try:
    yield mngr
  except BaseException:
    if jax.process_count() == 1:
      finish(mngr)
    raise
  finish(mngr)


def restore(mngr: ocp.CheckpointManager, state, expected: dict | None = None,
            config: dict | None = None, set_aside: bool = False,
            may_differ=RESUMABLE_FIELDS, step: int | None = None):
  """(state, step) of the newest readable checkpoint, or (`state`, 0) if there is none.

  `state` gives the structure to restore into. `config` (a dict), if given, must match the
  stored one outside `may_differ` (ConfigMismatchError), checked before the state is read.
  `expected` holds the pipeline settings a resumed run must share with the checkpoint
  (global_batch, steps_per_epoch, seed): any difference is a ValueError, since the batch order
  would silently change. A step that cannot be read is skipped with a warning, and with
  `set_aside` moved to <workdir>/damaged_checkpoints so that the run can save that step again;
  if none can be read, DamagedCheckpointError: never a silent start from scratch. `step` reads
  that step only.
  """
  steps = sorted(mngr.all_steps(), reverse=True) if step is None else [step]
  if not steps:
    return state, 0
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  damaged = []
  for step in steps:
    try:
      meta = mngr.restore(step, args=ocp.args.Composite(
          config=ocp.args.JsonRestore(), pipeline=ocp.args.JsonRestore()))
    except Exception as e:  # pylint: disable=broad-except  (any unreadable file: try older)
      damaged.append(_damaged(mngr, step, e))
      continue
    if config is not None:
      check_config(mngr.directory, meta.config, config, may_differ)
    _check_pipeline(mngr, meta.pipeline, expected)
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))
    except Exception as e:  # pylint: disable=broad-except
      damaged.append(_damaged(mngr, step, e))
      continue
    stored = meta.pipeline.get("state_sha256")  # absent from checkpoints older than the digest
    if stored is not None and digest(restored.state) != stored:
      damaged.append(_damaged(mngr, step, ValueError("its arrays do not match their digest")))
      continue
    if damaged:
      logging.warning("Resuming from step %d, the newest checkpoint that reads whole.", step)
      if set_aside:
        _set_aside(mngr, damaged)
    return restored.state, int(step)
  raise DamagedCheckpointError(
      f"No checkpoint in {mngr.directory} can be read (steps {', '.join(map(str, damaged))} are "
      "damaged). Restore them from a backup, or move them away to start from scratch.")


def _damaged(mngr, step: int, e: Exception) -> int:
  logging.warning("The checkpoint at step %d in %s is damaged and cannot be read (%s: %s); "
                  "trying the one before.", step, mngr.directory, type(e).__name__,
                  _first_line(e))
  return step


def _check_pipeline(mngr, pipe: dict, expected: dict | None) -> None:
  keys = ("global_batch", "steps_per_epoch", "seed")
  if expected is not None and any(pipe[k] != expected[k] for k in keys):
    raise ValueError(
        f"{mngr.directory} was trained with batch {pipe['global_batch']}, "
        f"{pipe['steps_per_epoch']} steps/epoch and seed {pipe['seed']}; this config gives "
        f"{expected['global_batch']}, {expected['steps_per_epoch']} and {expected['seed']}. "
        "Resume with the same config, or use a new --workdir.")


def _set_aside(mngr, steps: list[int]) -> None:
  """Moves damaged steps out of the checkpoints folder (kept, not deleted), so the resumed
  run saves those steps anew."""
  if jax.process_index() == 0:
    target = epath.Path(mngr.directory).parent / DAMAGED_DIR
    target.mkdir(parents=True, exist_ok=True)
    for step in steps:
      name = str(step)
      while (target / name).exists():
        name += "_"
      (epath.Path(mngr.directory) / str(step)).rename(target / name)
      logging.warning("Moved the damaged checkpoint of step %d to %s.", step, target / name)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("danhar_jax: damaged checkpoints set aside")
  mngr.reload()


def restore_as_saved(workdir: str) -> tuple[dict, dict, int]:
  """(state as saved, config dict, step) of the latest checkpoint, with no target structure:
  what a trained model needs outside training. FileNotFoundError if there is none."""
  directory = epath.Path(workdir) / "checkpoints"
  # Committed steps are folders named by their number (Orbax renames a save into place). Looked
  # for before a manager exists: its start-up cleanup thread would outlive an error raised here.
  committed = directory.exists() and any(p.name.isdigit() for p in directory.iterdir())
  mngr = manager(workdir) if committed else None
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


def selected_step(mngr: ocp.CheckpointManager) -> int | None:
  """The step of the epoch a run selected on validation, as its latest checkpoint records it;
  None for a run that selected on the test split (or predates selection)."""
  latest = mngr.latest_step()
  if latest is None:
    return None
  meta = mngr.restore(latest, args=ocp.args.Composite(pipeline=ocp.args.JsonRestore()))
  return meta.pipeline.get("selected_step")
