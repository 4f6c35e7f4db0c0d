"""Runs the plan's missing settings, highest priority first, within a time budget, and appends
each row to the device's ledger as soon as it is measured.

Settings that share a config, batch and mapping are measured together: each contender in its
group's own worker process (worker.py), prepared one after another, then timed in interleaved
rounds, one repeat of each in turn. A worker that crashes, or a contender that fails, costs only
its own rows, which become error rows naming the reason. A group that the budget cuts writes
nothing and is measured again next time.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time

from benchmarks import env
from benchmarks import ledger
from benchmarks import plan
from benchmarks import roofline
from benchmarks import schema

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Seconds a row is expected to take where its ledger has none of its kind yet (compile included).
GUESS_S = {"block": 40, "step": 40, "trainer": 60, "latency": 20, "eager": 30, "tuned": 45,
           "torch_latency": 20, "compiled": 150}
SPAWN_S = 10  # starting a worker: imports and the backend


@dataclasses.dataclass(frozen=True)
class Options:
  """Everything the command line decides, read once by throughput.py."""
  results: pathlib.Path = ledger.RESULTS
  log_dir: pathlib.Path = ROOT / "runs" / "bench_logs"
  time_budget_s: float = 0        # 0: no limit
  remeasure: bool = False
  repeats: int = 5
  min_repeats: int = 3            # fewer than this and the group is cut, not written
  warmup: int = 1
  min_repeat_s: float = 0.2
  widths: tuple = ()
  batch_cap: int = 0              # a rehearsal's small batches, in place of the plan's
  split_windows: int = 0          # 0: each config's real training-split size
  trainer_epoch_s: float = 3.0
  trainer_epochs: int = 3
  require_priority: int = 0       # exit 3 if a setting of this priority or higher is missing
  command: str = ""
  configs: tuple = ()
  contenders: tuple = ()
  numerics: tuple = ()
  batches: tuple = ()
  max_priority: int = 0
  dry_run: bool = False

  def worker_options(self) -> dict:
    return {"widths": list(self.widths), "split_windows": self.split_windows,
            "min_repeat_s": self.min_repeat_s, "warmup": self.warmup,
            "trainer_epoch_s": self.trainer_epoch_s, "trainer_epochs": self.trainer_epochs}


class WorkerFailed(RuntimeError):
  pass


class Proc:
  """One worker process: a JSON line in, a JSON line out, each answer awaited until a deadline."""

  def __init__(self, group: str, numerics: str, log_dir: pathlib.Path, extra_env: dict):
    log_dir.mkdir(parents=True, exist_ok=True)
    self.log = log_dir / f"{group}_{numerics}_{os.getpid()}_{time.time_ns()}.log"
    self.name = f"{group}/{numerics}"
    self.started = time.monotonic()
    with open(self.log, "w", encoding="utf-8") as log:
      self.p = subprocess.Popen(
          [sys.executable, "-m", "benchmarks.worker", group], stdin=subprocess.PIPE,
          stdout=subprocess.PIPE, stderr=log, cwd=ROOT, text=True, start_new_session=True,
          env={**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", **extra_env})
    self.ready = None

  def ask(self, request: dict | None, deadline: float) -> dict:
    if request is not None:
      try:
        self.p.stdin.write(json.dumps(request) + "\n")
        self.p.stdin.flush()
      except BrokenPipeError:
        raise WorkerFailed(self.died()) from None
    wait = min(max(deadline - time.monotonic(), 0.1), 24 * 3600)  # select takes no infinity
    if not select.select([self.p.stdout], [], [], wait)[0]:
      self.kill()
      raise TimeoutError(f"{self.name}: no answer within the time budget")
    line = self.p.stdout.readline()
    if not line:
      raise WorkerFailed(self.died())
    answer = json.loads(line)
    if not answer["ok"]:
      raise WorkerFailed(answer["error"])
    return answer

  def died(self) -> str:
    code = self.p.wait()
    last = [l for l in self.log.read_text(errors="replace").splitlines() if l.strip()]
    return f"worker {self.name} exited with code {code}: {last[-1] if last else ''}"[:300]

  def kill(self) -> None:
    if self.p.poll() is None:
      try:
        os.killpg(self.p.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
      self.p.wait()

  def close(self) -> None:
    if self.p.poll() is None:
      try:
        self.p.stdin.write('{"op": "exit"}\n')
        self.p.stdin.flush()
        self.p.wait(timeout=30)
      except (BrokenPipeError, subprocess.TimeoutExpired):
        pass
    self.kill()


def probe(group: str, log_dir: pathlib.Path) -> dict:
  """What a fresh worker of `group` reports about its framework and device."""
  proc = Proc(group, "probe", log_dir, {})
  try:
    proc.ask(None, time.monotonic() + 300)
    return proc.ask({"op": "probe"}, time.monotonic() + 60)
  finally:
    proc.close()


def worker_env(setting: plan.Setting, platform: str, local_devices: int) -> dict:
  """A worker sees the devices its setting uses (the first `devices` of the host)."""
  if platform == "cpu" and setting.devices > 1:
    return {"JAX_NUM_CPU_DEVICES": str(setting.devices)}
  if platform == "gpu" and setting.devices < local_devices:
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, range(setting.devices)))}
  return {}


class Run:
  """One invocation: the device, its ledger, what is missing, and the rows as they come."""

  def __init__(self, o: Options):
    self.o, self.t0 = o, time.monotonic()
    self.deadline = self.t0 + o.time_budget_s if o.time_budget_s else float("inf")
    self.measured, self.cut, self.failed_probe = [], [], {}
    self.device = probe("jax", o.log_dir)
    self.platform, self.local_devices = self.device["platform"], self.device["local_devices"]
    name = self.device["device"] if self.platform != "cpu" else env.cpu_model()
    self.slug = env.device_slug(name, self.platform)
    self.device_name = name
    self.path = ledger.path_for(self.slug, o.results)
    self.rows = ledger.read(self.path)
    self.code = {fw: env.step_code(fw) for fw in ("jax", "torch")}
    self.versions = {fw: env.versions(fw) for fw in ("jax", "torch")}
    self.env = {**env.git(), **env.gpu_static(), "cpu": env.cpu_model(),
                "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}
    self.planned = plan.select(
        plan.plan(self.platform, self.local_devices, batch_cap=o.batch_cap), configs=o.configs,
        contenders=o.contenders, numerics=o.numerics, batches=o.batches,
        max_priority=o.max_priority)
    if any(p.setting.framework == "torch" for p in self.planned):
      self.unmeasurable(self.torch_missing())

  def torch_missing(self) -> str | None:
    """Why the PyTorch peers cannot run beside JAX on this machine, or None."""
    try:
      torch = probe("torch_eager", self.o.log_dir)
    except WorkerFailed as e:
      return f"PyTorch unavailable ({e})"
    if (self.platform == "gpu") != (torch["device"] == "cuda"):
      return f"JAX runs on {self.platform}, PyTorch on {torch['device']}"
    return None

  def unmeasurable(self, why: str | None) -> None:
    if why:
      print(f"not measurable here: every PyTorch row: {why}", flush=True)
      self.failed_probe = {p.setting: why for p in self.planned if p.setting.framework == "torch"}

  def identity(self, s: plan.Setting) -> tuple:
    return (s.key(), self.slug, self.code[s.framework],
            schema.versions_key(self.versions[s.framework]))

  def missing(self) -> list[plan.Planned]:
    done = ledger.measured(self.rows)
    return [p for p in self.planned
            if p.setting not in self.failed_probe
            and (self.identity(p.setting) not in done
                 or (self.o.remeasure and p.setting not in {r.setting for r in self.measured}))]

  def estimate(self, s: plan.Setting) -> float:
    """Seconds a setting should take: the median of its contender's rows on this device."""
    seen = [r.wall_s for r in self.rows if r.setting.contender == s.contender]
    guess = GUESS_S[s.contender] * (2 if self.platform == "cpu" else 1)
    return float(sorted(seen)[len(seen) // 2]) if seen else guess

  def left(self) -> float:
    return self.deadline - time.monotonic()

  # -------------------------------------------------------------------------------------------

  def row(self, planned: plan.Planned, wall_s: float, fields: dict | None = None,
          error: str | None = None) -> schema.Row:
    s = planned.setting
    fields = dict(fields or {})
    extra = dict(fields.pop("extra", {}), command=self.o.command)
    names = {f.name for f in dataclasses.fields(schema.Row)}
    extra.update({k: fields.pop(k) for k in list(fields) if k not in names})
    if s.framework == "torch" and fields.get("train_flop_per_window") is None:
      fields["train_flop_per_window"] = self.flops_of(s.config)
    row = schema.Row(
        setting=s, priority=planned.priority, status="error" if error else "ok",
        device=self.device_name, device_slug=self.slug, platform=self.platform,
        step_code=self.code[s.framework], versions=self.versions[s.framework],
        env={**self.env, **fields.pop("env", {})},
        measured_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        wall_s=round(wall_s, 2), error=error, extra=extra, **fields)
    if not error:
      for k, v in roofline.place(vars(row)).items():
        setattr(row, k, v)
      if row.measured_peak_tflops and row.windows_per_s and row.train_flop_per_window:
        achieved = row.windows_per_s * row.train_flop_per_window / s.devices / 1e12
        row.mfu_measured = achieved / row.measured_peak_tflops
    return row

  def flops_of(self, config: str) -> float | None:
    """A config's analytic train FLOPs per window, from any JAX row of it (torch rows lack it)."""
    for r in reversed(self.rows):
      if r.setting.config == config and r.train_flop_per_window:
        return r.train_flop_per_window
    return None

  def write(self, row: schema.Row) -> None:
    ledger.append(self.path, row)
    self.rows.append(row)
    self.measured.append(row)
    rate = f"{row.windows_per_s:,.1f} windows/s" if row.windows_per_s else row.error
    print(f"  {row.setting.label()}: {rate} ({row.wall_s:.0f} s)", flush=True)

  def measure_group(self, group: list[plan.Planned]) -> None:
    o, procs, spent = self.o, {}, collections.Counter()
    timed = [p for p in group if p.setting.contender != "trainer"]
    trainers = [p for p in group if p.setting.contender == "trainer"]
    try:
      for p in group:  # every worker starts at once; their imports overlap
        key = (p.setting.group, p.setting.numerics)
        if key not in procs:
          procs[key] = Proc(*key, o.log_dir, worker_env(p.setting, self.platform,
                                                        self.local_devices))
      for key, proc in procs.items():
        proc.ready = proc.ask(None, self.deadline)
        share = [p for p in group if (p.setting.group, p.setting.numerics) == key]
        for p in share:
          spent[p.setting] += (time.monotonic() - proc.started) / len(share)
      live = []
      for p in timed:
        proc, start = procs[p.setting.group, p.setting.numerics], time.monotonic()
        try:
          proc.ask({"op": "prepare", "setting": dataclasses.asdict(p.setting),
                    "options": o.worker_options()}, self.deadline)
          live.append(p)
        except WorkerFailed as e:
          self.write(self.row(p, spent[p.setting] + time.monotonic() - start, error=str(e)))
        spent[p.setting] += time.monotonic() - start
      before = busy_cores()
      with env.GpuSampler() as sampler:
        for done in range(o.repeats):
          if done >= o.min_repeats and self.left() < sum(spent.values()) / max(done, 1):
            break
          for p in list(live):
            proc, start = procs[p.setting.group, p.setting.numerics], time.monotonic()
            try:
              proc.ask({"op": "repeat", "contender": p.setting.contender}, self.deadline)
            except WorkerFailed as e:
              live.remove(p)
              self.write(self.row(p, spent[p.setting], error=str(e)))
            spent[p.setting] += time.monotonic() - start
        samples = sampler.summary()
      machine = {"busy_cores_while_timing": busy_cores(before), "cores": os.cpu_count()}
      for p in live:
        proc, start = procs[p.setting.group, p.setting.numerics], time.monotonic()
        try:
          fields = proc.ask({"op": "finish", "contender": p.setting.contender},
                            self.deadline)["fields"]
          fields["env"] = dict(machine, **({"gpu_samples": samples} if samples else {}))
          self.write(self.row(p, spent[p.setting] + time.monotonic() - start, fields))
        except WorkerFailed as e:
          self.write(self.row(p, spent[p.setting] + time.monotonic() - start, error=str(e)))
      for p in trainers:
        proc, start = procs[p.setting.group, p.setting.numerics], time.monotonic()
        try:
          fields = proc.ask({"op": "trainer", "setting": dataclasses.asdict(p.setting),
                             "options": o.worker_options()}, self.deadline)["fields"]
          self.write(self.row(p, spent[p.setting] + time.monotonic() - start, fields))
        except WorkerFailed as e:
          self.write(self.row(p, spent[p.setting] + time.monotonic() - start, error=str(e)))
    except TimeoutError as e:
      written = {r.setting for r in self.measured}
      self.cut.extend(p for p in group if p.setting not in written)
      print(f"  cut: {e}; {len(self.cut)} row(s) left for the next run", flush=True)
    finally:
      for proc in procs.values():
        proc.close()


def busy_cores(since: tuple | None = None):
  """(wall, busy CPU seconds) of the whole machine now; with `since`, the cores kept busy on
  average since then, by the workers and anything else (Linux; None elsewhere)."""
  try:
    with open("/proc/stat", encoding="ascii") as f:
      ticks = [int(v) for v in f.readline().split()[1:9]]
  except OSError:
    return None
  now = (time.monotonic(), (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK"))
  if since is None:
    return now
  return round((now[1] - since[1]) / max(now[0] - since[0], 1e-9), 2)


def groups_of(todo: list[plan.Planned]) -> list[list[plan.Planned]]:
  """Settings measured together: the same priority, config, batch, devices and mapping."""
  out = collections.OrderedDict()
  for p in todo:
    s = p.setting
    out.setdefault((p.priority, s.config, s.batch, s.devices, s.mapping, s.conv_impl),
                   []).append(p)
  return list(out.values())


def run(o: Options) -> int:
  r = Run(o)
  todo = r.missing()
  print(f"device: {r.device_name} ({r.platform}, {r.local_devices} local device(s)); ledger "
        f"{r.path} holds {len(r.rows)} row(s); {len(todo)} of {len(r.planned)} planned "
        "setting(s) to measure", flush=True)
  for group in ([] if o.dry_run else groups_of(todo)):
    cost = sum(r.estimate(p.setting) for p in group) + SPAWN_S
    if r.left() < 0.6 * cost:
      continue  # a later, smaller group may still fit
    print(f"== priority {group[0].priority}: {group[0].setting.config} batch "
          f"{group[0].setting.batch}: {', '.join(p.setting.contender + '/' + p.setting.numerics for p in group)} "
          f"(about {cost:.0f} s; {r.left():.0f} s left)", flush=True)
    r.measure_group(group)
  return summary(r)


def summary(r: Run) -> int:
  left = r.missing()
  print(f"\nmeasured {len(r.measured)} row(s) in {time.monotonic() - r.t0:.0f} s into {r.path}")
  by_priority = collections.defaultdict(list)
  for p in left:
    by_priority[p.priority].append(p)
  for priority in sorted(by_priority):
    rest = by_priority[priority]
    seconds = sum(r.estimate(p.setting) for p in rest)
    print(f"left at priority {priority}: {len(rest)} row(s), about {seconds:.0f} s at the costs "
          f"measured so far: {', '.join(p.setting.label() for p in rest[:6])}"
          + (" ..." if len(rest) > 6 else ""))
  if not left:
    print("the plan is complete on this device")
  elif r.o.command:
    print(f"next lease: {r.o.command}")
  missing_core = [p for p in left if r.o.require_priority
                  and p.priority <= r.o.require_priority]
  if missing_core:
    print(f"FAILED: {len(missing_core)} row(s) of priority <= {r.o.require_priority} missing")
    return 3
  return 0
