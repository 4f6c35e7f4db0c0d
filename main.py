r"""Trains, evaluates or summarises DanHAR. All the logic lives in danhar_jax/.

  python main.py --config=configs/opportunity.py --workdir=runs/opp          # train (resumes)
  python main.py --config=configs/opportunity.py --workdir=runs/opp --mode=eval
  python main.py --config=configs/wisdm.py:cnn --mode=summary               # needs no data
  python main.py --config=configs/wisdm.py:cnn --mode=eval --init_from_torch=baseline_wisdom.pth
  python main.py --config=configs/weakly.py --workdir=runs/weakly --mode=figures  # PNGs in workdir

Several hosts: pass --coordinator_address, --num_processes and --process_id (or let the cluster
environment set them) and every process runs the same command.
"""

import json
import logging as std_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A configs/<dataset>.py file[:args].",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and figures go.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "summary", "figures", "predict", "export",
                                    "loso"], "What to do.")
flags.DEFINE_list("input", [], "--mode=predict: recordings, in the dataset's raw format or CSV.")
flags.DEFINE_string("output", None, "--mode=predict: the CSV to write (default: stdout).")
flags.DEFINE_string("pretrained", None, "--mode=predict/export: a model under pretrained/ "
                    "instead of --workdir.")
flags.DEFINE_list("loso_subjects", [], "--mode=loso: the subjects to hold out in turn "
                  "(default: every subject of the dataset).")
flags.DEFINE_string("baseline_workdir", None, "--mode=figures: a second run (e.g. the ResNet "
                    "baseline) for the confusion matrices and error curves.")
flags.DEFINE_list("compare_workdirs", [], "--mode=figures: more runs for the error curves.")
flags.DEFINE_enum("checkpoint", "", ["", "selected", "latest"], "--mode=eval: which "
                  "checkpoint; default: the selected epoch's if the run selected on validation "
                  "(config.select_on), else the latest.")
