"""`conv_bn`: the one place that chooses how a conv and the BatchNorm after it are computed.

Every conv of DanHAR feeds a BatchNorm. `conv_bn` picks, from the conv's `impl`, the input and
the mode, among three paths that give the same outputs and running statistics:

- the 1-channel input layer in training: BatchNorm straight from the patches' moments
  (`BatchNorm2d.from_patches`), skipping the passes over the model's largest activations;
- conv1 and the shortcut under Winograd: one input transform (and, backwards, one overlap-add)
  serves both, since they read the same input with the same kernel and stride;
- otherwise each conv on its own.

In training the conv biases are left out and go to the running means (`BatchNorm2d`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from danhar_jax.ops.batch_norm import BatchNorm2d, patch_moments
from danhar_jax.ops.conv import ConvK1, conv_k1, im2col_columns, mask_conv
from danhar_jax.ops.winograd import winograd_applies


def layers(conv_impl: str, dtype: Any, bn_axis_name: str | None):
  """The (conv, norm, attention conv) constructors a block is built from, for one conv_impl."""
  conv = functools.partial(ConvK1, impl=conv_impl, dtype=dtype)
  norm = functools.partial(BatchNorm2d, axis_name=bn_axis_name, dtype=dtype)
  attention_conv = functools.partial(nn.Conv, dtype=dtype,
                                     conv_general_dilated=mask_conv(conv_impl))
  return conv, norm, attention_conv


def conv_bn(x, pairs: Sequence[tuple[ConvK1, BatchNorm2d]], train: bool) -> list:
  """`[bn(conv(x)) for conv, bn in pairs]`; the convs share kernel, stride and padding."""
  conv = pairs[0][0]
  cin, geometry = x.shape[-1], (conv.kernel, conv.stride, conv.padding)
  if (train and cin == 1 and conv.impl != "xla" and jnp.dtype(conv.dtype) == jnp.float32):
    cols = im2col_columns(x, *geometry)
    moments = patch_moments(cols, pairs[0][1].axis_name)
    out = []
    for c, bn in pairs:
      w, b = c.weights(cin)
      out.append(bn.from_patches(cols, moments, w.reshape(conv.kernel, c.features), b))
    return out
  if (len(pairs) > 1 and conv.impl == "winograd"
      and winograd_applies(conv.kernel, conv.stride, cin, conv.dtype)):
    ws, bs = zip(*(c.weights(cin) for c, _ in pairs))
    fused = conv_k1(x, jnp.concatenate(ws, -1), None if train else jnp.concatenate(bs),
                    conv.stride, conv.padding, conv.impl, conv.dtype)
    ys = jnp.split(fused, len(pairs), axis=-1)
  else:
    ys = [c(x, add_bias=not train) for c, _ in pairs]
  return [bn(y, train, c.weights(cin)[1]) for y, (c, bn) in zip(ys, pairs)]
