"""`--mode=summary`: the parameter table, the paper's "M" (2^20 parameters) and forward FLOPs."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from danhar_jax import models
from danhar_jax import train
from danhar_jax.ops.conv import ConvK1


def count_params(params) -> int:
  """Trainable parameters, as the paper counts them (BatchNorm running statistics excluded)."""
  return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def parameter_table(params) -> str:
  """Each parameter's name, shape, dtype and size, and their total (CLU's parameter overview)."""
  flat = sorted(traverse_util.flatten_dict(params, sep="/").items())
  rows = [("Name", "Shape", "Dtype", "Size")] + [
      (name, str(tuple(p.shape)), str(p.dtype), f"{int(np.prod(p.shape)):,}") for name, p in flat]
  widths = [max(len(r[i]) for r in rows) for i in range(4)]
  rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
  line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
  total = sum(int(np.prod(p.shape)) for _, p in flat)
  size = sum(int(np.prod(p.shape)) * np.dtype(p.dtype).itemsize for _, p in flat)
  return "\n".join([rule, line(rows[0]), rule, *map(line, rows[1:]), rule,
                    f"Total: {total:,} -- {size:,} bytes"])


def forward_flops(model: models.DanHAR, input_shape: Sequence[int]) -> int:
  """Analytic FLOPs of one window's forward pass: 2 × multiply-accumulates of every conv and Dense.

  Counted from the shapes each layer actually sees (an interceptor records them), so it follows any
  config. Elementwise work (BN, ReLU, pooling, sigmoids) is left out, as is usual for MFU. These are
  the model's FLOPs whatever `conv_impl` computes them with: Winograd does fewer multiplications,
  and its MFU shows that as a higher utilisation, as for cuDNN's Winograd kernels.
  """
  model = model.clone(conv_impl="im2col")  # one ConvK1 call per conv (Winograd fuses a pair)
  flops = []

  def count(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    mod = context.module
    if context.method_name == "__call__" and isinstance(mod, (ConvK1, nn.Conv, nn.Dense)):
      x = args[0]
      if isinstance(mod, ConvK1):
        macs = np.prod(out.shape[:-1]) * mod.features * mod.kernel * x.shape[-1]
      elif isinstance(mod, nn.Conv):
        macs = np.prod(out.shape[:-1]) * mod.features * np.prod(mod.kernel_size) * x.shape[-1]
      else:
        macs = np.prod(out.shape) * x.shape[-1]
      flops.append(2 * int(macs))
    return out

  dummy = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  with nn.intercept_methods(count):
    jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, train=False), dummy)
  return sum(flops)


def summary(config) -> str:
  """A printable report whose last line is `params: <int>`. Needs no data."""
  model = models.create_model(config)
  variables = jax.eval_shape(lambda: models.init_variables(model, config.input_shape))
  n = count_params(variables["params"])
  flops = forward_flops(model, config.input_shape)
  return "\n".join([
      parameter_table(variables["params"]),
      f"model: backbone={config.model.backbone} attention={config.model.attention} "
      f"input (time, sensors)={tuple(config.input_shape)} classes={config.num_classes}"
      f"{' time_as_channels' if config.model.time_as_channels else ''}",
      f"objective: cross-entropy, logit_standardization="
      f"{'on' if config.model.logit_standardization else 'off'} (the authors' logit LayerNorm)",
      f"compute on {jax.default_backend()}: dtype={config.model.dtype} conv_impl="
      f"{model.conv_impl} (config: {config.model.conv_impl}) matmul_precision="
      f"{config.get('matmul_precision', 'default')} steps_per_call="
      f"{train.resolve_steps_per_call(config.get('steps_per_call', 0), jax.default_backend())} "
      f"(config: {config.get('steps_per_call', 0)})",
      f"forward FLOPs per window: {flops:,} ({flops / 1e6:.1f} MFLOP)",
      f"parameters: {n:,} = {n / 2**20:.2f} M (the paper's M is 2^20) = {n / 1e6:.3f} million",
      f"params: {n}",
  ])
