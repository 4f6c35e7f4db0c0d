"""The conv algorithms below the model: Winograd's matrices, tiles and layer against lax.conv."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from danhar_jax.ops import conv as conv_ops
from danhar_jax.ops import winograd


@pytest.mark.parametrize("m,r", [(m, r) for r in (2, 3, 4) for m in range(max(2, r - 1), 7)
                                 if m + r - 1 <= 8])
def test_winograd_matrices_compute_correlation(m, r):
  """A^T[(G g) ⊙ (B^T d)] is the r-tap correlation of d, with n = m + r - 1 products."""
  at, g, bt = winograd.winograd_matrices(m, r)
  assert at.shape == (m, m + r - 1) and g.shape == (m + r - 1, r) and bt.shape == (m + r - 1,) * 2
  rng = np.random.default_rng(0)
  d, w = rng.standard_normal(m + r - 1), rng.standard_normal(r)
  np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), np.correlate(d, w, "valid"), atol=1e-12)


@pytest.mark.parametrize("t,c,k,s,p", [
    (98, 16, 3, 1, 1), (98, 16, 6, 2, 0), (64, 16, 3, 2, 1), (300, 8, 6, 3, 1), (21, 8, 6, 2, 1),
    (23, 8, 4, 1, 0), (40, 8, 6, 1, 2), (200, 1, 6, 2, 0)])
def test_winograd_layer_and_its_gradients_equal_lax_conv(t, c, k, s, p):
  """Odd lengths, strides 1-3, padding, and the shapes that fall back to im2col (k=6/s=1: no
  usable tile; C_in = 1)."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, t, 3, c)).astype(np.float32)
  w = (rng.standard_normal((k, 1, c, 8)) / np.sqrt(k * c)).astype(np.float32)
  conv = lambda impl: lambda x, w: conv_ops.conv_k1(x, w, None, s, p, impl, jnp.float32)
  y = conv("xla")(x, w)
  cotangent = rng.standard_normal(y.shape).astype(np.float32)
  np.testing.assert_allclose(conv("winograd")(x, w), y, atol=2e-5)
  # The kernel's gradient sums 2·t·3 products per element and reaches tens: beside the absolute
  # floor, allow float32's rounding of such a sum (eps · sqrt(terms) ≈ 5e-6), with room, relative.
  for got, want in zip(*(jax.grad(lambda x, w: jnp.sum(conv(i)(x, w) * cotangent), (0, 1))(x, w)
                         for i in ("winograd", "xla"))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_winograd_tiles_of_danhar():
  # WISDM's convs: conv1/shortcut (6,1)/2 become 3-tap F(m, 3) on 2·C channels; conv2 is (3,1)/1.
  assert [winograd.winograd_tile(t, 6, 2) for t in (98, 47, 21)] == [6, 6, 6]
  assert winograd.winograd_tile(32, 3, 2) == 4      # 2 taps: 5·8 = 40 products against 7·6 = 42
  assert list(winograd.winograd_tiles(6, 1)) == []  # 6 taps: no tile within the 8 points
  assert not winograd.winograd_applies(6, 2, 1, jnp.float32)  # the 1-channel input layer: im2col
  assert not winograd.winograd_applies(6, 2, 64, jnp.bfloat16)  # bf16: im2col's rounding


@pytest.mark.parametrize("name,backend,want", [
    ("auto", "cpu", "winograd"), ("auto", "gpu", "xla"), ("auto", "cuda", "xla"),
    ("auto", "tpu", "xla"), ("auto", "rocm", "xla"), ("im2col", "gpu", "im2col"),
    ("winograd", "cpu", "winograd"), ("xla", "cpu", "xla")])
def test_resolve_conv_impl(name, backend, want):
  assert conv_ops.resolve_conv_impl(name, backend) == want


def test_resolve_conv_impl_lists_the_valid_names():
  with pytest.raises(ValueError, match="conv_impl='fft' is not one of auto, im2col, winograd, xla"):
    conv_ops.resolve_conv_impl("fft")
