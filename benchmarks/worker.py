"""One process of one framework group: prepares contenders and times them when the runner asks.

  python -m benchmarks.worker GROUP     # started by runner.py, spoken to over stdin/stdout

Each request is one JSON line on stdin; each answer one JSON line on the process's original
stdout, which nothing else writes to (everything printed goes to stderr, the worker's log). A
process runs one group only (plan.CONTENDERS), so the process-wide switches that one group sets
(cudnn.benchmark, TF32, XLA flags) never reach another group's rows; the runner interleaves the
repeats of several workers, so machine load falls on all contenders alike.

Requests: {"op": "probe"}; {"op": "prepare", "setting", "options"}; {"op": "repeat",
"contender"}; {"op": "finish", "contender"}; {"op": "trainer", "setting", "options"};
{"op": "exit"}. An answer has "ok"; a failure, "error": one line naming the reason.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import resource
import sys
import traceback

if __package__ in (None, ""):
  sys.exit("run it from the repository root as: python -m benchmarks.worker")

from benchmarks import model_config  # pylint: disable=g-import-not-at-top
from benchmarks import plan
from benchmarks import timing
from danhar_jax import host_memory

# Imported by name, so that a torch worker never loads JAX and a JAX worker never loads torch.
MODULES = {"jax": "benchmarks.contenders_jax", "torch": "benchmarks.contenders_torch"}
TRAINER = "benchmarks.trainer_bench"


def one_line(e: BaseException) -> str:
  lines = str(e).strip().splitlines() or [""]
  text = f"{type(e).__name__}: {lines[0]}"
  if "RESOURCE_EXHAUSTED" in str(e) or "out of memory" in str(e).lower():
    text = "OOM: " + text
  return text[:300]


class Worker:

  def __init__(self, group: str):
    self.group = group
    self.framework = group.partition("_")[0]
    if self.framework == "jax":
      # As main.py, before JAX starts its threads: a step's freed host memory is kept (CPU).
      host_memory.keep_freed_memory_on_cpu()
    self.contenders = importlib.import_module(MODULES[self.framework])
    self.timers: dict[str, timing.Timer] = {}
    self.configs = {}

  def config(self, setting: plan.Setting, options: dict):
    return model_config.config_for(setting, tuple(options.get("widths", ())))

  def probe(self, _):
    return {"python": platform.python_version(), **self.contenders.probe()}

  def prepare(self, request):
    setting, options = plan.Setting.from_dict(request["setting"]), request["options"]
    config = self.config(setting, options)
    prepared = self.contenders.PREPARE[setting.contender](
        setting, config, **({"split_windows": options.get("split_windows", 0)}
                            if self.framework == "jax" else {}))
    timer = timing.Timer(prepared, options.get("min_repeat_s", 0.2))
    timer.warm(options.get("warmup", 1))
    self.timers[setting.contender] = timer
    self.configs[setting.contender] = (setting, config)
    return {"info": prepared.info, "steps": timer.steps, "first_s": timer.first_s}

  def repeat(self, request):
    return {"seconds": self.timers[request["contender"]].repeat()}

  def finish(self, request):
    timer = self.timers.pop(request["contender"])
    setting, _ = self.configs.pop(request["contender"])
    fields = dict(timer.stats(), **timer.prepared.finish())
    fields["extra"] = dict(timer.prepared.info, **fields.get("extra", {}))
    if setting.contender == "block":
      fields["measured_peak_tflops"] = self.contenders.matmul_tflops(setting.numerics)
    return {"fields": with_rss(fields)}

  def trainer(self, request):
    setting, options = plan.Setting.from_dict(request["setting"]), request["options"]
    fields = importlib.import_module(TRAINER).trainer(setting, self.config(setting, options),
                                   options.get("split_windows", 0),
                                   options.get("trainer_epoch_s", 3.0),
                                   options.get("trainer_epochs", 3))
    return {"fields": with_rss(fields)}


def with_rss(fields: dict) -> dict:
  """Where the device reports no peak (a CPU), the process's peak resident memory."""
  if fields.get("peak_memory_bytes") is None:
    fields.update(peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  memory_kind="host_rss")
  return fields


def main() -> None:
  if len(sys.argv) != 2 or sys.argv[1] not in set(plan.CONTENDERS.values()):
    sys.exit(f"usage: python -m benchmarks.worker GROUP, GROUP one of "
             f"{', '.join(sorted(set(plan.CONTENDERS.values())))}")
  answers = os.fdopen(os.dup(1), "w", buffering=1)
  os.dup2(2, 1)  # whatever else prints, Python or C, goes to the log
  sys.stdout = sys.stderr
  try:
    worker = Worker(sys.argv[1])
  except Exception as e:  # pylint: disable=broad-except
    traceback.print_exc()
    answers.write(json.dumps({"ok": False, "error": one_line(e)}) + "\n")
    return
  answers.write(json.dumps({"ok": True, "ready": True}) + "\n")
  for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "exit":
      break
    try:
      answer = {"ok": True, **getattr(worker, request["op"])(request)}
    except Exception as e:  # pylint: disable=broad-except
      traceback.print_exc()
      answer = {"ok": False, "error": one_line(e)}
    answers.write(json.dumps(answer, default=float) + "\n")


if __name__ == "__main__":
  main()
