r"""Trains, evaluates or summarises DanHAR. All the logic lives in danhar_jax/.

  python main.py --config=configs/opportunity.py --workdir=runs/opp          # train (resumes)
  python main.py --config=configs/opportunity.py --workdir=runs/opp --mode=eval
  python main.py --config=configs/wisdm.py:cnn --mode=summary               # needs no data
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
flags.DEFINE_enum("mode", "train", ["train", "eval", "summary", "figures"], "What to do.")
flags.DEFINE_string("baseline_workdir", None, "--mode=figures: a second run (e.g. the ResNet "
                    "baseline) for the confusion matrices and error curves.")
flags.DEFINE_list("compare_workdirs", [], "--mode=figures: more runs for the error curves.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-host runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
flags.DEFINE_bool("distributed", False, "Multi-host run whose cluster (SLURM, Cloud TPU, ...) "
                  "jax.distributed.initialize() detects by itself.")


def quiet_orbax() -> None:
  """Orbax narrates every checkpoint save at INFO through absl: keep its warnings only."""
  std_logging.getLogger("absl").addFilter(
      lambda r: r.levelno >= std_logging.WARNING or "orbax" not in r.pathname)


def main(argv):
  del argv
  quiet_orbax()
  # Before JAX starts its threads: without it, XLA:CPU's step temporaries are unmapped and
  # faulted in again every step (danhar_jax/host_memory.py; a WISDM step trains about 20% faster).
  from danhar_jax import host_memory
  host_memory.keep_freed_memory()
  # What a user can fix gets one line, not a traceback (DANHAR_TRACEBACK=1 shows it anyway).
  user_errors = (ValueError, FileNotFoundError, PermissionError, FloatingPointError)
  try:
    run(FLAGS.config)
  except user_errors as e:  # RawFormatError and MissingRawFilesError are among them
    if os.environ.get("DANHAR_TRACEBACK"):
      raise
    sys.exit(f"error: {e}")


def run(config):
  # Imported after flag parsing, so that `--help` and flag errors stay fast.
  import jax
  from danhar_jax import summary, train

  if FLAGS.mode == "summary":
    print(summary.summary(config))
    return
  if not FLAGS.workdir:
    raise app.UsageError(f"--workdir is required for --mode={FLAGS.mode}.")
  if FLAGS.mode == "figures":
    from danhar_jax import figures
    print("\n".join(figures.make_all(config, FLAGS.workdir, FLAGS.baseline_workdir,
                                     FLAGS.compare_workdirs)))
    return
  if FLAGS.coordinator_address or FLAGS.num_processes or FLAGS.distributed:
    # CPU processes need a collectives backend to reduce across hosts; GPUs and TPUs bring theirs.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  logging.info("JAX process %d/%d, local devices %s", jax.process_index(), jax.process_count(),
               jax.local_devices())
  if FLAGS.mode == "eval":
    result = train.evaluate(config, FLAGS.workdir)
    print(json.dumps({k: v for k, v in result.items() if k != "confusion"}, indent=1))
  else:
    train.train_and_evaluate(config, FLAGS.workdir)


def parse_flags_or_exit(argv):
  """Parses flags; a misspelt --config.field or a bad config argument exits with one line."""
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError) as e:
    # ml_collections wraps the KeyError's repr: unwrap its quotes and escaped newline.
    message = str(e.args[0] if e.args else e).replace("\\n", " ").replace("\\", "")
    sys.exit(f"error: bad --config: {message.replace(chr(39), '')}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main, flags_parser=parse_flags_or_exit)
