"""`--mode=export`: a trained model as deployable files in `<workdir>/export/`.

- `model.stablehlo`: `jax.export` of the eval-mode forward with the weights baked in, batch
  polymorphic (`[b, time, sensors] -> [b, classes]` logits). Any process with jax deserialises
  it with `jax.export.deserialize` and calls it; it needs neither flax nor danhar_jax.
- `reference.npz`: 37 fixed input windows and their logits, to check a deployment against.
- `model.onnx` (with the optional `export` extra, jax2onnx and onnxruntime): the same forward,
  checked against JAX with onnxruntime for batches of 1 and 37.
- `model_card.json`: config, class names, input shape, sample rate, channels, preprocessing,
  parameter count, the checkpoint's test metrics, and the checks above.

Convolutions are exported as plain `lax.conv` (conv_impl 'xla'): every conv_impl computes the
same function with the same parameters, and lax.conv is what StableHLO and ONNX runtimes know.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import jax
import jax.export  # older jax does not load it with `import jax`
import numpy as np

from danhar_jax import predict
from danhar_jax import trained as trained_lib

EXPORT_CONV_IMPL = "xla"
ONNX_TOLERANCE = 1e-4
REFERENCE_BATCH = 37
# One artifact for a server of any kind: the forward has no platform-specific branch once its
# conv_impl is fixed, so it lowers for all of them (measured: 0.3 s, the same size).
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def reference_input(input_shape, batch: int = REFERENCE_BATCH) -> np.ndarray:
  return np.random.default_rng(0).normal(size=(batch, *input_shape)).astype(np.float32)


def stablehlo(t: trained_lib.Trained) -> jax.export.Exported:
  """The eval-mode forward, weights as constants, for any batch size."""
  forward = t.forward(EXPORT_CONV_IMPL)
  batch, = jax.export.symbolic_shape("b")
  spec = jax.ShapeDtypeStruct((batch, *t.config.input_shape), np.float32)
  return jax.export.export(jax.jit(forward), platforms=PLATFORMS)(spec)


def onnx_model(t: trained_lib.Trained):
  """The forward as an ONNX ModelProto via jax2onnx (ImportError without the `export` extra)."""
  from jax2onnx import to_onnx  # pylint: disable=import-outside-toplevel
  forward = t.forward(EXPORT_CONV_IMPL)
  return to_onnx(forward, [("B", *t.config.input_shape)], model_name="danhar",
                 input_names=["windows"], output_names=["logits"])


def onnx_max_differences(path: str, logits_fn, input_shape) -> dict[str, float]:
  """Max |onnxruntime - JAX| of the logits, for batches of 1 and 37."""
  import onnxruntime  # pylint: disable=import-outside-toplevel
  session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
  name = session.get_inputs()[0].name
  out = {}
  for batch in (1, REFERENCE_BATCH):
    x = reference_input(input_shape, batch)
    got = session.run(None, {name: x})[0]
    out[f"batch_{batch}"] = float(np.max(np.abs(got - np.asarray(logits_fn(x)))))
  return out


def model_card(t: trained_lib.Trained, extra: dict | None = None) -> dict:
  name = t.config.dataset.partition("/")[0]
  spec = predict.SPECS.get(name)
  channels = list(spec.channels) if spec and spec.channels else None
  if name == "opportunity":
    channels = "the 113 body-worn channels of the dataset's column_names.txt, in file order"
  card = {
      "model": f"DanHAR {t.config.model.backbone}/{t.config.model.attention}",
      "source": t.source,
      "step": t.step,
      "dataset": t.config.dataset,
      "class_names": list(t.class_names),
      "input_shape": [None, *map(int, t.config.input_shape)],
      "input_layout": "[batch, time, sensors] float32",
      "output": "logits [batch, classes]; softmax gives the class probabilities",
      # Trained with the authors' batch-wide logit standardisation, which only rescales a
      # batch's logits: left out here, so each window's answer is its own (same argmax).
      "logit_standardization_in_training": bool(t.config.model.logit_standardization),
      "logit_standardization_at_inference": False,
      "sample_rate_hz": spec.rate_hz if spec else None,
      "window_samples": int(t.config.input_shape[0]),
      "window_step_samples": _window_step(name),
      "channels": channels,
      "preprocessing": spec.preprocessing if spec else None,
      "num_params": t.num_params,
      "test_metrics": t.metrics,
      "config": t.config.to_dict(),
      "jax_version": jax.__version__,
  }
  card.update(extra or {})
  return json.loads(json.dumps(card, default=_jsonable))


def _window_step(name: str) -> int | None:
  modules = {"wisdm": predict.wisdm, "wisdm2019": predict.wisdm2019, "pamap2": predict.pamap2,
             "opportunity": predict.opportunity}
  return int(modules[name].STEP) if name in modules else None


def _jsonable(value):
  if isinstance(value, (np.integer, np.floating)):
    return value.item()
  if isinstance(value, (tuple, np.ndarray)):
    return list(value)
  return str(value)


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def serialization_version(data: bytes) -> int | None:
  """The jax.export serialization version a StableHLO file was written with: each jax reads
  only a window of them, so a card that records it says when the file needs writing again."""
  try:  # jax has no public reader of the version; None where its private one moves
    from jax._src.export import serialization_generated  # pylint: disable=import-outside-toplevel
    return int(serialization_generated.Exported.GetRootAsExported(data).SerializationVersion())
  except (ImportError, AttributeError):
    return None


def write_stablehlo(t: trained_lib.Trained, folder: str) -> dict:
  """Writes model.stablehlo and reference.npz into `folder`; returns the card's "files" entry."""
  os.makedirs(folder, exist_ok=True)
  exported = stablehlo(t)
  x = reference_input(t.config.input_shape)
  logits = np.asarray(jax.jit(t.forward(EXPORT_CONV_IMPL))(x))
  # What a consumer of the file will run: the deserialised module, on the reference batch.
  replayed = np.asarray(jax.export.deserialize(exported.serialize()).call(x))
  if not np.array_equal(replayed, logits):
    logging.warning("export: the deserialised module's logits differ from jit's by up to %.3g.",
                    float(np.max(np.abs(replayed - logits))))
  hlo_path = os.path.join(folder, "model.stablehlo")
  data = exported.serialize()
  _write_bytes(hlo_path, data)
  np.savez(os.path.join(folder, "reference.npz"), windows=x, logits=replayed)
  return {"stablehlo": {"path": "model.stablehlo", "sha256": _sha256(hlo_path),
                        "platforms": list(exported.platforms),
                        "input": "float32[b, time, sensors], any b >= 1",
                        "serialization_version": serialization_version(data),
                        "calling_convention_version": exported.calling_convention_version},
          "reference": {"path": "reference.npz"}}


