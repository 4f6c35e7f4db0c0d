"""Keeps the host memory that XLA:CPU frees after a step, so the next step reuses it.

XLA:CPU allocates all of a step's temporaries as one block (363 MB for a WISDM train step at batch
64) and frees it when the step ends. glibc serves a block that large with `mmap`, from the worker
thread's arena, and gives it back with `munmap`. Every step then faults the whole block in again,
one zeroed 4 KiB page at a time (benchmarks/README.md, Findings, has the counts).

`keep_freed_memory()` makes glibc serve every thread from its main heap, without `mmap`, and never
trim that heap, so the block freed by one step is the block the next step gets: a WISDM step then
faults no page at all. The heap still grows now and then,
when smaller allocations have split a freed block, and it never shrinks: the process keeps its
peak heap until it exits. It must run before JAX starts its threads, so `main.py` and the
benchmarks call it before their first computation. Without glibc (macOS, musl) it does nothing.

It is a CPU-backend measure: `keep_freed_memory_on_cpu()` applies it only when JAX will run on
the CPU, judged before JAX starts (`expected_platform`), and leaves GPU and TPU processes alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.metadata
import importlib.util
import os
import pkgutil

# mallopt(3) parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8


@functools.cache
def keep_freed_memory() -> bool:
  """Tunes glibc's malloc as described above; True if it could (glibc found, every call took)."""
  name = ctypes.util.find_library("c")
  if name is None:
    return False
  try:
    libc = ctypes.CDLL(name)
    mallopt, _ = libc.mallopt, libc.gnu_get_libc_version  # both exist only in glibc
  except (OSError, AttributeError):
    return False
  # One arena: a worker thread's own arena is capped at 64 MiB and falls back to mmap for a block
  # this size. No mmap, and no trimming of the heap's free top (-1: never; a 2 GiB threshold
  # still unmapped PAMAP2's 2 GB im2col temporaries every step), so freed blocks stay mapped.
  return all(mallopt(param, value) == 1 for param, value in
             ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))


def expected_platform() -> str:
  """The platform JAX will pick, judged without starting it: 'cpu', or the first platform
  JAX_PLATFORMS names, or the accelerator plugin installed ('cuda', 'rocm', 'tpu')."""
  named = os.environ.get("JAX_PLATFORMS") or os.environ.get("JAX_PLATFORM_NAME")
  if named:
    return named.split(",")[0].strip().lower()
  plugins = [ep.name for ep in importlib.metadata.entry_points(group="jax_plugins")]
  try:
    import jax_plugins  # the namespace JAX scans for PJRT plugins; it imports nothing else
    plugins += [m.name for m in pkgutil.iter_modules(jax_plugins.__path__)]
  except ImportError:
    pass
  for plugin in plugins:
    for platform in ("cuda", "rocm", "tpu"):
      if platform in plugin.lower():
        return platform
  if importlib.util.find_spec("libtpu") is not None:
    return "tpu"
  return "cpu"


def keep_freed_memory_on_cpu() -> bool:
  """`keep_freed_memory()` if JAX will run on the CPU, else nothing; True if it was applied."""
  return expected_platform() == "cpu" and keep_freed_memory()
