"""--mode=export: StableHLO replayed by a process that imports only jax, ONNX, the model card."""

import json
import os
import subprocess
import sys

import jax
import jax.export  # older jax does not load it with `import jax`
import numpy as np
import pytest

from danhar_jax import export
from danhar_jax import models
from danhar_jax import pretrained
from danhar_jax import trained as trained_lib
from tests import trained_workdir
from tests.conftest import ROOT
from tests.conftest import one_error_line

# Deserialises and runs the export with jax alone; fails if anything of ours or flax loads.
REPLAY = r"""
import sys
import numpy as np
import jax
import jax.export  # older jax does not load it with `import jax`
exported = jax.export.deserialize(open(sys.argv[1] + "/model.stablehlo", "rb").read())
ref = np.load(sys.argv[1] + "/reference.npz")
logits = np.asarray(exported.call(ref["windows"]))
atol = float(sys.argv[2])  # 0: bit-exact
assert np.allclose(logits, ref["logits"], rtol=0, atol=atol), \
    np.abs(logits - ref["logits"]).max()
one = np.asarray(exported.call(ref["windows"][:1]))  # another batch size: polymorphic
assert one.shape == (1, ref["logits"].shape[1]), one.shape
bad = [m for m in sys.modules if m.split(".")[0] in ("danhar_jax", "flax", "tfds_builders")]
assert not bad, bad
print("replayed", logits.shape)
"""