def export_all(t: trained_lib.Trained, workdir: str) -> dict[str, str]:
  """Writes model.stablehlo, reference.npz, model.onnx (when possible) and model_card.json."""
  folder = os.path.join(workdir, "export")
  extra = {"files": write_stablehlo(t, folder)}
  written = {"stablehlo": os.path.join(folder, "model.stablehlo"),
             "reference": os.path.join(folder, "reference.npz")}
  try:
    proto = onnx_model(t)
  except ImportError as e:
    logging.warning("export: no ONNX file (%s); pip install 'danhar_jax[export]' adds it.", e)
  else:
    onnx_path = os.path.join(folder, "model.onnx")
    _write_bytes(onnx_path, proto.SerializeToString())
    diffs = onnx_max_differences(onnx_path, jax.jit(t.forward(EXPORT_CONV_IMPL)),
                                 t.config.input_shape)
    if max(diffs.values()) > ONNX_TOLERANCE:
      os.remove(onnx_path)
      raise ValueError(f"The ONNX model's logits differ from JAX's by up to "
                       f"{max(diffs.values()):.3g} (> {ONNX_TOLERANCE:g}); no model.onnx "
                       "written.")
    written["onnx"] = onnx_path
    extra["files"]["onnx"] = {"path": "model.onnx", "sha256": _sha256(onnx_path),
                              "input": "windows float32[B, time, sensors]",
                              "output": "logits float32[B, classes]",
                              "max_abs_logit_difference_vs_jax": diffs}
  card_path = os.path.join(folder, "model_card.json")
  with open(card_path, "w") as f:
    json.dump(model_card(t, extra), f, indent=1)
    f.write("\n")
  written["model_card"] = card_path
  return written


def _write_bytes(path: str, data: bytes) -> None:
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)
