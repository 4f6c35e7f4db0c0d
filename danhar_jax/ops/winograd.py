"""Winograd's minimal filtering (Lavin & Gray 2016), in 1-D along time, with its own backward pass.

F(m, r) computes m outputs of an r-tap correlation with n = m + r - 1 multiplications instead of
m·r: an input transform B^T, one [C, F] matmul per transformed position, an output transform A^T.
A stride-s conv first becomes a stride-1 conv with ceil(k/s) taps over s·C channels (polyphase),
so DanHAR's (6,1)/2 convs are F(m, 3) too.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np

# Interpolation points, smallest first: small points keep the transforms' float32 error near
# im2col's. Tiles stop at 6 outputs, where the error is still within 5x im2col's.
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
  transforms' rounding costs too much accuracy, so other dtypes use im2col."""
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
  # Under shard_map's check a custom_vjp's cotangent must vary as its input does: the weights
  # vary like the batch inside it, and their cast's transpose sums their gradient over devices.
  axes = tuple(sorted(varying_axes(x) - varying_axes(w)))
  if axes:
    w = jax.lax.pcast(w, axes, to="varying")
  return _winograd(x, w, m)[:, :t_out]


def varying_axes(x) -> frozenset:
  """The shard_map axes along which `x` varies (none outside shard_map): `mat.varying` in jax
  0.10, `vma` before."""
  aval = jax.typeof(x)
  mat = getattr(aval, "mat", None)
  return frozenset(getattr(mat, "varying", None) or getattr(aval, "vma", None) or ())


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


# The backward pass is written out: autodiff transposes the tile gather into n interior-padded
# scatters, which XLA:CPU runs much slower than this overlap-add. Both passes are Winograd-domain
# matmuls of equal size.
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
