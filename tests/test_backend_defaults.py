"""Defaults chosen by backend, once: the conv algorithm, the host-memory tweak, the precision."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from configs import wisdm
from danhar_jax import host_memory
from danhar_jax import models
from danhar_jax import train
from tests.test_train import ROOT


def test_the_default_config_resolves_when_the_model_is_created():
  config = wisdm.get_config()
  assert config.model.conv_impl == "auto" and config.matmul_precision == "default"
  expected = "winograd" if jax.default_backend() == "cpu" else "xla"
  assert models.create_model(config).conv_impl == expected


@pytest.mark.parametrize("precision,expected", [("highest", "HIGHEST"), ("high", "HIGH")])
def test_the_steps_carry_the_matmul_precision(precision, expected):
  def matmul(a, b):
    return jax.grad(lambda a: jnp.sum(jnp.dot(a, b)))(a)

  jaxpr = str(jax.make_jaxpr(train.with_matmul_precision(matmul, precision))(
      jnp.ones((4, 4)), jnp.ones((4, 4))))
  # The forward matmul and its gradient's transpose both carry it.
  assert jaxpr.count(f"Precision.{expected}") == 4, jaxpr


def test_default_precision_leaves_the_step_as_it_is():
  assert train.with_matmul_precision(train.train_step, "default") is train.train_step


@pytest.mark.parametrize("platforms,expected", [("cuda", "cuda"), ("tpu,cpu", "tpu"),
                                                ("cpu", "cpu")])
def test_the_expected_platform_follows_jax_platforms(monkeypatch, platforms, expected):
  monkeypatch.setenv("JAX_PLATFORMS", platforms)
  assert host_memory.expected_platform() == expected


def test_host_memory_is_left_alone_where_jax_will_run_on_an_accelerator():
  """In a fresh process that will use a GPU, glibc's policy is not touched."""
  code = ("from danhar_jax import host_memory\n"
          "called = []\n"
          "host_memory.keep_freed_memory = lambda: called.append(1) or True\n"
          "print(host_memory.keep_freed_memory_on_cpu(), called)\n")
  for platforms, out in (("cuda", "False []"), ("cpu", "True [1]")):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={"JAX_PLATFORMS": platforms, "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.stdout.strip() == out, (platforms, proc.stdout, proc.stderr[-500:])


def test_the_torch_peer_takes_the_same_precision():
  pytest.importorskip("torch")
  import torch  # pylint: disable=import-outside-toplevel
  from benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  try:
    assert torch_reference.set_matmul_precision("highest") == {
        "torch_allow_tf32_matmul": False, "torch_allow_tf32_cudnn": False}
    assert torch.get_float32_matmul_precision() == "highest"
    assert torch_reference.set_matmul_precision("high") == {
        "torch_allow_tf32_matmul": True, "torch_allow_tf32_cudnn": True}
  finally:
    torch_reference.set_matmul_precision("highest")
