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
after the add (danhar-official-code.md §1.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

BACKBONES = ("cnn", "resnet")
ATTENTIONS = ("none", "channel", "temporal", "channel_temporal", "temporal_channel")
CONV_IMPLS = ("im2col", "xla")


def torch_uniform(fan_in: int):
  """PyTorch's default Conv2d/Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class ConvK1(nn.Module):
  """The authors' `Conv2d(kernel=(k, 1), stride=(s, 1), padding=(p, 0))` on NHWC activations.

  `impl='im2col'` reads the k time-shifted, strided slices, stacks them on the channel axis and
  applies one matmul. XLA's CPU backend runs that far faster than its convolution for these
  shapes (see benchmarks/README.md); `impl='xla'` is the plain `lax.conv`, for GPUs and TPUs.
  Both use the same parameters, so checkpoints move freely between them.
  """
  features: int
  kernel: int
  stride: int = 1
  padding: int = 0
  use_bias: bool = True
  impl: str = "im2col"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, s, p, cin = self.kernel, self.stride, self.padding, x.shape[-1]
    init = torch_uniform(k * cin)
    w = self.param("kernel", init, (k, 1, cin, self.features))
    x, w = x.astype(self.dtype), w.astype(self.dtype)
    if self.impl == "xla":
      y = jax.lax.conv_general_dilated(
          x, w, (s, 1), ((p, p), (0, 0)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
      x = jnp.pad(x, ((0, 0), (p, p), (0, 0), (0, 0))) if p else x
      t_out = (x.shape[1] - k) // s + 1
      cols = [x[:, i:i + s * (t_out - 1) + 1:s] for i in range(k)]
      # Stacking the slices on a new axis and merging it into the channels gives the same
      # columns as concatenating them, but XLA:CPU fuses the stack into the slices' producers and
      # feeds the matmul faster: eval +3-7%, training unchanged (benchmarks/README.md).
      cols = jnp.stack(cols, axis=-2).reshape(*cols[0].shape[:-1], k * cin)
      y = jnp.dot(cols, w.reshape(k * cin, self.features))
    if self.use_bias:
      y = y + self.param("bias", init, (self.features,)).astype(self.dtype)
    return y


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
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h):
    kh, kw = self.kernel
    pooled = jnp.concatenate(
        [jnp.mean(h, axis=-1, keepdims=True), jnp.max(h, axis=-1, keepdims=True)], axis=-1)
    logits = nn.Conv(1, (kh, kw), padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
                     use_bias=False, dtype=self.dtype, name="conv",
                     kernel_init=torch_uniform(2 * kh * kw))(pooled)
    mask = nn.sigmoid(logits)
    self.sow("intermediates", "mask", mask[..., 0])
    return h * mask.astype(h.dtype)


class Block(nn.Module):
  """Conv(k,1)/s → BN → ReLU → Conv(3,1) → BN → ReLU, then attention, then the projection shortcut."""
  features: int
  kernel: int
  stride: int
  padding: int
  kernel2: int
  residual: bool
  attention: str
  temporal_kernel: Sequence[int]
  conv_impl: str
  bn_axis_name: str | None
  dtype: Any

  @nn.compact
  def __call__(self, x, train: bool):
    conv = lambda k, s, p, name: ConvK1(self.features, k, s, p, impl=self.conv_impl,
                                        dtype=self.dtype, name=name)
    # PyTorch BatchNorm2d: momentum 0.1 on the new statistic is Flax's momentum 0.9 on the old.
    bn = lambda name: nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                   axis_name=self.bn_axis_name if train else None,
                                   dtype=self.dtype, name=name)
    h = nn.relu(bn("bn1")(conv(self.kernel, self.stride, self.padding, "conv1")(x)))
    h = nn.relu(bn("bn2")(conv(self.kernel2, 1, self.kernel2 // 2, "conv2")(h)))
    channel = lambda v: ChannelAttention(self.dtype, name="channel_attention")(v)
    temporal = lambda v: TemporalAttention(self.temporal_kernel, self.dtype,
                                           name="temporal_attention")(v)
    order = {"none": (), "channel": (channel,), "temporal": (temporal,),
             "channel_temporal": (channel, temporal),
             "temporal_channel": (temporal, channel)}[self.attention]
    for attend in order:
      h = attend(h)
    if self.residual:
      h = h + bn("shortcut_bn")(conv(self.kernel, self.stride, self.padding, "shortcut_conv")(x))
    return h


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
  conv_impl: str = "im2col"
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, windows, train: bool = False):
    """Maps `[N, time, sensors]` windows to `[N, num_classes]` float32 logits."""
    if self.time_as_channels:
      x = jnp.transpose(windows, (0, 2, 1))[:, :, None, :]   # [N, S, 1, T]
    else:
      x = windows[..., None]                                   # [N, T, S, 1]
    for i, (features, stride) in enumerate(zip(self.widths, self.strides)):
      x = Block(features, self.kernel, stride, self.padding, self.kernel2,
                residual=self.backbone == "resnet", attention=self.attention,
                temporal_kernel=tuple(self.temporal_kernel), conv_impl=self.conv_impl,
                bn_axis_name=self.bn_axis_name, dtype=self.dtype,
                name=f"block{i + 1}")(x, train)
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
                              ("conv_impl", m.conv_impl, CONV_IMPLS),
                              ("dtype", m.dtype, ("float32", "bfloat16"))):
    if value not in valid:
      raise ValueError(f"config.model.{field}={value!r} is not one of {', '.join(valid)}.")
  if len(m.widths) != len(m.strides):
    raise ValueError(f"config.model.widths {tuple(m.widths)} and config.model.strides "
                     f"{tuple(m.strides)} must have one entry per block.")
  return DanHAR(
      num_classes=config.num_classes, backbone=m.backbone, attention=m.attention,
      widths=tuple(m.widths), kernel=m.kernel, strides=tuple(m.strides), padding=m.padding,
      kernel2=m.kernel2, temporal_kernel=tuple(m.temporal_kernel),
      time_as_channels=m.time_as_channels, logit_standardization=m.logit_standardization,
      conv_impl=m.conv_impl, bn_axis_name=bn_axis_name, dtype=jnp.dtype(m.dtype))


def init_variables(model: DanHAR, input_shape: Sequence[int], seed: int = 0):
  """`{'params', 'batch_stats'}` for windows of `input_shape` = (time, sensors)."""
  dummy = jnp.zeros((1, *input_shape), jnp.float32)
  return jax.jit(lambda rng: model.init(rng, dummy, train=False))(jax.random.key(seed))


def count_params(params) -> int:
  """Trainable parameters, as the paper counts them (BatchNorm running statistics excluded)."""
  return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def forward_flops(model: DanHAR, input_shape: Sequence[int]) -> int:
  """Analytic FLOPs of one window's forward pass: 2 × multiply-accumulates of every conv and Dense.

  Counted from the shapes each layer actually sees (an interceptor records them), so it follows any
  config. Elementwise work (BN, ReLU, pooling, sigmoids) is left out, as is usual for MFU.
  """
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
        macs = np.prod(out.shape)* x.shape[-1]
      flops.append(2 * int(macs))
    return out

  dummy = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
  with nn.intercept_methods(count):
    jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, train=False), dummy)
  return sum(flops)
