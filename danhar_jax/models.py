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

import functools
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

BACKBONES = ("cnn", "resnet")
ATTENTIONS = ("none", "channel", "temporal", "channel_temporal", "temporal_channel")
CONV_IMPLS = ("auto", "im2col", "winograd", "xla")
ACCELERATORS = ("gpu", "cuda", "rocm", "tpu")


def resolve_conv_impl(name: str, backend: str | None = None) -> str:
  """The conv algorithm `name` stands for on `backend` (default: JAX's default backend).

  'auto' is lax.conv on accelerators, where XLA's own conv kernels and fusions are the natural
  path, and Winograd on CPU, the fastest there. The CPU algorithms are never chosen for a GPU.
  """
  if name not in CONV_IMPLS:
    raise ValueError(f"config.model.conv_impl={name!r} is not one of {', '.join(CONV_IMPLS)}.")
  if name != "auto":
    return name
  return "xla" if (backend or jax.default_backend()) in ACCELERATORS else "winograd"


def torch_uniform(fan_in: int):
  """PyTorch's default Conv2d/Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class ConvK1(nn.Module):
  """The authors' `Conv2d(kernel=(k, 1), stride=(s, 1), padding=(p, 0))` on NHWC activations.

  Three computations of the same layer, with the same parameters, so checkpoints move freely
  between them (benchmarks/README.md has the measurements behind each):
  - `'im2col'` stacks the k time-shifted, strided slices on the channel axis and applies one
    matmul. XLA's CPU backend runs that far faster than its convolution for these shapes.
  - `'winograd'` is the same correlation by Winograd's minimal filtering, F(m, r): about half the
    multiplications of im2col for the (6,1)/2 and (3,1)/1 convs of DanHAR. Fastest on CPU for
    every dataset; it agrees with im2col to about 1e-5. float32 only: in bfloat16 it is im2col.
  - `'xla'` is the plain `lax.conv`, for GPUs and TPUs.
  The temporal attention's conv follows the same switch: `lax.conv` under `'xla'`, otherwise one
  matmul (`toeplitz_conv`).
  """
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
  """`ConvK1`'s computation with explicit weights (`Block` fuses conv1 with the shortcut)."""
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
  # Stacking the slices on a new axis and merging it into the channels gives the same columns as
  # concatenating them, but XLA:CPU fuses the stack into the slices' producers and feeds the
  # matmul faster: eval +3-7%, training unchanged (benchmarks/README.md).
  return jnp.stack(cols, axis=-2).reshape(*cols[0].shape[:-1], kernel * x.shape[-1])


# Winograd's minimal filtering (Lavin & Gray 2016, "Fast algorithms for convolutional neural
# networks"), in 1-D along time. F(m, r) computes m outputs of an r-tap correlation with
# n = m + r - 1 multiplications instead of m·r: an input transform B^T, one [C, F] matmul per
# transformed position, an output transform A^T. A stride-s conv first becomes a stride-1 conv
# with ceil(k/s) taps over s·C channels (polyphase), so DanHAR's (6,1)/2 convs are F(m, 3) too.

# Interpolation points, smallest first: small points keep the transforms' float32 error near
# im2col's. With m ≤ 6 the error stays within 5x im2col's (about 1e-5 on unit activations);
# the next point, 3, costs 10x more, so tiles stop at 6 outputs.
_POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))
_MAX_TILE = 6