flags.DEFINE_string("init_from_torch", None, "--mode=eval: a state_dict .pth saved from the "
                    "authors' PyTorch model of this config's dataset and variant (needs torch).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-host runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
flags.DEFINE_integer("heartbeat_timeout_seconds", 100, "Multi-host runs: a process that has not "
                     "been heard from for this long is taken for dead, and the others stop.")
flags.DEFINE_bool("distributed", False, "Multi-host run whose cluster (SLURM, Cloud TPU, ...) "
                  "jax.distributed.initialize() detects by itself.")


def quiet_orbax() -> None:
  """Orbax narrates every checkpoint save at INFO through absl: keep its warnings only."""
  std_logging.getLogger("absl").addFilter(
      lambda r: r.levelno >= std_logging.WARNING or "orbax" not in r.pathname)


def main(argv):
  del argv
  quiet_orbax()
  # Before JAX starts its threads, and on the CPU backend only: XLA:CPU's step temporaries are
  # otherwise unmapped and faulted in again every step (danhar_jax/host_memory.py).
  from danhar_jax import config_check, disk, host_memory
  host_memory.keep_freed_memory_on_cpu()
  # What a user can fix gets one line, not a traceback (DANHAR_TRACEBACK=1 shows it anyway).
  user_errors = (ValueError, FileNotFoundError, PermissionError, FloatingPointError,
                 disk.DiskFullError)
  try:
    if FLAGS.mode in ("predict", "export"):  # the model brings its own config
      from danhar_jax import use_modes
      use_modes.run(FLAGS)
      return
    if FLAGS.config is None:
      raise app.UsageError("--config is required.")
    config_check.validate(FLAGS.config)  # every field that shapes the run, before it runs
    run(FLAGS.config)
  except Exception as e:  # pylint: disable=broad-except
    from danhar_jax import hosts
    if os.environ.get("DANHAR_TRACEBACK"):
      raise
    if hosts.lost_a_peer(e):  # first: a lost peer may come wrapped as a ValueError
      hosts.stop(e)
    if isinstance(e, user_errors):  # RawFormatError and MissingRawFilesError are among them
      sys.exit(f"error: {e}")
    raise


def run(config):
  # Imported after flag parsing, so that `--help` and flag errors stay fast.
  import jax
  from danhar_jax import summary, train, workdir_lock

  if FLAGS.mode == "summary":
    print(summary.summary(config))
    return
  if FLAGS.init_from_torch:
    print(json.dumps(evaluate_torch_checkpoint(config, FLAGS.init_from_torch), indent=1))
    return
  if not FLAGS.workdir:
    raise app.UsageError(f"--workdir is required for --mode={FLAGS.mode}.")
  if FLAGS.mode == "loso":
    from danhar_jax import loso
    print(loso.run(config, FLAGS.workdir, FLAGS.loso_subjects))
    return
  if FLAGS.mode == "figures":
    from danhar_jax import figures
    print("\n".join(figures.make_all(config, FLAGS.workdir, FLAGS.baseline_workdir,
                                     FLAGS.compare_workdirs)))
    return
  if FLAGS.coordinator_address or FLAGS.num_processes or FLAGS.distributed:
    # CPU processes need a collectives backend to reduce across hosts; GPUs and TPUs bring theirs.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                               heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_seconds)
  logging.info("JAX process %d/%d, local devices %s", jax.process_index(), jax.process_count(),
               jax.local_devices())
  # One run per workdir; held until this process exits (the kernel drops it even on kill -9).
  # An OS lock needs a local file: a gs:// workdir goes unlocked.
  local = "://" not in FLAGS.workdir
  lock = (workdir_lock.acquire(FLAGS.workdir)  # noqa: F841
          if jax.process_index() == 0 and local else None)
  if FLAGS.mode == "eval":
    result = train.evaluate(config, FLAGS.workdir, FLAGS.checkpoint)
    print(json.dumps({k: v for k, v in result.items() if k != "confusion"}, indent=1))
  else:
    train.train_and_evaluate(config, FLAGS.workdir)


def evaluate_torch_checkpoint(config, path: str) -> dict:
  """--init_from_torch: the authors' checkpoint scored on our test split; nothing is written."""
  from danhar_jax import authors_checkpoint, train
  if FLAGS.mode != "eval":
    raise app.UsageError("--init_from_torch goes with --mode=eval.")
  if FLAGS.workdir and os.path.isdir(os.path.join(FLAGS.workdir, "checkpoints")) and os.listdir(
      os.path.join(FLAGS.workdir, "checkpoints")):
    raise ValueError(f"--workdir={FLAGS.workdir} already holds a run; --init_from_torch evaluates "
                     "a checkpoint on its own. Drop --workdir or choose an empty one.")
  try:
    import torch
  except ImportError:
    raise ValueError("--init_from_torch needs PyTorch: pip install 'danhar_jax[torch]'.") from None
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--init_from_torch={path}: no such file.")
  try:
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  (pickle, zip and runtime errors alike)
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise ValueError(f"--init_from_torch={path} is not a PyTorch state_dict "
                     f"({type(e).__name__}: {first}).") from None
  variables = authors_checkpoint.from_authors_state_dict(state_dict, config)
  result = train.evaluate_variables(config, variables)
  return {"checkpoint": path, **{k: v for k, v in result.items() if k != "confusion"}}


def parse_flags_or_exit(argv):
  """Parses flags; a misspelt --config.field or a bad config argument exits with one line."""
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError) as e:
    # ml_collections wraps the KeyError's repr: unwrap its quotes and escaped newline.
    message = str(e.args[0] if e.args else e)
    if "Traceback (most recent call last)" in message:  # get_config's own error, wrapped
      message = message.strip().splitlines()[-1]
    message = message.replace("\\n", " ").replace("\\", "")
    sys.exit(f"error: bad --config: {message.replace(chr(39), '')}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags_or_exit)
