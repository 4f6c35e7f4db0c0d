"""The authors' (k, 1) convolutions along time, computed three ways with the same parameters.

- `'im2col'` stacks the k time-shifted, strided slices on the channel axis and applies one matmul;
  XLA's CPU backend runs that far faster than its convolution for these shapes.
- `'winograd'` is the same correlation by Winograd's minimal filtering (ops/winograd.py): about
  half the multiplications of im2col for DanHAR's convs, the fastest on CPU. float32 only.
- `'xla'` is the plain `lax.conv`, for GPUs and TPUs.

The temporal attention's 2-D conv follows the same choice: `lax.conv` under `'xla'`, otherwise
one matmul (`toeplitz_conv`). Checkpoints move freely between the three.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from danhar_jax.ops.winograd import winograd_applies, winograd_conv

CONV_IMPLS = ("auto", "im2col", "winograd", "xla")
_ACCELERATORS = ("gpu", "tpu", "cuda", "rocm")


def resolve_conv_impl(name: str, backend: str | None = None) -> str:
  """`config.model.conv_impl` as an algorithm: 'auto' is 'xla' (lax.conv, XLA's own kernels and
  fusions) on GPU and TPU and 'winograd', the fastest there, on CPU."""
  if name not in CONV_IMPLS:
    raise ValueError(f"config.model.conv_impl={name!r} is not one of {', '.join(CONV_IMPLS)}.")
  if name != "auto":
    return name
  backend = jax.default_backend() if backend is None else backend
  return "xla" if backend.lower() in _ACCELERATORS else "winograd"


def torch_uniform(fan_in: int):
  """PyTorch's default Conv2d/Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
  bound = 1.0 / np.sqrt(fan_in) if fan_in else 0.0  # fan_in 0: a zero-element tensor, no values

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class ConvK1(nn.Module):
  """The authors' `Conv2d(kernel=(k, 1), stride=(s, 1), padding=(p, 0))` on NHWC activations."""
  features: int
  kernel: int
  stride: int = 1
  padding: int = 0
  use_bias: bool = True
  impl: str = "im2col"
  dtype: Any = jnp.float32

  @nn.compact
  def weights(self, cin: int):
    """Kernel `[k, 1, C_in, F]` and bias `[F]` (or None), with PyTorch's initialisation."""
    init = torch_uniform(self.kernel * cin)
    w = self.param("kernel", init, (self.kernel, 1, cin, self.features))
    b = self.param("bias", init, (self.features,)) if self.use_bias else None
    return w, b

  def __call__(self, x, add_bias: bool = True):
    w, b = self.weights(x.shape[-1])
    return conv_k1(x, w, b if add_bias else None, self.stride, self.padding, self.impl, self.dtype)


def conv_k1(x, w, b, stride: int, padding: int, impl: str, dtype):
  """`ConvK1`'s computation with explicit weights (conv_bn fuses conv1 with the shortcut)."""
  x, w = x.astype(dtype), w.astype(dtype)
  if impl == "xla":
    y = jax.lax.conv_general_dilated(x, w, (stride, 1), ((padding, padding), (0, 0)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  elif impl == "winograd" and winograd_applies(w.shape[0], stride, x.shape[-1], dtype):
    y = winograd_conv(x, w[:, 0], stride, padding)
  else:
    y = im2col_conv(x, w[:, 0], stride, padding)
  return y if b is None else y + b.astype(dtype)


def im2col_conv(x, w, stride: int, padding: int):
  """x `[N, T, S, C]` ⋆ w `[k, C, F]` along T as one matmul over k·C stacked columns."""
  k, cin, features = w.shape
  return jnp.dot(im2col_columns(x, k, stride, padding), w.reshape(k * cin, features))


def im2col_columns(x, kernel: int, stride: int, padding: int):
  """The k time-shifted, strided slices of x `[N, T, S, C]`, stacked: `[N, T_out, S, k·C]`."""
  x = jnp.pad(x, ((0, 0), (padding, padding), (0, 0), (0, 0))) if padding else x
  t_out = (x.shape[1] - kernel) // stride + 1
  cols = [x[:, i:i + stride * (t_out - 1) + 1:stride] for i in range(kernel)]
  # Stacked on a new axis rather than concatenated: XLA:CPU fuses the stack into the slices'
  # producers, and the matmul reads it faster.
  return jnp.stack(cols, axis=-2).reshape(*cols[0].shape[:-1], kernel * x.shape[-1])


def mask_conv(impl: str):
  """The `conv_general_dilated` for the temporal attention's `nn.Conv` (None: lax.conv)."""
  return None if impl == "xla" else toeplitz_conv


def toeplitz_conv(x, w, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                  feature_group_count=1, **unused):
  """`lax.conv_general_dilated` for the stride-1 NHWC convs `nn.Conv` makes, as one matmul.

  The kh time shifts are stacked on the channel axis; the mixing across the W (sensor) axis, the
  same kw taps at every position, is a banded [W_in, W_out] Toeplitz matrix built from the kernel.
  x `[N, H, W, C]`, w `[kh, kw, C, F]`, padding ((top, bottom), (left, right)).
  """
  del unused  # dimension_numbers (nn.Conv's NHWC/HWIO) and precision
  if (tuple(window_strides) != (1, 1) or feature_group_count != 1
      or any(d not in (None, (1, 1)) for d in (lhs_dilation, rhs_dilation))):
    raise ValueError("toeplitz_conv computes plain stride-1 convolutions only")
  (top, bottom), (left, right) = padding
  kh, kw, cin, features = w.shape
  n, _, width, _ = x.shape
  w_out = width + left + right - kw + 1
  tap = np.arange(width)[:, None] - np.arange(w_out)[None, :] + left     # [W_in, W_out]
  band = jnp.take(w, np.clip(tap, 0, kw - 1), axis=1)                    # [kh, W_in, W_out, C, F]
  band = jnp.where(((tap >= 0) & (tap < kw))[None, :, :, None, None], band, 0)
  band = band.transpose(0, 1, 3, 2, 4).reshape(kh, width * cin, w_out * features)
  # With the sensors merged into the channels, this is im2col's kh-tap conv along time.
  x = jnp.pad(x, ((0, 0), (top, bottom), (0, 0), (0, 0))).reshape(n, -1, 1, width * cin)
  return im2col_conv(x, band.astype(x.dtype), 1, 0).reshape(n, -1, w_out, features)
