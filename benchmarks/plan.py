"""What the benchmark measures: a frozen `Setting` per row, and one ordered plan with priorities.

A lease measures the highest-priority settings its ledger lacks first, so however short it is,
it adds the next rows of the same table (runner.py). Priority 1 is the core table; the rest
widens it.
"""

from __future__ import annotations

import dataclasses

CONFIGS = ("wisdm", "pamap2", "unimib_shar", "opportunity", "weakly")

# name → (compute dtype, JAX matmul precision). 'tf32' is float32 with TF32 (or TPU bf16_3x)
# matmuls and convs; 'f32' full float32; 'torch_default' is whatever PyTorch does untouched
# (the authors' eager peer, which no numerics switch may reach).
NUMERICS = {"f32": ("float32", "highest"), "tf32": ("float32", "high"),
            "bf16": ("bfloat16", "default"), "torch_default": ("float32", "default")}

# contender → the process group it runs in. Each group is its own subprocess, so that
# process-wide switches (cudnn.benchmark, TF32 flags, XLA flags) cannot leak between groups.
CONTENDERS = {
    "block": "jax",            # the trainer's own K-step device call: the ceiling of main.py
    "step": "jax",             # the same step, one per device call
    "trainer": "jax",          # the real train_and_evaluate loop
    "latency": "jax",          # batch-1 inference, p50 and p99
    "eager": "torch_eager",    # the authors' PyTorch, untouched by any tuning
    "tuned": "torch_tuned",    # layout, fused Adam, TF32/bf16 autocast, CUDA graph on a GPU
    "compiled": "torch_compiled",  # torch.compile of the whole step, CUDA graphs on a GPU
    "torch_latency": "torch_tuned",  # the tuned PyTorch model's batch-1 inference
}
MAPPINGS = ("pmap", "shard_map")
CONV_IMPLS = ("auto", "xla", "im2col", "winograd")

# Windows in each config's real training split (the authors' files, docs/datasets.md): the
# block and trainer gather from a synthetic split this size, since a block's cost may grow with it.
TRAIN_WINDOWS = {"wisdm": 7686, "pamap2": 5568, "unimib_shar": 7734, "opportunity": 25343,
                 "weakly": 8365}


def one_of(field: str, value, allowed) -> None:
  if value not in allowed:
    raise ValueError(f"{field} {value!r} is not one of: {', '.join(map(str, allowed))}")


@dataclasses.dataclass(frozen=True, order=True)
class Setting:
  """One row of the table: which contender, on what, how."""
  config: str
  contender: str
  numerics: str
  batch: int
  devices: int = 1
  mapping: str = "pmap"
  conv_impl: str = "auto"

  def __post_init__(self):
    one_of("config", self.config.partition(":")[0], CONFIGS)
    one_of("contender", self.contender, CONTENDERS)
    one_of("numerics", self.numerics, NUMERICS)
    one_of("mapping", self.mapping, MAPPINGS)
    one_of("conv_impl", self.conv_impl, CONV_IMPLS)
    for field in ("batch", "devices"):
      value = getattr(self, field)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{field} {value!r} must be a whole number >= 1")
    if (self.contender == "eager") != (self.numerics == "torch_default"):
      raise ValueError(f"numerics {self.numerics!r} with contender {self.contender!r}: the "
                       "eager peer, and only it, runs PyTorch's defaults ('torch_default')")

  @property
  def group(self) -> str:
    return CONTENDERS[self.contender]

  @property
  def framework(self) -> str:
    return self.group.partition("_")[0]

  def key(self) -> str:
    """The setting's identity in a ledger."""
    return "|".join(str(v) for v in dataclasses.astuple(self))

  def label(self) -> str:
    extra = [f"{self.devices} dev"] * (self.devices > 1) + [self.mapping] * (
        self.mapping != "pmap") + [self.conv_impl] * (self.conv_impl != "auto")
    return (f"{self.config} {self.contender} {self.numerics} b{self.batch}"
            + "".join(f" {e}" for e in extra))

  @classmethod
  def from_dict(cls, d: dict) -> "Setting":
    return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


@dataclasses.dataclass(frozen=True)
class Planned:
  priority: int
  setting: Setting


def plan(backend: str, local_devices: int = 1, configs=CONFIGS,
         batch_cap: int = 0) -> list[Planned]:
  """Every setting for this backend, highest priority first, without duplicates. With
  `batch_cap`, batches above it become it: a rehearsal's sizes on a CPU."""
  accelerator = backend != "cpu"
  numerics = ("tf32", "bf16") if accelerator else ("f32",)
  core_batches = (256,) if accelerator else (64, 256)
  out: list[Planned] = []

  def add(priority, config, contender, num, batch, **kw):
    batch = min(batch, batch_cap) if batch_cap else batch
    out.append(Planned(priority, Setting(config, contender, num, batch, **kw)))

  for batch in core_batches:  # 1: the core table
    for config in configs:
      add(1, config, "eager", "torch_default", batch)
      for num in numerics:
        for contender in ("block", "trainer", "tuned"):
          add(1, config, contender, num, batch)
  for batch in core_batches:  # 2: torch.compile
    for config in configs:
      for num in numerics:
        add(2, config, "compiled", num, batch)
  for config in configs:  # 3: latency, one step per call
    add(3, config, "latency", numerics[0], 1)
    add(3, config, "torch_latency", numerics[0], 1)
    add(3, config, "step", numerics[0], core_batches[-1])
  sweep = (64, 512, 1024, 2048, 4096) if accelerator else (128, 512)
  for batch in sweep:  # 4: batch sweeps
    for config in configs:
      for num in numerics:
        for contender in ("block", "tuned"):
          add(4, config, contender, num, batch)
  for config in configs:  # 5: full float32 on accelerators, shard_map
    if accelerator:
      add(5, config, "block", "f32", 256)
      add(5, config, "tuned", "f32", 256)
    add(5, config, "block", numerics[0], 256, mapping="shard_map")
  if local_devices > 1:  # 6: several devices, data parallel
    for config in configs:
      for mapping in MAPPINGS:
        add(6, config, "block", numerics[0], 256 * local_devices, devices=local_devices,
            mapping=mapping)
  seen, unique = set(), []
  for p in out:
    if p.setting not in seen:
      seen.add(p.setting)
      unique.append(p)
  return sorted(unique, key=lambda p: p.priority)  # stable: the order above within a priority


def select(planned: list[Planned], *, configs=(), contenders=(), numerics=(), batches=(),
           max_priority: int = 0) -> list[Planned]:
  """The plan restricted to the named values (empty: all); unknown names fail in one line."""
  for field, values, allowed in (("config", configs, CONFIGS), ("contender", contenders,
                                                                 CONTENDERS),
                                 ("numerics", numerics, NUMERICS)):
    for v in values:
      one_of(field, v, allowed)
  keep = lambda values, v: not values or v in values
  return [p for p in planned
          if keep(configs, p.setting.config) and keep(contenders, p.setting.contender)
          and keep(numerics, p.setting.numerics) and keep(batches, p.setting.batch)
          and (not max_priority or p.priority <= max_priority)]
