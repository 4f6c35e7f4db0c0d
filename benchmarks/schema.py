"""One versioned row type for every measurement, written as one JSON line.

A row is a `Setting` (plan.py) plus where, with what and how fast it ran. Fields a contender does
not measure stay None; what only one contender has goes in `extra`. Raise SCHEMA when a field
changes meaning: rows of another version are read as not measured, and measured again.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from benchmarks import plan

SCHEMA = 1


@dataclasses.dataclass
class Row:
  setting: plan.Setting
  priority: int
  status: str                   # 'ok', or 'error' with `error` saying why (OOM, compile, capture)
  device: str                   # JAX's device_kind / torch's device name / the CPU's model
  device_slug: str              # the ledger's file name: benchmarks/results/<device_slug>.jsonl
  platform: str                 # cpu, gpu, tpu
  step_code: str                # hash of the code that computes the step (env.step_code)
  versions: dict                # packages that compute it (env.versions)
  env: dict                     # git SHA and dirty flag, driver, CUDA, cuDNN, clocks sampled
  measured_at: str              # UTC, ISO 8601
  wall_s: float                 # the whole row: process share, compile, warmup, repeats
  error: str | None = None
  compile_s: float | None = None
  windows_per_s: float | None = None     # median over the repeats
  ms_per_step: float | None = None       # median; min, max and IQR beside it
  ms_min: float | None = None
  ms_max: float | None = None
  ms_iqr: float | None = None
  repeats: int | None = None
  steps_per_repeat: int | None = None
  latency_p50_ms: float | None = None    # batch-1 contenders
  latency_p99_ms: float | None = None
  peak_memory_bytes: int | None = None
  memory_kind: str | None = None         # 'device' (JAX memory_stats, torch max_memory_allocated)
                                         # or 'host_rss' (the worker process's peak RSS)
  train_flop_per_window: float | None = None   # analytic: 3 × the forward's conv+Dense MACs × 2
  xla_flop_per_step: float | None = None       # XLA cost analysis of one step, per device
  xla_bytes_per_step: float | None = None
  arithmetic_intensity: float | None = None    # XLA FLOPs / bytes accessed
  datasheet_tflops: float | None = None        # per device, in these numerics
  datasheet_tb_per_s: float | None = None
  roofline_tflops: float | None = None         # min(peak, intensity × bandwidth)
  roofline_fraction: float | None = None       # achieved / roofline
  mfu_datasheet: float | None = None
  mfu_measured: float | None = None            # against the matmul timed in the same process
  measured_peak_tflops: float | None = None
  why_no_datasheet: str | None = None
  extra: dict = dataclasses.field(default_factory=dict)
  schema: int = SCHEMA

  def to_json(self) -> str:
    d = dataclasses.asdict(self)
    d["setting"] = dataclasses.asdict(self.setting)
    return json.dumps(d, sort_keys=False, default=float)

  @classmethod
  def from_json(cls, line: str) -> "Row":
    """The row of one ledger line; ValueError (saying why) if it is not one of this schema."""
    try:
      d = json.loads(line)
    except json.JSONDecodeError as e:
      raise ValueError(f"not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(d, dict):
      raise ValueError("not a JSON object")
    if d.get("schema") != SCHEMA:
      raise ValueError(f"schema {d.get('schema')!r}, not {SCHEMA}")
    names = {f.name for f in dataclasses.fields(cls)}
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and f.name not in d]
    if missing:
      raise ValueError(f"missing field(s) {', '.join(missing)}")
    unknown = sorted(set(d) - names)
    if unknown:
      raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    try:
      d["setting"] = plan.Setting.from_dict(d["setting"])
    except (TypeError, KeyError, ValueError) as e:
      raise ValueError(f"bad setting: {e}") from None
    if d["status"] not in ("ok", "error"):
      raise ValueError(f"status {d['status']!r} is not 'ok' or 'error'")
    return cls(**d)

  def identity(self) -> tuple:
    """What makes two rows the same measurement: a ledger holds each at most once."""
    return (self.setting.key(), self.device_slug, self.step_code, versions_key(self.versions))

  def get(self, name: str, default: Any = None) -> Any:
    """A field, or a contender-specific one from `extra`."""
    if name in self.__dataclass_fields__:
      return getattr(self, name)
    return self.extra.get(name, default)


def versions_key(versions: dict) -> str:
  return ",".join(f"{k}={versions[k]}" for k in sorted(versions))
