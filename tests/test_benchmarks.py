"""The throughput benchmark's report and the PyTorch peer's architecture; no timing assertions."""

import importlib
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

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
import trainer_bench  # pylint: disable=g-import-not-at-top,wrong-import-position

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


def fake_contender(throughput, who, clock, seconds, calls):
  """A contender whose every step advances the fake `clock` by `seconds`."""

  def build():
    def run(n):
      calls.append(who)
      clock[0] += seconds * n
    return throughput.Built({"matmul" if who == "peak" else "train": run})

  return throughput.Contender(who, build, torch_compile=who.startswith("torch_compile"))


BASE = {"config": "wisdm", "dataset": "wisdm", "dtype": "float32", "batch_size": 4,
        "devices": 1}


@pytest.fixture(name="throughput")
def throughput_module():
  # Imported here, not at the top: its absl flags are defined on import, and only these tests
  # need them.
  return importlib.import_module("throughput")


def test_a_spent_budget_marks_the_remaining_contenders_not_run(throughput, monkeypatch):
  """--time_budget_s is checked before every contender and every round of repeats: what
  started keeps its timing (cut), the rest become 'not run' rows saying why."""
  clock, calls, updates = [0.0], [], []
  monkeypatch.setattr(throughput.time, "perf_counter", lambda: clock[0])
  budget = throughput.Budget(10, clock=lambda: clock[0])
  contenders = [fake_contender(throughput, who, clock, s, calls)
                for who, s in (("peak", 1), ("jax:a", 4), ("jax:b", 1), ("torch_eager", 1))]
  # peak's two first calls end at 2 s, jax:a's at 10, jax:b's at 12: torch_eager starts late.
  records, _ = throughput.time_contenders(
      contenders, budget, repeats=3, warmup=0, steps=1, min_repeat_s=0,
      on_update=lambda records, others: updates.append(dict(records)))
  assert records["torch_eager"] == {"not_run": "--time_budget_s=10 spent"}
  assert "torch_eager" not in calls
  # After each contender, after the one round of repeats, and after the cut.
  assert [list(u) for u in updates] == [["peak"], ["peak", "jax:a"], ["peak", "jax:a", "jax:b"],
                                        ["peak", "jax:a", "jax:b", "torch_eager"]] + [
                                            ["peak", "jax:a", "jax:b", "torch_eager"]] * 2
  for who in ("jax:a", "jax:b"):  # one round of repeats ran, the second found the budget spent
    assert len(records[who]["parts"]["train"]["step_s"]) == 1
    assert records[who]["cut"] == "--time_budget_s=10 spent after 1 of 3 repeats"
  rows = throughput.setting_rows(records, BASE, flops=1e6, size=64, n_dev=1, sheet=None,
                                 others=None)
  by_impl = {r["impl"]: r for r in rows}
  assert set(by_impl) == {"a", "b", "torch_eager"}
  assert by_impl["torch_eager"]["not_run"] == "--time_budget_s=10 spent"
  assert by_impl["a"]["train_windows_per_s"] == 4 / 4.0 and by_impl["a"]["train_repeats"] == 1
  assert by_impl["a"]["mfu"] is not None  # the peak was timed first
  assert "not run: --time_budget_s=10 spent" in throughput.table(rows)


def test_torch_compile_draws_on_its_own_allowance(throughput, monkeypatch):
  """A slow torch.compile is charged to --torch_compile_budget_s, not --time_budget_s: the JAX
  contender after it still runs, a second compiled peer does not."""
  clock, calls = [0.0], []
  monkeypatch.setattr(throughput.time, "perf_counter", lambda: clock[0])
  budget = throughput.Budget(10, 50, clock=lambda: clock[0])
  contenders = [fake_contender(throughput, who, clock, s, calls)
                for who, s in (("peak", 1), ("torch_compile", 30), ("torch_compile_b", 1),
                               ("jax:a", 1))]
  records, _ = throughput.time_contenders(contenders, budget, repeats=1, warmup=0, steps=1,
                                          min_repeat_s=0)
  assert records["torch_compile_b"] == {"not_run": "--torch_compile_budget_s=50 spent"}
  # jax:a was prepared and timed before the compile began, then timed again beside it.
  assert calls[:calls.index("torch_compile")] == ["peak", "peak", "jax:a", "jax:a", "peak",
                                                  "jax:a"]
  assert records["jax:a"]["parts"]["train"]["step_s"] == [1.0, 1.0]
  assert records["torch_compile"]["parts"]["train"]["step_s"] == [30.0]
  # The second round began 92 s in, 60 of them torch.compile's first calls: not spent.
  assert budget.compiling_s == 60 and "cut" not in records["jax:a"]


