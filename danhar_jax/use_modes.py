"""main.py's `--mode=predict` and `--mode=export`: both run a model that was trained already.

The model brings its own config (the checkpoint's, or the pretrained model's card), so --config
is optional here; when given, its dataset must match the model's.
"""

from __future__ import annotations

import json
import logging

from danhar_jax import export
from danhar_jax import predict
from danhar_jax import pretrained
from danhar_jax import trained as trained_lib


def load(workdir: str | None, pretrained_name: str | None) -> trained_lib.Trained:
  """The model `--pretrained` names, else the workdir's."""
  if pretrained_name:
    return pretrained.load(pretrained_name)
  if not workdir:
    raise ValueError("Give --workdir=DIR (a trained run) or --pretrained=NAME.")
  return trained_lib.from_workdir(workdir)


def run(flags) -> None:
  t = load(flags.workdir, flags.pretrained)
  if flags.config is not None and flags.config.dataset != t.config.dataset:
    raise ValueError(f"--config has dataset {flags.config.dataset!r} but the model "
                     f"({t.source}) was trained on {t.config.dataset!r}; drop --config.")
  if flags.mode == "predict":
    predict.run(t, flags.input, flags.output)
  else:
    if flags.pretrained and not flags.workdir:
      raise ValueError("--mode=export writes into --workdir: give one (it may be empty) with "
                       "--pretrained.")
    written = export.export_all(t, flags.workdir)
    logging.info("export: %s", ", ".join(written))
    print(json.dumps(written, indent=1))