def polyphase_taps(kernel: int, stride: int) -> int:
  """r: the taps of each phase once a stride-s, k-tap conv is rewritten as a stride-1 conv."""
  return -(-kernel // stride)


def winograd_tiles(kernel: int, stride: int) -> range:
  """The usable tiles m: the tile gather needs m ≥ r - 1, and n = m + r - 1 needs n - 1 points."""
  r = polyphase_taps(kernel, stride)
  return range(max(2, r - 1), min(_MAX_TILE, len(_POINTS) + 2 - r) + 1)


def winograd_applies(kernel: int, stride: int, cin: int, dtype) -> bool:
  """Winograd pays where each polyphase filter has ≥ 2 taps and the input has channels to
  contract; the 1-channel input layer is a small, memory-bound matmul either way. In bfloat16 the
  transforms' rounding makes DanHAR's logits 6x less accurate than im2col's (3e-2 against 6e-3
  of their range on WISDM), so Winograd is float32 only and other dtypes use im2col."""
  return (jnp.dtype(dtype) == jnp.float32 and polyphase_taps(kernel, stride) >= 2 and cin > 1
          and len(winograd_tiles(kernel, stride)) > 0)


@functools.lru_cache(maxsize=None)
def winograd_matrices(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A^T `[m, n]`, G `[n, r]`, B^T `[n, n]` of F(m, r), from exact rational Toom-Cook algebra.

  Linear convolution of an m- and an r-tap sequence is E·a ⊙ F·b interpolated by C = W⁻¹,
  where E, F, W evaluate polynomials at the points and at infinity. Correlation, what a conv
  layer computes, is its transpose: A^T = E^T, G = F, B^T = C^T.
  """
  n = m + r - 1
  if n - 1 > len(_POINTS):
    raise ValueError(f"F({m}, {r}) needs {n - 1} interpolation points; only {len(_POINTS)} exist")

  def evaluate(degree_plus_one: int) -> list[list[Fraction]]:
    rows = [[Fraction(p) ** j for j in range(degree_plus_one)] for p in _POINTS[:n - 1]]
    return rows + [[Fraction(int(j == degree_plus_one - 1)) for j in range(degree_plus_one)]]

  w = evaluate(n)
  inverse = [row + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(w)]
  for c in range(n):  # Gauss-Jordan in exact arithmetic: no rounding before the final cast
    pivot = next(i for i in range(c, n) if inverse[i][c] != 0)
    inverse[c], inverse[pivot] = inverse[pivot], inverse[c]
    inverse[c] = [v / inverse[c][c] for v in inverse[c]]
    for i in range(n):
      if i != c and inverse[i][c] != 0:
        inverse[i] = [vi - inverse[i][c] * vc for vi, vc in zip(inverse[i], inverse[c])]
  as_array = lambda rows: np.array([[float(v) for v in row] for row in rows])
  return as_array(evaluate(m)).T, as_array(evaluate(r)), as_array([row[n:] for row in inverse]).T


def winograd_tile(t_out: int, kernel: int, stride: int) -> int:
  """The usable tile that needs the fewest multiplications, (m + r - 1)·ceil(t_out / m)."""
  r = polyphase_taps(kernel, stride)
  return min(reversed(winograd_tiles(kernel, stride)), key=lambda m: (m + r - 1) * -(-t_out // m))


def winograd_conv(x, w, stride: int, padding: int):
  """x `[N, T, S, C]` ⋆ w `[k, C, F]` along T with stride and zero padding; `[N, T_out, S, F]`."""
  k, cin, features = w.shape
  x = jnp.pad(x, ((0, 0), (padding, padding), (0, 0), (0, 0))) if padding else x
  t_out = (x.shape[1] - k) // stride + 1
  r = polyphase_taps(k, stride)
  if stride > 1:  # polyphase: tap j of phase q is w[j·s + q], applied to x[s·t + q]
    w = jnp.pad(w, ((0, r * stride - k), (0, 0), (0, 0))).reshape(r, stride * cin, features)
    x = jnp.pad(x, ((0, 0), (0, -x.shape[1] % stride), (0, 0), (0, 0)))
    b, t, s, c = x.shape
    x = x.reshape(b, t // stride, stride, s, c).transpose(0, 1, 3, 2, 4)
    x = x.reshape(b, t // stride, s, stride * c)
  m = winograd_tile(t_out, k, stride)
  length = (-(-t_out // m) + 1) * m  # whole tiles, plus one so every tile's tail exists
  x = jnp.pad(x, ((0, 0), (0, max(0, length - x.shape[1])), (0, 0), (0, 0)))[:, :length]
  return _winograd(x, w, m)[:, :t_out]


def _combine(matrix: np.ndarray, parts: list) -> list:
  """`matrix @ parts` over a list of arrays, skipping zeros: XLA fuses it into one loop."""
  out = []
  for row in matrix:
    terms = [p if c == 1 else -p if c == -1 else float(c) * p for c, p in zip(row, parts) if c]
    out.append(functools.reduce(jnp.add, terms))
  return out


def _tiles(x, m: int, n: int) -> list:
  """The n-sample input tiles at stride m, as n arrays `[N, tiles, S, C]`, one per offset.
  Two reshapes instead of n strided slices: their transposes, in `_untiles`, stay reshapes."""
  b, t, s, c = x.shape
  heads = x[:, :t - m].reshape(b, -1, m, s, c)
  tails = x[:, m:].reshape(b, -1, m, s, c)
  return [heads[:, :, v] if v < m else tails[:, :, v - m] for v in range(n)]


def _untiles(parts: list, m: int):
  """Transpose of `_tiles`: overlap-add the n offsets back into `[N, (tiles + 1)·m, S, C]`."""
  b, nt, s, c = parts[0].shape
  pad = [jnp.zeros_like(parts[0])] * (2 * m - len(parts))
  heads = jnp.stack(parts[:m], axis=2).reshape(b, nt * m, s, c)
  tails = jnp.stack(parts[m:] + pad, axis=2).reshape(b, nt * m, s, c)
  return (jnp.pad(heads, ((0, 0), (0, m), (0, 0), (0, 0)))
          + jnp.pad(tails, ((0, 0), (m, 0), (0, 0), (0, 0))))


# The backward pass is written out because autodiff's version of the tile gather (n strided
# slices, transposed into n interior-padded scatters) made training 25-50% slower per layer than
# this overlap-add (benchmarks/README.md). Both passes are Winograd-domain matmuls of equal size.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _winograd(x, w, m: int):
  """Stride-1 F(m, r) correlation of x `[N, (tiles + 1)·m, S, C]` with w `[r, C, F]`."""
  return _winograd_fwd(x, w, m)[0]


def _winograd_fwd(x, w, m: int):
  at, g, bt = winograd_matrices(m, w.shape[0])
  v = jnp.stack(_combine(bt, _tiles(x, m, bt.shape[0])))        # [n, N, tiles, S, C]
  u = jnp.einsum("xr,rcf->xcf", g.astype(w.dtype), w)           # [n, C, F]
  products = jnp.einsum("xbtsc,xcf->xbtsf", v, u)
  y = jnp.stack(_combine(at, list(products)), axis=2)           # [N, tiles, m, S, F]
  b, nt, _, s, f = y.shape
  return y.reshape(b, nt * m, s, f), (v, u)


def _winograd_bwd(m: int, residuals, dy):
  v, u = residuals
  at, g, bt = winograd_matrices(m, v.shape[0] - m + 1)
  b, t, s, f = dy.shape
  dy = dy.reshape(b, t // m, m, s, f)
  d_products = jnp.stack(_combine(at.T, [dy[:, :, j] for j in range(m)]))
  dv = jnp.einsum("xbtsf,xcf->xbtsc", d_products, u)
  du = jnp.einsum("xbtsc,xbtsf->xcf", v, d_products)
  dw = jnp.einsum("xr,xcf->rcf", g.astype(du.dtype), du)
  return _untiles(_combine(bt.T, list(dv)), m), dw


_winograd.defvjp(_winograd_fwd, _winograd_bwd)


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
  conv_impl: str = "im2col"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, h):
    kh, kw = self.kernel
    pooled = jnp.concatenate(
        [jnp.mean(h, axis=-1, keepdims=True), jnp.max(h, axis=-1, keepdims=True)], axis=-1)
    # XLA:CPU's convolution takes 7 ms for WISDM's block-1 mask and 15 ms for its gradient; the
    # same conv as one matmul takes 0.3 and 1 (benchmarks/README.md). GPUs keep lax.conv.
    conv = None if self.conv_impl == "xla" else toeplitz_conv
    logits = nn.Conv(1, (kh, kw), padding=((kh // 2, kh // 2), (kw // 2, kw // 2)),
                     use_bias=False, dtype=self.dtype, name="conv", conv_general_dilated=conv,
                     kernel_init=torch_uniform(2 * kh * kw))(pooled)
    mask = nn.sigmoid(logits)
    self.sow("intermediates", "mask", mask[..., 0])
    return h * mask.astype(h.dtype)


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


# PyTorch's BatchNorm2d: momentum 0.1 on the new statistic is Flax's momentum 0.9 on the old.
BN_MOMENTUM, BN_EPSILON = 0.9, 1e-5


def global_count(local: int, axis_name: str | None):
  """`local` positions per device, summed over the devices of `axis_name` (the global batch)."""
  return local * (1 if axis_name is None else jax.lax.psum(1, axis_name))


def batch_norm_2d(y, conv_bias, train: bool, axis_name: str | None, dtype, name: str):
  """PyTorch's `BatchNorm2d` of a conv's output, as Flax's `nn.BatchNorm` named `name`.

  In training the conv's output `y` comes *without* its bias. The batch mean absorbs a bias
  exactly and the variance ignores it, so leaving it out changes no output, and it saves an add
  over the activations and the bias gradient (zero in exact arithmetic, a reduction over them
  in floating point). The bias goes to the running mean instead, so evaluation, whose `y`
  includes it, sees the statistics of a model that kept it.

  PyTorch also updates its running variance with the unbiased batch variance, n/(n-1) times the
  biased one that Flax keeps; n counts every (window, time, sensor) position in the global batch.
  """
  norm = nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                      axis_name=axis_name if train else None, dtype=dtype, name=name)
  if not train or norm.is_initializing():
    return norm(y)
  old_var = norm.get_variable("batch_stats", "var")
  out = norm(y)
  count = global_count(y.size // y.shape[-1], axis_name)
  mean, var = norm.get_variable("batch_stats", "mean"), norm.get_variable("batch_stats", "var")
  # Flax's new var is m·old + (1 - m)·v, so (1 - m)·v/(n - 1) = (var - m·old)/(n - 1).
  norm.put_variable("batch_stats", "var", var + (var - norm.momentum * old_var) / (count - 1))
  norm.put_variable("batch_stats", "mean", mean + (1 - norm.momentum) * conv_bias)
  return out


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


class PatchBatchNorm(nn.Module):
  """`batch_norm_2d` of a conv's output, in training, computed from the conv's input patches.

  For the input layer (one channel, k = 6 taps) a conv output is y = P·w, with P the `[n, k]`
  patch rows. Its batch mean is mean(P)·w and its batch variance wᵀ·cov(P)·w, so BatchNorm's
  output is one matmul, P·(w·s) + (β - mean·s) with s = γ/√(var + ε). That skips the passes over
  y that BatchNorm needs, forward (statistics, normalisation) and backward (two reductions and
  an elementwise gradient), on the largest activations of the model. Same variables as
  `nn.BatchNorm`, same running statistics as `batch_norm_2d` (conv bias in the mean, unbiased
  variance); evaluation uses `batch_norm_2d`.
  """
  momentum: float = BN_MOMENTUM
  epsilon: float = BN_EPSILON

  @nn.compact
  def __call__(self, cols, moments, w, conv_bias):
    mean_p, cov_p, count = moments
    features = w.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,))
    bias = self.param("bias", nn.initializers.zeros, (features,))
    running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,))
    running_var = self.variable("batch_stats", "var", jnp.ones, (features,))
    mean, var = mean_p @ w, jnp.sum((cov_p @ w) * w, axis=0)
    if not self.is_initializing():
      m = self.momentum
      running_mean.value = m * running_mean.value + (1 - m) * (mean + conv_bias)
      running_var.value = m * running_var.value + (1 - m) * var * count / (count - 1)
    inverse = scale * jax.lax.rsqrt(var + self.epsilon)
    return jnp.dot(cols, w * inverse) + (bias - mean * inverse)


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
    conv1 = conv(self.kernel, self.stride, self.padding, "conv1")
    shortcut = conv(self.kernel, self.stride, self.padding, "shortcut_conv")
    conv2 = conv(self.kernel2, 1, self.kernel2 // 2, "conv2")

    bn = lambda name, y, source: batch_norm_2d(y, source.get_variable("params", "bias"), train,
                                               self.bn_axis_name, self.dtype, name)
    if (train and x.shape[-1] == 1 and self.conv_impl != "xla"
        and jnp.dtype(self.dtype) == jnp.float32):
      # The 1-channel input layer: BatchNorm straight from the patches (PatchBatchNorm). Under
      # 'xla' (GPUs, TPUs) the conv stays lax.conv, followed by batch_norm_2d.
      cols = im2col_columns(x, self.kernel, self.stride, self.padding)
      moments = patch_moments(cols, self.bn_axis_name)
      patch_bn = lambda name, source: PatchBatchNorm(name=name)(
          cols, moments, source.weights(1)[0].reshape(self.kernel, self.features),
          source.get_variable("params", "bias"))
      normed1 = patch_bn("bn1", conv1)
      normed_short = lambda: patch_bn("shortcut_bn", shortcut)
    elif (self.residual and self.conv_impl == "winograd"
          and winograd_applies(self.kernel, self.stride, x.shape[-1], self.dtype)):
      # conv1 and the shortcut read the same input with the same kernel and stride, so one
      # Winograd input transform (and, backwards, one overlap-add) serves both.
      (w1, b1), (w2, b2) = conv1.weights(x.shape[-1]), shortcut.weights(x.shape[-1])
      both = conv_k1(x, jnp.concatenate([w1, w2], -1),
                     None if train else jnp.concatenate([b1, b2]),
                     self.stride, self.padding, self.conv_impl, self.dtype)
      y1, y_short = jnp.split(both, 2, axis=-1)
      normed1, normed_short = bn("bn1", y1, conv1), lambda: bn("shortcut_bn", y_short, shortcut)
    else:
      # Every conv feeds a BatchNorm, so training leaves the conv biases out (batch_norm_2d).
      y1 = conv1(x, add_bias=not train)
      normed1 = bn("bn1", y1, conv1)
      normed_short = lambda: bn("shortcut_bn", shortcut(x, add_bias=not train), shortcut)
    h = nn.relu(normed1)
    h = nn.relu(bn("bn2", conv2(h, add_bias=not train), conv2))
    channel = lambda v: ChannelAttention(self.dtype, name="channel_attention")(v)
    temporal = lambda v: TemporalAttention(self.temporal_kernel, self.conv_impl, self.dtype,
                                           name="temporal_attention")(v)
    order = {"none": (), "channel": (channel,), "temporal": (temporal,),
             "channel_temporal": (channel, temporal),
             "temporal_channel": (temporal, channel)}[self.attention]
    for attend in order:
      h = attend(h)
    if self.residual:
      h = h + normed_short()
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
      conv_impl=resolve_conv_impl(m.conv_impl), bn_axis_name=bn_axis_name,
      dtype=jnp.dtype(m.dtype))


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