def test_repeats_are_sized_to_last_min_repeat_s(throughput, monkeypatch):
  assert throughput.steps_for(0.004, 0.1) == 25
  assert throughput.steps_for(0.3, 0.1) == 1
  clock, calls = [0.0], []
  run = fake_contender(throughput, "jax:a", clock, 0.002, calls).build().parts["train"]
  monkeypatch.setattr(throughput.time, "perf_counter", lambda: clock[0])
  # Two first calls of 1 step, then one warmup repeat of 50 steps (0.1 s / 2 ms), re-sized.
  timing = throughput.prepare(run, warmup=1, steps=0, min_repeat_s=0.1)
  assert timing["steps"] == 50 and calls == ["jax:a"] * 3
  assert throughput.prepare(run, warmup=1, steps=7, min_repeat_s=0.1)["steps"] == 7


def test_cache_events_tell_a_persistent_cache_hit(throughput, tmp_path):
  events = throughput.CacheEvents()
  events.installed = True  # the listener is called by hand here
  before = events.snapshot()
  jax.config.update("jax_compilation_cache_dir", str(tmp_path))
  try:
    events.listen(events.REQUEST)
    assert events.hit(before) is False
    events.listen(events.HIT)
    events.listen("/jax/some_other_event")
    assert events.hit(before) is True
    events.listen(events.REQUEST)
    assert events.hit(before) is False  # one of two compiles missed
    assert events.hit(events.snapshot()) is None  # nothing compiled since
  finally:
    jax.config.update("jax_compilation_cache_dir", None)
  events.listen(events.REQUEST)
  assert events.hit(before) is None  # no cache directory: no persistent cache


@pytest.mark.slow
def test_rows_written_before_a_sigkill_survive(tmp_path):
  """Rows reach --json as each contender is measured, each write whole: a run killed midway
  (as a device call's time limit kills it) keeps every row it had written, and they parse."""
  out, md = tmp_path / "rows.json", tmp_path / "rows.md"
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1", PYTHONPATH=str(ROOT),
             JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla_cache"))
  args = [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--configs=wisdm",
          "--widths=16,16,16", "--batch_sizes=2", "--repeats=100000", "--warmup=0",
          "--min_repeat_s=0.01", "--peak_size=64", "--split_windows=8", "--notorch",
          f"--json={out}", f"--markdown={md}"]
  proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
  seen, deadline = [], time.monotonic() + 300
  try:
    while time.monotonic() < deadline and proc.poll() is None:
      if out.exists():
        seen = json.loads(out.read_text())  # must parse whenever it exists
        if any(r.get("train_repeats") for r in seen):
          break
      time.sleep(0.05)
    assert proc.poll() is None, f"ended before writing a row: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.kill()
    proc.wait()
  assert seen, "no row within 300 s"
  rows = json.loads(out.read_text())
  key = lambda r: (r["config"], r["impl"], r["parallelism"], r["batch_size"])
  assert [key(r) for r in rows] == [key(r) for r in seen] == [("wisdm", "winograd", "pmap", 2)]
  assert rows[0]["train_repeats"] >= seen[0]["train_repeats"] >= 1
  assert rows[0]["train_windows_per_s"] > 0 and rows[0]["train_steps_per_repeat"] >= 1
  assert rows[0]["train_compile_cache_hit"] is False  # an empty cache: compiled here
  # XLA's count of the compiled step is below the 3× convention (Winograd, no input gradient).
  assert 0 < rows[0]["xla_over_analytic_flops"] < 1 and rows[0]["mfu_xla"] > 0
  assert "| wisdm | float32/default | 2 | 1 | winograd |" in md.read_text()


@pytest.mark.slow
def test_the_trainer_contender_runs_the_weakly_loop_with_its_localisation_evaluator():
  """The weakly config scores localisation at every evaluation: the synthetic test split
  carries segments inside its windows, so the trainer contender times that loop as users run
  it (it stopped with 'has no segment_start/segment_end features' before)."""
  config = trainer_bench.load("weakly")
  config.model.widths = (16, 32, 48)
  _, test, _ = trainer_bench.synthetic_splits(config, 8, 16, config.input_shape)
  start, end = test["segment_start"], test["segment_end"]
  assert (0 <= start).all() and (start < end).all() and (end <= config.input_shape[0]).all()
  row = trainer_bench.loop_efficiency("weakly", config, batch=2, epochs=2, steps_per_epoch=2,
                                      n_test=16)
  assert row["trainer_windows_per_s"] > 0 and row["loop_efficiency"] > 0
  host = trainer_bench.host_us_per_step(config, 1024, batch=256, epochs=2)
  assert host["steps_per_epoch"] == 4 and host["host_us_per_step"] > 0


def test_a_trainer_row_shows_its_loop_efficiency_host_cost_and_boundary(throughput):
  row = {"config": "wisdm", "contender": "trainer", "batch_size": 64, "devices": 1,
         "impl": "trainer", "peer": False, "trainer_windows_per_s": 182.0,
         "loop_efficiency": 0.994, "host_us_per_step": 114.9, "eval_s": 1.654,
         "checkpoint_s": 0.0726}
  text = throughput.table([row])
  assert "| trainer | 182.0 |" in text
  assert "loop_efficiency 0.99, host 115 µs/step, eval 1.65 s, checkpoint 0.07 s" in text
