r"""On the device at hand: the JAX model against the PyTorch peer with the same weights.

  python -m benchmarks.device_correctness --out=DIR                 # every dataset config
  python -m benchmarks.device_correctness --out=DIR --configs=wisdm --batch=8

For each config, with JAX on its default backend and PyTorch on its own default device (the
GPU, where there is one), both at full float32 ('highest': no TF32):

- training-mode logits, the BatchNorm running statistics they update, and the gradients of the
  cross-entropy with respect to every parameter;
- evaluation-mode logits;
- JAX's bfloat16 evaluation logits against its float32 ones, and its TF32 ('high') logits, which
  show what the faster numerics cost.

Each check is a relative L2 error, ‖a − b‖ / ‖b‖, against a bound: float32 arithmetic lands far
under 1e-4; gradients are looser because at small batches ReLU flips and BatchNorm over few
windows make them ill-conditioned (a 1e-6 change of the input moves them by ~1e-3). Writes
`correctness.json` and `correctness.md` into --out as each config finishes. Exit 1 if any check
fails.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import sys

from absl import app
from absl import flags
import jax
import numpy as np
import optax

if not __package__:  # run as a file, the packages are not importable
  sys.exit("run it from the repository root as: python -m benchmarks.device_correctness")

from danhar_jax import models  # pylint: disable=g-import-not-at-top
from danhar_jax import train

DATASETS = ("wisdm", "wisdm2019", "pamap2", "unimib_shar", "opportunity", "weakly")
# (check, bound on the relative L2 error); a bound of None is reported, not enforced.
BOUNDS = {"train_logits": 1e-4, "running_stats": 1e-4, "gradients": 1e-2, "eval_logits": 1e-4,
          "bf16_eval_logits": 5e-2, "tf32_eval_logits": None}

_OUT = flags.DEFINE_string("out", None, "Folder for correctness.json and correctness.md.")
_CONFIGS = flags.DEFINE_list("configs", list(DATASETS), "Dataset configs, each name[:arg].")
_BATCH = flags.DEFINE_integer("batch", 32, "Windows per comparison.")
_WIDTHS = flags.DEFINE_string("widths", "", "Override config.model.widths, e.g. 16,32,48 "
                              "(a quick rehearsal on a CPU).")


def relative_error(a, b) -> float:
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def load_config(spec: str):
  name, _, arg = spec.partition(":")
  config = importlib.import_module(f"configs.{name}").get_config(arg or None)
  if _WIDTHS.value:
    config.model.widths = tuple(int(w) for w in _WIDTHS.value.split(","))
  return config


def compare(config, batch: int, seed: int = 0) -> dict[str, float]:
  """Relative errors of every check for one config (see the module docstring)."""
  import torch  # pylint: disable=import-outside-toplevel
  from benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  torch_reference.set_matmul_precision("highest")
  device = torch_reference.default_device()
  model = models.create_model(config)
  variables = models.init_variables(model, config.input_shape, seed)
  rng = np.random.default_rng(seed)
  # Biases and running means away from their zero init, so each must land in its place.
  variables = jax.tree_util.tree_map_with_path(
      lambda path, v: v + 0.3 * rng.standard_normal(v.shape).astype(v.dtype)
      if str(path[-1].key) in ("bias", "mean") else v, variables)
  x = rng.standard_normal((batch, *config.input_shape)).astype(np.float32)
  labels = (np.arange(batch) % config.num_classes).astype(np.int32)

  def loss_fn(params):
    logits, updates = model.apply({**variables, "params": params}, x, train=True,
                                  mutable=["batch_stats"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, (logits, updates)

  grad_fn = jax.jit(train.with_matmul_precision(jax.value_and_grad(loss_fn, has_aux=True),
                                                "highest"))
  (_, (logits, updates)), grads = grad_fn(variables["params"])
  peer = torch_reference.load_jax_variables(torch_reference.DanHAR(config), variables)
  peer = peer.to(device).train()
  peer_logits = peer(torch.tensor(x, device=device))
  torch.nn.functional.cross_entropy(peer_logits, torch.as_tensor(
      labels, dtype=torch.long, device=device)).backward()

  as_peer = lambda tree: torch_reference.load_jax_variables(
      torch_reference.DanHAR(config), tree).state_dict()
  stats = as_peer({**variables, **updates})
  peer_state = {k: v.detach().cpu().numpy() for k, v in peer.state_dict().items()}
  running = [k for k in peer_state if "running" in k]
  want_grads = as_peer({**variables, "params": grads})
  names = [n for n, _ in peer.named_parameters()]
  got_grads = np.concatenate([p.grad.detach().cpu().numpy().ravel()
                              for _, p in peer.named_parameters()])

  trained = {**variables, **updates}
  evaluate = lambda precision, cfg=config: jax.jit(train.with_matmul_precision(
      lambda v, w: models.create_model(cfg).apply(v, w), precision))(trained, x)
  peer.eval()
  with torch.no_grad():
    peer_eval = peer(torch.tensor(x, device=device)).cpu().numpy()
  f32 = evaluate("highest")
  bf16_config = config.copy_and_resolve_references()
  bf16_config.model.dtype = "bfloat16"
  return {
      "train_logits": relative_error(peer_logits.detach().cpu().numpy(), logits),
      "running_stats": relative_error(np.concatenate([peer_state[k].ravel() for k in running]),
                                      np.concatenate([stats[k].numpy().ravel()
                                                      for k in running])),
      "gradients": relative_error(got_grads, np.concatenate(
          [want_grads[n].numpy().ravel() for n in names])),
      "eval_logits": relative_error(peer_eval, f32),
      "bf16_eval_logits": relative_error(evaluate("default", bf16_config), f32),
      "tf32_eval_logits": relative_error(evaluate("high"), f32),
  }


def report(rows: list[dict]) -> str:
  lines = ["| config | check | relative error | bound | result |", "|---|---|---|---|---|"]
  for r in rows:
    bound = "-" if r["bound"] is None else f"{r['bound']:.0e}"
    lines.append(f"| {r['config']} | {r['check']} | {r['error']:.2e} | {bound} | "
                 f"{r['result']} |")
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  import torch  # pylint: disable=import-outside-toplevel
  from benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  out = pathlib.Path(_OUT.value)
  out.mkdir(parents=True, exist_ok=True)
  print(f"JAX {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}); "
        f"torch {torch.__version__} on {torch_reference.default_device()}", flush=True)
  rows, failed = [], []
  for spec in _CONFIGS.value:
    try:
      errors = compare(load_config(spec), _BATCH.value)
    except Exception as e:  # pylint: disable=broad-except
      errors = {"error": f"{type(e).__name__}: {e}"[:300]}
      print(f"{spec}: FAILED TO RUN: {errors['error']}", flush=True)
      rows.append({"config": spec, "check": "runs", "error": float("nan"), "bound": None,
                   "result": errors["error"]})
      failed.append(f"{spec}: runs")
    for check, error in errors.items():
      if check == "error":
        continue
      bound = BOUNDS[check]
      ok = bound is None or error < bound
      result = "pass" if ok else "FAIL"
      rows.append({"config": spec, "check": check, "error": error, "bound": bound,
                   "result": result if bound is not None else "reported"})
      print(f"{spec:12s} {check:18s} {error:.2e}  bound {bound}  {result}", flush=True)
      if not ok:
        failed.append(f"{spec}: {check}")
    (out / "correctness.json").write_text(json.dumps(rows, indent=1))
    (out / "correctness.md").write_text(report(rows))
  print(f"correctness: {len(failed)} failed" + (f": {', '.join(failed)}" if failed else ""))
  return 1 if failed else 0


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  app.run(lambda argv: sys.exit(main(argv)))
