"""Pretrained models shipped under pretrained/<name>/: `--pretrained=NAME` uses one.

Each folder holds `variables.npz` (params and batch statistics, float32, one array per
'/'-joined path), `model.stablehlo` and `reference.npz` (as `--mode=export` writes them: the
forward with the weights baked in, for jax alone) and `model_card.json` (the config, class
names, test metrics and the training command). Make one from a trained workdir with

  python -m danhar_jax.pretrained --workdir=runs/wisdm2019 --name=wisdm2019 \
      --source="what the run was" --command="the command that trained it"
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
from flax import traverse_util

from danhar_jax import export
from danhar_jax import trained as trained_lib

# The repository's pretrained/ (beside danhar_jax/); DANHAR_PRETRAINED_DIR points elsewhere.
DEFAULT_DIR = pathlib.Path(__file__).resolve().parents[1] / "pretrained"


def directory() -> pathlib.Path:
  return pathlib.Path(os.environ.get("DANHAR_PRETRAINED_DIR") or DEFAULT_DIR)


def available() -> list[str]:
  root = directory()
  if not root.is_dir():
    return []
  return sorted(p.name for p in root.iterdir()
                if (p / "variables.npz").is_file() and (p / "model_card.json").is_file())


def load(name: str) -> trained_lib.Trained:
  names = available()
  if name not in names:
    listed = (f"available: {', '.join(names)}" if names else
              f"none are available yet ({directory()} holds no pretrained model)")
    raise ValueError(f"--pretrained={name} is not a pretrained model; {listed}.")
  folder = directory() / name
  card = json.loads((folder / "model_card.json").read_text())
  with np.load(folder / "variables.npz") as npz:
    variables = traverse_util.unflatten_dict({k: npz[k] for k in npz.files}, sep="/")
  return trained_lib.Trained(trained_lib.config_from_json(card["config"]), variables,
                             list(card["class_names"]), f"pretrained:{name}",
                             card.get("step"), card.get("test_metrics"))


def save(t: trained_lib.Trained, name: str, root: pathlib.Path | None = None,
         source: str | None = None, command: str | None = None) -> pathlib.Path:
  """Writes pretrained/<name>/ from a trained model: its variables, its StableHLO (with a
  reference batch) and its model card; `source` and `command` say how it was trained."""
  folder = (root or directory()) / name
  folder.mkdir(parents=True, exist_ok=True)
  np.savez(folder / "variables.npz", **{
      k: np.asarray(v, np.float32)
      for k, v in traverse_util.flatten_dict(dict(t.variables), sep="/").items()})
  extra = {"files": {"variables": {"path": "variables.npz"},
                     **export.write_stablehlo(t, str(folder))}}
  if source:
    extra["source"] = source
  if command:
    extra["command"] = command
  (folder / "model_card.json").write_text(json.dumps(export.model_card(t, extra), indent=1)
                                          + "\n")
  return folder


def _main(argv):
  del argv
  from absl import flags  # pylint: disable=import-outside-toplevel
  folder = save(trained_lib.from_workdir(flags.FLAGS.workdir), flags.FLAGS.name,
                source=flags.FLAGS.source, command=flags.FLAGS.command)
  print(folder)


if __name__ == "__main__":
  from absl import app, flags  # pylint: disable=g-import-not-at-top,g-multiple-import
  flags.DEFINE_string("workdir", None, "A trained run.")
  flags.DEFINE_string("name", None, "The pretrained model's name, e.g. wisdm2019.")
  flags.DEFINE_string("source", None, "For the card: what the run was (default: its workdir).")
  flags.DEFINE_string("command", None, "For the card: the command that trained it.")
  flags.mark_flags_as_required(["workdir", "name"])
  app.run(_main)
