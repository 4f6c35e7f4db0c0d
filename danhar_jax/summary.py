"""`--mode=summary`: the parameter table, the paper's "M" (2^20 parameters) and forward FLOPs."""

import jax
from clu import parameter_overview

from danhar_jax import models


def summary(config) -> str:
  """A printable report whose last line is `params: <int>`. Needs no data."""
  model = models.create_model(config)
  variables = jax.eval_shape(lambda: models.init_variables(model, config.input_shape))
  n = models.count_params(variables["params"])
  flops = models.forward_flops(model, config.input_shape)
  return "\n".join([
      parameter_overview.get_parameter_overview(variables["params"], include_stats=False),
      f"model: backbone={config.model.backbone} attention={config.model.attention} "
      f"input (time, sensors)={tuple(config.input_shape)} classes={config.num_classes}"
      f"{' time_as_channels' if config.model.time_as_channels else ''}",
      f"compute on {jax.default_backend()}: dtype={config.model.dtype} conv_impl="
      f"{model.conv_impl} (config: {config.model.conv_impl}) matmul_precision="
      f"{config.get('matmul_precision', 'default')}",
      f"forward FLOPs per window: {flops:,} ({flops / 1e6:.1f} MFLOP)",
      f"parameters: {n:,} = {n / 2**20:.2f} M (the paper's M is 2^20) = {n / 1e6:.3f} million",
      f"params: {n}",
  ])
