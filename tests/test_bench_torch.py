"""The PyTorch contenders (benchmarks/contenders_torch.py) on a CPU, with small widths."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from benchmarks import model_config
from benchmarks import plan
from danhar_jax import models
from danhar_jax import summary
from tests.conftest import ROOT

torch = pytest.importorskip("torch")
from benchmarks import contenders_torch  # pylint: disable=g-import-not-at-top

WIDTHS = (16, 32, 48)

# What an untouched process reads, in contenders_torch.switches()'s names.
PRISTINE = ("import json, torch; print(json.dumps({"
            "'torch_cudnn_benchmark': torch.backends.cudnn.benchmark, "
            "'torch_allow_tf32_matmul': torch.backends.cuda.matmul.allow_tf32, "
            "'torch_allow_tf32_cudnn': torch.backends.cudnn.allow_tf32, "
            "'torch_float32_matmul_precision': torch.get_float32_matmul_precision()}))")


def prepared(contender, numerics, batch=4, config="wisdm"):
  setting = plan.Setting(config, contender, numerics, batch)
  return contenders_torch.prepare(setting, model_config.config_for(setting, WIDTHS))


@pytest.fixture(autouse=True)
def restore_switches(monkeypatch):
  """Preparing 'tuned' or 'compiled' sets process-wide switches: not for the next tests."""
  monkeypatch.setattr(contenders_torch, "PROBE_CALLS", 1)  # the probe's timing is not checked
  before = contenders_torch.switches()
  yield
  torch.backends.cudnn.benchmark = before["torch_cudnn_benchmark"]
  torch.backends.cuda.matmul.allow_tf32 = before["torch_allow_tf32_matmul"]
  torch.backends.cudnn.allow_tf32 = before["torch_allow_tf32_cudnn"]
  torch.set_float32_matmul_precision(before["torch_float32_matmul_precision"])


def python(code: str) -> dict:
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                        timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


PREPARE_AND_PRINT = (
    "import json; from benchmarks import contenders_torch as c, model_config, plan\n"
    "c.PROBE_CALLS = 1\n"  # the layout probe's timing is not what this checks
    "s = plan.Setting('wisdm', {contender!r}, {numerics!r}, 4)\n"
    "p = c.prepare(s, model_config.config_for(s, {widths!r})); p.run(1)\n"
    "print(json.dumps({{'info': p.info, 'now': c.switches()}}))\n")


def test_eager_runs_pytorchs_defaults_whatever_another_process_tuned():
  pristine = python(PRISTINE)
  tuned = python(PREPARE_AND_PRINT.format(contender="tuned", numerics="tf32", widths=WIDTHS))
  eager = python(PREPARE_AND_PRINT.format(contender="eager", numerics="torch_default",
                                          widths=WIDTHS))
  assert tuned["now"] != pristine  # TF32 on: the tuned process did set switches
  assert tuned["now"]["torch_float32_matmul_precision"] == "high"
  assert {k: eager["info"][k] for k in pristine} == pristine
  assert eager["now"] == pristine


def test_preparing_eager_sets_nothing_and_records_the_switches_as_they_are():
  torch.backends.cudnn.benchmark = True  # not PyTorch's defaults, restored by the fixture
  torch.backends.cudnn.allow_tf32 = False
  torch.set_float32_matmul_precision("medium")
  before = contenders_torch.switches()
  p = prepared("eager", "torch_default")
  p.run(1)
  assert contenders_torch.switches() == before
  assert {k: p.info[k] for k in before} == before
  assert p.info["torch_adam"] == "default (for-loop)" and not p.info["torch_channels_last"]
  assert p.info["cuda_graph"] is False and p.info["torch_autocast"] is None


def jax_param_count(config) -> int:
  with config.unlocked():
    config.model.conv_impl = "xla"  # the count does not depend on it
  return summary.count_params(jax.eval_shape(lambda: models.init_variables(
      models.create_model(config), config.input_shape))["params"])


def test_tuned_trains_as_eager_does_on_a_cpu():
  """On a CPU, 'tuned' changes only the layout and Adam's implementation (fused for the default
  for-loop one): the same losses."""
  losses = {}
  for contender, numerics in (("eager", "torch_default"), ("tuned", "f32")):
    p = prepared(contender, numerics)
    losses[contender] = []
    for _ in range(3):
      p.run(1)
      losses[contender].append(p.run.last().item())
    assert p.windows_per_step == 4 and not p.latency and p.finish() == {}
  setting = plan.Setting("wisdm", "tuned", "f32", 4)
  assert p.info["params"] == jax_param_count(model_config.config_for(setting, WIDTHS))
  assert p.info["torch_adam"] == "fused" and p.info["cuda_graph"] is False
  assert set(p.info["torch_layout_ms"]) == {"nchw", "channels_last"}
  assert p.info["torch_allow_tf32_cudnn"] is False  # 'f32' turns TF32 off
  assert losses["eager"][0] > losses["eager"][-1]
  # Fused against for-loop Adam, and channels_last convs if probed faster, round differently:
  # the losses agree to about 1e-7 relative.
  np.testing.assert_allclose(losses["tuned"], losses["eager"], rtol=1e-5)


def test_torch_latency_is_one_window_per_call():
  p = prepared("torch_latency", "f32", batch=1)
  assert p.latency is True and p.windows_per_step == 1
  p.run(3)
  setting = plan.Setting("wisdm", "torch_latency", "f32", 1)
  config = model_config.config_for(setting, WIDTHS)
  assert tuple(p.run.last().shape) == (1, config.num_classes)
  assert p.info["params"] == jax_param_count(config)


@pytest.mark.slow  # a cold max-autotune compile: about 110 s on 2 cores (seconds once cached)
def test_compiled_prepares_and_runs_on_a_cpu():
  p = prepared("compiled", "f32")
  p.run(2)
  assert np.isfinite(p.run.last().item())
  assert p.info["torch_compile_mode"] == "max-autotune-no-cudagraphs"
  assert p.info["cuda_graph"] is False and p.finish() == {}


def test_the_torch_contenders_are_the_plans_and_others_are_refused():
  assert set(contenders_torch.PREPARE) == {c for c, g in plan.CONTENDERS.items()
                                           if g.startswith("torch_")}
  setting = plan.Setting("wisdm", "block", "f32", 4)
  with pytest.raises(ValueError, match="eager, tuned, compiled, torch_latency"):
    contenders_torch.prepare(setting, model_config.config_for(setting, WIDTHS))
