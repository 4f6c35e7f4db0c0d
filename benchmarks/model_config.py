"""The project config a Setting runs: the dataset's own config with the setting's numerics,
batch, mapping and conv implementation."""

from __future__ import annotations

import importlib

from benchmarks import plan


def config_for(setting: plan.Setting, widths: tuple[int, ...] = ()):
  """configs/<name>.py[:variant] with the setting applied; `widths` shrinks the model (a QUICK
  rehearsal on a CPU)."""
  name, _, variant = setting.config.partition(":")
  config = importlib.import_module(f"configs.{name}").get_config(variant or None)
  dtype, precision = plan.NUMERICS[setting.numerics]
  with config.unlocked():
    config.model.dtype, config.matmul_precision = dtype, precision
    config.batch_size = setting.batch
    config.parallelism = setting.mapping
    if setting.conv_impl != "auto":
      config.model.conv_impl = setting.conv_impl
    if widths:
      config.model.widths = tuple(widths)
  return config
