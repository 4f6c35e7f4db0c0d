"""PyTorch's `BatchNorm2d` on NHWC activations, with PyTorch's running statistics."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's BatchNorm2d: momentum 0.1 on the new statistic is 0.9 on the old one.
BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5


def global_count(local: int, axis_name: str | None):
  """`local` positions per device, summed over the devices of `axis_name` (the global batch)."""
  return local * (1 if axis_name is None else jax.lax.psum(1, axis_name))


def batch_moments(y, axis_name: str | None):
  """Per-channel mean and biased variance of y `[N, T, S, C]` over the global batch, in float32,
  as E[y²] - E[y]² in one pass (Flax's `nn.BatchNorm` arithmetic)."""
  y = y.astype(jnp.promote_types(y.dtype, jnp.float32))
  mean, mean_sq = jnp.mean(y, axis=(0, 1, 2)), jnp.mean(jax.lax.square(y), axis=(0, 1, 2))
  if axis_name is not None:
    stacked = jax.lax.pmean(jnp.stack([mean, mean_sq]), axis_name)
    mean, mean_sq = stacked[0], stacked[1]
  return mean, jnp.maximum(0.0, mean_sq - jax.lax.square(mean))


def patch_moments(cols, axis_name: str | None):
  """Mean `[K]` and covariance `[K, K]` of the patch rows of `cols` `[..., K]` over the global
  batch, and their number. Centred in two passes: raw accelerometer values carry a mean of ~1 g."""
  rows = cols.reshape(-1, cols.shape[-1]).astype(jnp.float32)
  pmean = (lambda v: v) if axis_name is None else functools.partial(jax.lax.pmean,
                                                                    axis_name=axis_name)
  mean = pmean(jnp.mean(rows, axis=0))
  centred = rows - mean
  covariance = pmean(centred.T @ centred / rows.shape[0])
  return mean, covariance, global_count(rows.shape[0], axis_name)


class BatchNorm2d(nn.Module):
  """`scale`, `bias` (params) and running `mean`, `var` (batch_stats) of `features` channels.

  In training the input comes *without* its conv's bias (`conv_bn`): the batch mean absorbs a
  bias exactly and the variance ignores it, so leaving it out changes no output and saves a pass
  over the activations. The bias goes to the running mean instead, so evaluation, whose input
  includes it, sees the statistics of a model that kept it. Like PyTorch, the running variance
  takes the unbiased batch variance, n/(n-1) times the biased one.
  """
  features: int
  axis_name: str | None = None
  dtype: Any = jnp.float32
  momentum: float = BN_MOMENTUM
  epsilon: float = BN_EPSILON

  def setup(self):
    shape = (self.features,)
    self.scale = self.param("scale", nn.initializers.ones, shape)
    self.bias = self.param("bias", nn.initializers.zeros, shape)
    self.running_mean = self.variable("batch_stats", "mean", jnp.zeros, shape, jnp.float32)
    self.running_var = self.variable("batch_stats", "var", jnp.ones, shape, jnp.float32)

  def __call__(self, y, train: bool, conv_bias=None):
    """BatchNorm of y `[N, T, S, C]`: batch statistics in training, running ones otherwise."""
    if not train:
      mean, var = self.running_mean.value, self.running_var.value
    elif self.is_initializing():
      mean, var = batch_moments(y, None)
    else:
      mean, var = batch_moments(y, self.axis_name)
      self.update(mean, var, global_count(y.size // y.shape[-1], self.axis_name), conv_bias)
    mul = jax.lax.rsqrt(var + self.epsilon) * self.scale
    return ((y - mean) * mul + self.bias).astype(self.dtype)

  def from_patches(self, cols, moments, w, conv_bias):
    """Training-mode BatchNorm of the conv `cols @ w`, from the patches' `moments`.

    A conv output is y = P·w with P the `[n, k]` patch rows, so its batch mean is mean(P)·w and
    its variance wᵀ·cov(P)·w, and BatchNorm's output is one matmul, P·(w·s) + (β - mean·s) with
    s = γ/√(var + ε). That skips every pass over y, forward and backward.
    """
    mean_p, cov_p, count = moments
    mean, var = mean_p @ w, jnp.sum((cov_p @ w) * w, axis=0)
    if not self.is_initializing():
      self.update(mean, var, count, conv_bias)
    inverse = self.scale * jax.lax.rsqrt(var + self.epsilon)
    return jnp.dot(cols, w * inverse) + (self.bias - mean * inverse)

  def update(self, mean, var, count, conv_bias=None):
    m = self.momentum
    if conv_bias is not None:
      mean = mean + conv_bias
    self.running_mean.value = m * self.running_mean.value + (1 - m) * mean
    self.running_var.value = m * self.running_var.value + (1 - m) * var * count / (count - 1)
