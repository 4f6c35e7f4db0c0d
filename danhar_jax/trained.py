"""A trained model outside training: its config, variables, class names and test metrics.

`--mode=predict` and `--mode=export` start from here, with a run's workdir (its latest
checkpoint) or a pretrained model (danhar_jax/pretrained.py). Nothing here needs the dataset:
the class names come from the builder's feature spec, which TFDS knows without preparing it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from danhar_jax import checkpoints
from danhar_jax import input_pipeline
from danhar_jax import models
from danhar_jax import writers


@dataclasses.dataclass
class Trained:
  config: ml_collections.ConfigDict
  variables: dict[str, Any]  # {'params', 'batch_stats'}, numpy arrays
  class_names: list[str]
  source: str  # the workdir, or 'pretrained:<name>'
  step: int | None = None
  metrics: dict[str, Any] | None = None  # the checkpoint's test metrics, when recorded

  def model(self, conv_impl: str | None = None):
    """The model for inference; `conv_impl` overrides the config's (all share parameters).

    Without the authors' logit standardisation: it rescales a whole batch's logits by one mean
    and deviation, which leaves every window's label as it is but would make its probabilities
    depend on which other windows share the batch. A deployed model answers for each window alone.
    """
    config = ml_collections.ConfigDict(self.config.to_dict())
    config.model.logit_standardization = False
    if conv_impl is not None:
      config.model.conv_impl = conv_impl
    return models.create_model(config)

  def forward(self, conv_impl: str | None = None):
    """`logits = f(x)` for windows x [batch, time, sensors], weights closed over (baked in)."""
    model = self.model(conv_impl)
    variables = jax.tree.map(jnp.asarray, self.variables)

    def logits(x):
      return model.apply(variables, x, train=False)
    return logits

  @property
  def num_params(self) -> int:
    return int(sum(np.prod(np.shape(p)) for p in jax.tree.leaves(self.variables["params"])))


def config_from_json(saved: dict) -> ml_collections.ConfigDict:
  """A config as the checkpoint saved it, without what the run resolved at start."""
  saved = {k: v for k, v in saved.items() if k != "resolved"}
  config = ml_collections.ConfigDict(saved)
  # JSON turned tuples into lists; the model and the checks expect tuples.
  for d in (config, config.model):
    for k, v in d.items():
      if isinstance(v, list):
        d[k] = tuple(v)
  return config


def class_names(config) -> list[str]:
  return list(input_pipeline.builder(config).info.features["label"].names)


def from_workdir(workdir: str) -> Trained:
  """The latest checkpoint of `workdir`; one-line errors for a missing or untrained workdir."""
  path = epath.Path(workdir)
  if not path.exists():
    raise FileNotFoundError(f"--workdir={workdir} does not exist: train a model there first "
                            "(--mode=train), or use --pretrained=NAME.")
  state, saved_config, step = checkpoints.restore_as_saved(workdir)
  config = config_from_json(saved_config)
  variables = {k: jax.tree.map(np.asarray, state[k]) for k in ("params", "batch_stats")}
  records = [r for r in writers.read_eval_metrics(workdir) if r.get("step") == step]
  metrics = ({k: v for k, v in records[-1].items() if k != "confusion"} if records else None)
  return Trained(config, variables, class_names(config), os.fspath(workdir), step, metrics)

