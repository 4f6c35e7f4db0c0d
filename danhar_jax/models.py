"""DanHAR (Gao et al. 2021) and its baselines, as the authors' PyTorch code builds them.

One module covers the paper's model zoo:

  backbone='cnn',    attention='none'              "Standard CNN"
  backbone='resnet', attention='none'              "Residual Network"
  backbone='resnet', attention='channel_temporal'  DanHAR (the "Att-based ResNet")
  backbone='cnn',    attention=<any but none>      "Att-based CNN": attention after each block
  attention in {'channel', 'temporal', 'temporal_channel'}   the ablation of Table VII

The input is a batch of windows `[N, time, sensors]`, as every dataset gives it. Like the authors'
`Conv2d` on `(N, 1, T, S)`, the model convolves with (k, 1) kernels along time, so the sensor axis
survives untouched to the flatten. We keep the activations NHWC: `[N, T, S, C]`.

OPPORTUNITY is fed differently by the authors: 64 time steps are the *input channels* and the convs
slide along the feature axis (`time_as_channels=True`, layout `[N, S, 1, T]`). That is faithful, not a
bug we introduced; see `configs/opportunity.py`.

"Channel" attention acts on the conv filters; "temporal" attention is CBAM's spatial attention, a
mask over (time, sensor). Both sit inside the residual branch, before the add, and there is no ReLU
after the add, as in the authors' code.

How each conv and BatchNorm is computed (im2col, Winograd, lax.conv, fused paths) is decided below
this file, in `danhar_jax/ops/`; `DanHAR` injects the layers once, from `conv_impl`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from danhar_jax.ops.conv import CONV_IMPLS, resolve_conv_impl, torch_uniform
from danhar_jax.ops.conv_bn import conv_bn, layers

BACKBONES = ("cnn", "resnet")
ATTENTIONS = ("none", "channel", "temporal", "channel_temporal", "temporal_channel")
ModuleDef = Any


class ChannelAttention(nn.Module):
  """CBAM channel attention: which filters matter. Avg and max pool over time and sensors, a shared
  bias-free MLP with reduction 16 (hard-coded in the authors' code), then a sigmoid."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h):
    c = h.shape[-1]
    hidden = nn.Dense(c // 16, use_bias=False, dtype=self.dtype, name="fc1",
                      kernel_init=torch_uniform(c))
    out = nn.Dense(c, use_bias=False, dtype=self.dtype, name="fc2",
                   kernel_init=torch_uniform(c // 16))
    mlp = lambda v: out(nn.relu(hidden(v)))
    avg, mx = jnp.mean(h, axis=(1, 2)), jnp.max(h, axis=(1, 2))
    weights = nn.sigmoid(mlp(avg) + mlp(mx))[:, None, None, :]
    self.sow("intermediates", "weights", weights[:, 0, 0, :])
    return h * weights.astype(h.dtype)


class TemporalAttention(nn.Module):
  """CBAM spatial attention, the paper's temporal attention: where to look. Mean and max across
  filters, a bias-free conv with the per-dataset kernel, then a sigmoid: a mask over (time, sensor)."""
  kernel: Sequence[int] = (7, 1)
  conv: ModuleDef = nn.Conv

  @nn.compact
  def __call__(self, h):
    kh, kw = self.kernel
    pooled = jnp.concatenate(
        [jnp.mean(h, axis=-1, keepdims=True), jnp.max(h, axis=-1, keepdims=True)], axis=-1)
    logits = self.conv(1, (kh, kw), padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
                       use_bias=False, name="conv",
                       kernel_init=torch_uniform(2 * kh * kw))(pooled)
    mask = nn.sigmoid(logits)
    self.sow("intermediates", "mask", mask[..., 0])
    return h * mask.astype(h.dtype)


class Block(nn.Module):
  """Conv(k,1)/s → BN → ReLU → Conv(k2,1) → BN → ReLU, then attention, then the projection shortcut.

  `conv`, `norm` and `attention_conv` are injected by `DanHAR`; `conv_bn` computes each conv with
  the BatchNorm that follows it."""
  features: int
  kernel: int
  stride: int
  padding: int
  kernel2: int
  residual: bool
  attention: str
  temporal_kernel: Sequence[int]
  conv: ModuleDef
  norm: ModuleDef
  attention_conv: ModuleDef
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    pair = lambda conv, norm, kernel, stride, padding: (
        self.conv(self.features, kernel, stride, padding, name=conv),
        self.norm(self.features, name=norm))
    first = [pair("conv1", "bn1", self.kernel, self.stride, self.padding)]
    if self.residual:
      first.append(pair("shortcut_conv", "shortcut_bn", self.kernel, self.stride, self.padding))
    h, *shortcut = conv_bn(x, first, train)
    (h,) = conv_bn(nn.relu(h), [pair("conv2", "bn2", self.kernel2, 1, self.kernel2 // 2)], train)
    h = nn.relu(h)
    channel = lambda: ChannelAttention(self.dtype, name="channel_attention")
    temporal = lambda: TemporalAttention(self.temporal_kernel, self.attention_conv,
                                         name="temporal_attention")
    order = {"none": (), "channel": (channel,), "temporal": (temporal,),
             "channel_temporal": (channel, temporal), "temporal_channel": (temporal, channel)}
    for attention in order[self.attention]:
      h = attention()(h)
    return h + shortcut[0] if self.residual else h


class DanHAR(nn.Module):
  """Three blocks, flatten, one Dense. See the module docstring for the variants."""
  num_classes: int
  backbone: str = "resnet"
  attention: str = "channel_temporal"
  widths: Sequence[int] = (128, 256, 384)
  kernel: int = 6
  strides: Sequence[int] = (2, 2, 2)
  padding: int = 0
  kernel2: int = 3
  temporal_kernel: Sequence[int] = (7, 7)
  time_as_channels: bool = False
  logit_standardization: bool = False
  conv_impl: str = "im2col"  # an algorithm, already resolved (ops.conv.resolve_conv_impl)
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, windows, train: bool = False):
    """Maps `[N, time, sensors]` windows to `[N, num_classes]` float32 logits."""
    if self.time_as_channels:
      x = jnp.transpose(windows, (0, 2, 1))[:, :, None, :]   # [N, S, 1, T]
    else:
      x = windows[..., None]                                   # [N, T, S, 1]
    conv, norm, attention_conv = layers(self.conv_impl, self.dtype, self.bn_axis_name)
    for i, (features, stride) in enumerate(zip(self.widths, self.strides)):
      x = Block(features, self.kernel, stride, self.padding, self.kernel2,
                residual=self.backbone == "resnet", attention=self.attention,
                temporal_kernel=tuple(self.temporal_kernel), conv=conv, norm=norm,
                attention_conv=attention_conv, dtype=self.dtype, name=f"block{i + 1}")(x, train)
    x = x.reshape(x.shape[0], -1)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier",
                      kernel_init=torch_uniform(x.shape[-1]),
                      bias_init=torch_uniform(x.shape[-1]))(x).astype(jnp.float32)
    if self.logit_standardization:
      logits = standardize_batch(logits, self.bn_axis_name if train else None)
    return logits


def standardize_batch(logits, axis_name=None, eps=1e-5):
  """The authors' `nn.LayerNorm(x.size())(x)`: one mean and variance over the whole batch's logits.

  It leaves every argmax unchanged but rescales the loss, and it depends on the batch. Under data
  parallelism the statistics are taken over the global batch, so N devices match one.
  """
  mean, sq = jnp.mean(logits), jnp.mean(jnp.square(logits))
  if axis_name is not None:
    mean, sq = jax.lax.pmean((mean, sq), axis_name)
  return (logits - mean) * jax.lax.rsqrt(sq - mean ** 2 + eps)


def create_model(config, bn_axis_name: str | None = None) -> DanHAR:
  """The model a config describes. Unknown variants fail here, listing the valid ones."""
  m = config.model
  for field, value, valid in (("backbone", m.backbone, BACKBONES),
                              ("attention", m.attention, ATTENTIONS),
                              ("dtype", m.dtype, ("float32", "bfloat16"))):
    if value not in valid:
      raise ValueError(f"config.model.{field}={value!r} is not one of {', '.join(valid)}.")
  conv_impl = resolve_conv_impl(m.conv_impl)
  logging.info("config.model.conv_impl=%r: the convs compute as %r.", m.conv_impl, conv_impl)
  if len(m.widths) != len(m.strides):
    raise ValueError(f"config.model.widths {tuple(m.widths)} and config.model.strides "
                     f"{tuple(m.strides)} must have one entry per block.")
  return DanHAR(
      num_classes=config.num_classes, backbone=m.backbone, attention=m.attention,
      widths=tuple(m.widths), kernel=m.kernel, strides=tuple(m.strides), padding=m.padding,
      kernel2=m.kernel2, temporal_kernel=tuple(m.temporal_kernel),
      time_as_channels=m.time_as_channels, logit_standardization=m.logit_standardization,
      conv_impl=conv_impl, bn_axis_name=bn_axis_name, dtype=jnp.dtype(m.dtype))


def init_variables(model: DanHAR, input_shape: Sequence[int], seed: int = 0):
  """`{'params', 'batch_stats'}` for windows of `input_shape` = (time, sensors)."""
  dummy = jnp.zeros((1, *input_shape), jnp.float32)
  return jax.jit(lambda rng: model.init(rng, dummy, train=False))(jax.random.key(seed))