def env():
  return dict(os.environ, DANHAR_OFFLINE="1", JAX_PLATFORMS="cpu",
              PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  workdir = trained_workdir.make(tmp_path_factory.mktemp("export") / "run")
  proc = subprocess.run([sys.executable, "main.py", "--mode=export", f"--workdir={workdir}"],
                        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return workdir


def replay(folder, atol: float = 0.0) -> str:
  """REPLAY's output for the export in `folder`, run by a process that has only jax."""
  proc = subprocess.run([sys.executable, "-c", REPLAY, str(folder), str(atol)],
                        env=dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=""), cwd="/",
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout


@pytest.mark.slow
def test_stablehlo_replays_exactly_in_a_process_with_only_jax(exported):
  assert "replayed (37, 6)" in replay(exported / "export")


@pytest.mark.slow
def test_the_shipped_pretrained_stablehlo_replays_with_only_jax():
  """pretrained/wisdm2019's StableHLO is the file its card names, runs without this package and
  gives the reference logits; a little tolerance, since this machine's CPU may not be the one
  that wrote them."""
  folder = ROOT / "pretrained" / "wisdm2019"
  card = json.loads((folder / "model_card.json").read_text())
  assert export._sha256(str(folder / "model.stablehlo")) == card["files"]["stablehlo"]["sha256"]
  assert "replayed (37, 18)" in replay(folder, atol=1e-5)


def test_this_jax_loads_the_shipped_stablehlo_and_its_card_records_the_versions():
  """Fast, so that every CI leg tells whether its jax still reads the shipped file."""
  folder = ROOT / "pretrained" / "wisdm2019"
  card = json.loads((folder / "model_card.json").read_text())["files"]["stablehlo"]
  data = (folder / "model.stablehlo").read_bytes()
  exported = jax.export.deserialize(bytearray(data))
  assert card["serialization_version"] == export.serialization_version(data)
  assert card["calling_convention_version"] == exported.calling_convention_version
  ref = np.load(folder / "reference.npz")
  logits = np.asarray(exported.call(ref["windows"][:2]))
  np.testing.assert_allclose(logits, ref["logits"][:2], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_the_shipped_stablehlo_is_the_shipped_variables():
  ref = np.load(ROOT / "pretrained" / "wisdm2019" / "reference.npz")
  logits = np.asarray(pretrained.load("wisdm2019").forward("im2col")(ref["windows"]))
  np.testing.assert_allclose(ref["logits"], logits, atol=1e-4)
  assert ref["logits"].shape == (37, 18) and np.ptp(ref["logits"]) > 1


@pytest.mark.slow
def test_reference_logits_are_the_models(exported):
  t = trained_lib.from_workdir(str(exported))
  ref = np.load(exported / "export" / "reference.npz")
  # Another conv_impl computes the same function: equal up to float32 rounding.
  logits = np.asarray(t.forward("im2col")(ref["windows"]))
  np.testing.assert_allclose(ref["logits"], logits, atol=1e-4)
  assert np.ptp(ref["logits"]) > 0


@pytest.mark.slow
def test_model_card(exported):
  card = json.loads((exported / "export" / "model_card.json").read_text())
  assert card["class_names"][0] == "Downstairs" and len(card["class_names"]) == 6
  assert card["input_shape"] == [None, 200, 3] and card["channels"] == ["x", "y", "z"]
  assert card["sample_rate_hz"] == 20 and card["window_step_samples"] == 100
  assert card["test_metrics"]["accuracy"] == 0.5 and card["step"] == 3
  assert card["config"]["model"]["widths"] == [16, 16, 16]
  assert card["files"]["stablehlo"]["platforms"] == ["cpu", "cuda", "rocm", "tpu"]
  t = trained_lib.from_workdir(str(exported))
  assert card["num_params"] == t.num_params > 1000
  assert "no normalisation" in card["preprocessing"]


@pytest.mark.parametrize("kind", ["missing", "untrained"])
def test_export_refuses_missing_or_untrained_workdir(tmp_path, kind):
  workdir = tmp_path / "run"
  if kind == "untrained":
    (workdir / "checkpoints").mkdir(parents=True)
  proc = subprocess.run([sys.executable, "main.py", "--mode=export", f"--workdir={workdir}"],
                        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  last = one_error_line(proc.stderr)
  assert last.startswith("error: --workdir=") and ("does not exist" if kind == "missing"
                                                   else "untrained") in last
  assert not (workdir / "export").exists()


def test_onnx_matches_jax_for_batch_1_and_37(tmp_path):
  pytest.importorskip("jax2onnx", reason="the optional export extra is not installed")
  ort = pytest.importorskip("onnxruntime", reason="the optional export extra is not installed")
  workdir = trained_workdir.make(tmp_path / "run")
  t = trained_lib.from_workdir(str(workdir))
  written = export.export_all(t, str(workdir))
  card = json.loads(open(written["model_card"]).read())
  diffs = card["files"]["onnx"]["max_abs_logit_difference_vs_jax"]
  assert set(diffs) == {"batch_1", "batch_37"} and max(diffs.values()) <= 1e-4
  session = ort.InferenceSession(written["onnx"], providers=["CPUExecutionProvider"])
  forward = t.forward("xla")
  for batch in (1, 37):
    x = export.reference_input((200, 3), batch)
    got = session.run(None, {"windows": x})[0]
    np.testing.assert_allclose(got, np.asarray(forward(x)), atol=1e-4, rtol=0)


def test_inference_leaves_out_the_batch_wide_logit_standardisation(tmp_path):
  """A model trained with the authors' logit LayerNorm answers each window alone: the same labels
  as the training-time model, and probabilities that do not depend on the rest of the batch."""
  config = trained_workdir.tiny_config()
  config.model.logit_standardization = True
  workdir = trained_workdir.make(str(tmp_path / "run"), config)
  t = trained_lib.from_workdir(workdir)
  x = np.random.default_rng(0).standard_normal((8, *config.input_shape)).astype(np.float32)
  forward = jax.jit(t.forward())
  alone = np.concatenate([forward(x[i:i + 1]) for i in range(len(x))])
  np.testing.assert_allclose(forward(x), alone, rtol=1e-5, atol=1e-5)
  as_trained = models.create_model(t.config).apply(t.variables, x)
  assert (np.argmax(as_trained, -1) == np.argmax(alone, -1)).all()
  assert not np.allclose(as_trained, alone)  # the training-time model does standardise
