"""The throughput benchmark's report and the PyTorch peer's architecture; no timing assertions."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import pytest

from danhar_jax import models
from tests.test_models import authors_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# Every JSON row must carry these (issue #4), and the rates must be positive numbers.
REQUIRED = ("config", "dtype", "batch_size", "devices", "device", "impl", "peer",
            "train_windows_per_s", "eval_windows_per_s", "mfu", "train_ms", "train_ms_min",
            "train_ms_max", "train_compile_s", "train_tflops", "peak_tflops",
            "forward_mflop_per_window")


def test_throughput_writes_rows_with_the_required_keys(tmp_path):
  out = tmp_path / "rows.json"
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1", PYTHONPATH=str(ROOT))
  args = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"),
          "--config=configs/wisdm.py", "--config.model.widths=(16,32,48)", "--batch_sizes=2",
          "--repeats=1", "--warmup=0", "--peak_size=256", "--split_windows=8",
          f"--json={out}"]
  proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "MFLOP/window" in proc.stdout and "matmul peak" in proc.stdout
  rows = json.loads(out.read_text())
  jax_rows = [r for r in rows if not r["peer"]]
  assert len(jax_rows) == 1 and jax_rows[0]["impl"] == "winograd"
  for row in rows:
    for key in REQUIRED:
      assert key in row, key
    assert row["config"] == "wisdm" and row["dtype"] == "float32" and row["batch_size"] == 2
    for key in ("train_windows_per_s", "eval_windows_per_s", "mfu", "train_tflops"):
      assert isinstance(row[key], float) and row[key] > 0, (key, row[key])
  assert jax_rows[0]["pipeline_windows_per_s"] > 0
  assert "other_cores_during_timing" in jax_rows[0]
  if importlib.util.find_spec("torch") is not None:
    assert [r["impl"] for r in rows if r["peer"]] == ["torch_eager"]
    assert jax_rows[0]["train_over_torch_eager"] > 0
  else:
    assert "torch not installed: peer skipped" in proc.stdout


DATASETS = ("wisdm", "pamap2", "unimib_shar", "opportunity", "weakly")


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("variant", ("cnn", "resnet", "danhar"))
def test_torch_peer_has_the_jax_parameter_count(dataset, variant):
  pytest.importorskip("torch")
  import torch_reference  # pylint: disable=import-outside-toplevel
  config = authors_config(dataset, variant)
  expected = models.count_params(jax.eval_shape(lambda: models.init_variables(
      models.create_model(config), config.input_shape))["params"])
  assert torch_reference.count_params(torch_reference.DanHAR(config)) == expected
  torch_reference.build(config)  # asserts the same internally


@pytest.mark.parametrize("dataset", ("wisdm", "opportunity"))
def test_torch_peer_trains_and_evaluates(dataset):
  torch = pytest.importorskip("torch")
  import torch_reference  # pylint: disable=import-outside-toplevel
  config = authors_config(dataset)
  model = torch_reference.build(config)
  train_step, eval_step = torch_reference.make_steps(model, config, batch_size=2)
  before = [p.detach().clone() for p in model.parameters()]
  loss = train_step()
  assert torch.isfinite(loss)
  assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
  assert eval_step().shape == (2, config.num_classes)
