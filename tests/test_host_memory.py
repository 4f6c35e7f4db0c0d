"""host_memory.keep_freed_memory: XLA:CPU's step temporaries are reused, not faulted in again.

glibc's malloc settings are per process and must be set before JAX starts its threads, so each
case runs in a fresh interpreter.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # spawns processes that time steps

# A jitted step with a 64 MiB temporary between two matmuls: 16,384 pages of 4 KiB.
SCRIPT = """
import json, resource, sys
from danhar_jax import host_memory
kept = host_memory.keep_freed_memory() if sys.argv[1] == "keep" else None
import jax, jax.numpy as jnp
a, b = jnp.ones((16384, 8)), jnp.ones((8, 1024))
step = jax.jit(lambda a, b: jnp.tanh(a @ b) @ b.T)
faults = []
for _ in range(16):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  jax.block_until_ready(step(a, b))
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"kept": kept, "faults": faults}))
"""
PAGES = 64 * 2 ** 20 // 4096


def page_faults(mode: str) -> dict:
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, check=True,
                       capture_output=True, text=True, timeout=300)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_step_memory_is_reused_instead_of_faulted_in_again():
  kept = page_faults("keep")
  if not kept["kept"]:
    pytest.skip("not glibc: keep_freed_memory does nothing here")
  # A typical call touches no new page. The heap still grows now and then, when a freed block
  # has been split by smaller allocations, so single calls may fault a new block in...
  assert np.median(kept["faults"][4:]) < 64, kept
  # ...where glibc's default maps the temporary afresh, and faults it in, on every call.
  default = page_faults("default")
  assert np.median(default["faults"][4:]) >= 0.95 * PAGES, default
