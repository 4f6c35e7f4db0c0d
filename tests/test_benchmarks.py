"""The throughput benchmark's report and the PyTorch peer's architecture; no timing assertions."""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from danhar_jax import models
from danhar_jax import summary
from tests.test_models import authors_config, with_random

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import cell_runner  # pylint: disable=g-import-not-at-top,wrong-import-position

# Every JSON row must carry these, and the rates must be positive numbers.
REQUIRED = ("config", "dtype", "batch_size", "devices", "device", "impl", "peer",
            "train_windows_per_s", "eval_windows_per_s", "mfu", "train_ms", "train_ms_min",
            "train_ms_max", "train_compile_s", "train_tflops", "peak_tflops",
            "forward_mflop_per_window")


@pytest.mark.slow
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
  expected = summary.count_params(jax.eval_shape(lambda: models.init_variables(
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


@pytest.mark.slow
@pytest.mark.parametrize("tuned", (False, True), ids=("authors", "tuned"))
@pytest.mark.parametrize("dataset", DATASETS)
def test_torch_peer_computes_the_jax_model(dataset, tuned):
  """With the JAX weights loaded, the peer's training pass (logits, running statistics,
  gradients) and its evaluation equal the JAX model's: the two time the same function. The
  tuned peer (channels_last) must compute it too."""
  torch = pytest.importorskip("torch")
  import torch_reference  # pylint: disable=import-outside-toplevel
  config = authors_config(dataset)
  model = models.create_model(config)
  variables = models.init_variables(model, config.input_shape)
  # Nonzero biases and running means, so that every one of them must land in its place.
  variables = with_random(with_random(variables, "bias", 0.3), "mean", 0.3, seed=3)
  x = np.asarray(jax.random.normal(jax.random.key(1), (4, *config.input_shape)))
  labels = np.arange(4) % config.num_classes

  def loss(params):
    logits, updates = model.apply({**variables, "params": params}, x, train=True,
                                  mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), (logits,
                                                                                   updates)

  (_, (logits, updates)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
      variables["params"])
  peer = torch_reference.load_jax_variables(torch_reference.DanHAR(config), variables).train()
  if tuned:
    torch_reference.tune(peer, "cpu", channels_last=True)
  peer_logits = peer(torch.tensor(x))
  torch.nn.functional.cross_entropy(peer_logits, torch.as_tensor(labels)).backward()
  np.testing.assert_allclose(logits, peer_logits.detach().numpy(), rtol=1e-4, atol=1e-4)

  as_peer = lambda tree: torch_reference.load_jax_variables(torch_reference.DanHAR(config),
                                                            tree).state_dict()
  stats = as_peer({**variables, **updates})
  for name, value in peer.state_dict().items():
    if "running" in name:
      np.testing.assert_allclose(value.numpy(), stats[name].numpy(), rtol=1e-5, atol=1e-6)
  grads = as_peer({**variables, "params": grads})
  got = np.concatenate([p.grad.numpy().ravel() for _, p in peer.named_parameters()])
  want = np.concatenate([grads[n].numpy().ravel() for n, _ in peer.named_parameters()])
  # At batch 4 these gradients are ill-conditioned (ReLU flips, BatchNorm over few samples): a
  # 1e-6 relative perturbation of the input moves JAX's own by 1.2-1.6e-3, as far as the peer's
  # differ from it (1.1-1.8e-3, with lax.conv too). A misplaced weight moves them by O(1).
  assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-2

  peer.eval()
  evaluated = model.apply({**variables, **updates}, x)
  np.testing.assert_allclose(evaluated, peer(torch.tensor(x)).detach().numpy(),
                             rtol=1e-4, atol=1e-4)


def test_a_cell_runs_once_per_command_and_keeps_its_log(tmp_path):
  """The comparisons' shared cell runner: a record of the same command means done; another
  command, or none, runs; output is appended to log.txt; a failure is returned, not hidden."""
  workdir, record = str(tmp_path / "cell"), str(tmp_path / "cell" / "done.json")
  cmd = [sys.executable, "-c", "import os; print('ran', os.environ['DANHAR_OFFLINE'])"]
  assert cell_runner.finished_before(record, cmd) is None
  ran = cell_runner.run(cmd, workdir, "test cell")
  assert ran["returncode"] == 0 and ran["command"] == cmd[1:] and not ran["resumed"]
  with open(record, "w") as f:
    json.dump(ran, f)
  assert cell_runner.finished_before(record, cmd) == ran
  assert cell_runner.finished_before(record, [*cmd[:2], "print(2)"]) is None
  os.makedirs(os.path.join(workdir, "checkpoints"))
  failed = cell_runner.run([sys.executable, "-c", "raise SystemExit(3)"], workdir, "test cell")
  assert failed["returncode"] == 3 and failed["resumed"]
  assert open(os.path.join(workdir, "log.txt")).read() == "ran 1\n"
