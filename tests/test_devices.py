"""Eight devices, as on a TPU v4-8 or an 8-GPU node, emulated by splitting the CPU: the authors'
batches do not divide, the run says which do, and a batch that divides trains like one device."""

import os
import subprocess
import sys

import numpy as np
import pytest

from danhar_jax import train
from tests.test_train import ROOT, run_on_devices

pytestmark = [pytest.mark.host_devices, pytest.mark.slow]

EIGHT = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")

INDIVISIBLE = """
import jax
from danhar_jax import input_pipeline, train
from tests.test_train import fake_splits, quick_config
assert jax.device_count() == 8, jax.devices()
jax.config.update("jax_log_compiles", True)  # the trainer must fail before compiling anything
config = quick_config(1)
config.parallelism, config.batch_size = {mode!r}, 210
try:
  train.Trainer(config, *fake_splits(n_train=400)[:2])
except ValueError as e:
  print("ERROR:", e)
"""


@pytest.mark.parametrize("batch,devices,nearest", [(210, 8, (208, 216)), (300, 8, (296, 304)),
                                                   (64, 8, (64,)), (5, 8, (8,))])
def test_divisible_batches_are_the_nearest_multiples(batch, devices, nearest):
  assert train.divisible_batches(batch, devices) == nearest


@pytest.mark.parametrize("mode", ["pmap", "shard_map"])
def test_an_indivisible_batch_names_the_devices_and_the_valid_sizes(mode):
  code = INDIVISIBLE.format(mode=mode)
  proc = subprocess.run([sys.executable, "-c", code], env=EIGHT, cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert ("ERROR: config.batch_size=210 does not divide across the 8 devices; use 208 or 216 "
          "(config.batch_size is the global batch).") in proc.stdout
  assert "Compiling" not in proc.stderr


def test_pmap_and_shard_map_on_eight_devices_match_one_device(tmp_path):
  """Global batch 32 over 8 devices (4 each): the same training as on one device, within the
  tolerance that test_train's two-device test explains."""
  one = run_on_devices(1, ["pmap"], tmp_path)["pmap"]
  eight = run_on_devices(8, ["pmap", "shard_map"], tmp_path)
  for mode, params in eight.items():
    assert np.abs(params - one).max() <= 2 * 1e-3 * 6, mode
    assert np.linalg.norm(params - one) / np.linalg.norm(one) < 2e-3, mode
