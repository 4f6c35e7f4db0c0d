"""Run one per-device step function under `jax.pmap` or under `jax.shard_map` + `jax.jit`.

The train and eval steps are written once, per device, with explicit collectives over the named
axis `AXIS`. This module only decides how they are mapped over the local devices and how arrays
are laid out for each: pmap wants a leading device axis on everything, shard_map wants global
arrays that are replicated (`P()`) or split along the batch (`P(AXIS)`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "batch"
MODES = ("pmap", "shard_map")


@dataclasses.dataclass(frozen=True)
class Parallel:
  """How per-device functions run. `replicated` inputs are the same on every device."""
  mode: str

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"config.parallelism={self.mode!r} is not one of {', '.join(MODES)}.")

  @property
  def mesh(self):
    return jax.make_mesh((jax.device_count(),), (AXIS,),
                         axis_types=(jax.sharding.AxisType.Explicit,))

  def map(self, fn: Callable, *, in_replicated: tuple[bool, ...], out_replicated: bool | tuple,
          donate_argnums=()) -> Callable:
    """`fn` mapped over devices. Each argument and output is replicated (True) or split along
    the batch (False), as `in_replicated` and `out_replicated` say."""
    if self.mode == "pmap":
      return jax.pmap(fn, axis_name=AXIS, donate_argnums=donate_argnums)
    spec = lambda r: P() if r else P(AXIS)
    out = (tuple(map(spec, out_replicated)) if isinstance(out_replicated, tuple)
           else spec(out_replicated))
    # With its check on (check_vma), shard_map proves that the replicated outputs are: the steps
    # make them so with pmean and psum.
    mapped = jax.shard_map(fn, mesh=self.mesh, in_specs=tuple(map(spec, in_replicated)),
                           out_specs=out)
    return jax.jit(mapped, donate_argnums=donate_argnums)

  def replicate(self, tree, devices=None):
    """Host (or single-device) pytree → the same value on every device (pmap: or on `devices`)."""
    if self.mode == "pmap":
      # Laid out as pmap lays out its outputs: a leading axis over the local devices, on a mesh
      # named AXIS. flax.jax_utils.replicate uses a mesh of another name, so the step's second
      # call, on its own output, would miss the compile cache and compile again.
      devices = devices or jax.local_devices()
      n = len(devices)
      sharding = pmap_sharding(devices)
      return jax.tree.map(lambda x: jax.device_put(
          np.broadcast_to(np.asarray(x)[None], (n, *np.shape(x))), sharding), tree)
    return jax.device_put(tree, NamedSharding(self.mesh, P()))

  def place(self, local: np.ndarray):
    """`shard`, already on the devices: for arrays that serve many calls (pmap would otherwise
    copy a host array to the devices at every call)."""
    if self.mode == "pmap":
      return jax.device_put(local, pmap_sharding(jax.local_devices()))
    return self.shard(local)

  def unreplicate(self, tree):
    """The inverse of `replicate`, on the first local device's copy."""
    if self.mode == "pmap":
      return jax.tree.map(lambda x: x[0], tree)
    return tree

  def shard(self, local: np.ndarray):
    """This process's rows `[local_devices, per_device, ...]` of a batch → device arrays."""
    if self.mode == "pmap":
      return local  # pmap splits the leading axis over the local devices itself
    flat = local.reshape(-1, *local.shape[2:])
    return jax.make_array_from_process_local_data(NamedSharding(self.mesh, P(AXIS)), flat)


def pmap_sharding(devices) -> NamedSharding:
  """The layout pmap gives its outputs: a leading axis over `devices`, on a mesh named AXIS."""
  return NamedSharding(jax.sharding.Mesh(np.array(devices), (AXIS,)), P(AXIS))


def block(tree) -> None:
  """Waits for `tree`. On CPU, queued shard_map steps with collectives can deadlock."""
  jax.tree.map(lambda x: x.block_until_ready() if isinstance(x, jnp.ndarray) else x, tree)
