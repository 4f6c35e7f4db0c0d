"""Configs are checked when loaded: every field that shapes a run, one line per mistake."""

import importlib
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from danhar_jax import config_check
from danhar_jax import models
from tests.conftest import ROOT
from tests.test_errors import config  # the quick WISDM config, with overrides

DATASET_CONFIGS = ("wisdm", "wisdm2019", "pamap2", "unimib_shar", "opportunity", "weakly")
VARIANTS = ("", "resnet", "cnn", "att_cnn", "channel", "temporal", "temporal_channel", "quick")


# (field, a value no run can use, what the one-line error must say is allowed)
BAD = [
    ("split", "random", "is not one of default, subjects, random_windows"),
    ("select_on", "test_accuracy", "is not one of , validation_accuracy"),
    ("early_stopping_patience", -1, "0 (off) or an integer >= 1"),
    ("validation_fraction", 1.0, "a number in [0, 1)"),
    ("class_weights", "1,2", "6 comma-separated weights >= 0"),
    ("class_weights", "0,0,0,0,0,0", "not all 0"),
    ("class_weights", "1,1,1,1,1,-1", "weights >= 0"),
    ("class_weights", "inverse", "'none', 'balanced', or 6"),
    ("batch_size", 0, "an integer >= 1"),
    ("batch_size", -8, "an integer >= 1"),
    ("eval_batch_size", 0, "an integer >= 1"),
    ("learning_rate", 0.0, "a finite number > 0"),
    ("learning_rate", float("nan"), "a finite number > 0"),
    ("learning_rate", -1e-3, "a finite number > 0"),
    ("weight_decay", -1e-3, "a finite number >= 0"),
    ("weight_decay", float("inf"), "a finite number >= 0"),
    ("lr_schedule", "cosine", "one of constant, exponential, step"),
    ("lr_decay_rate", 0.0, "a number in (0, 1]"),
    ("lr_decay_rate", 1.5, "a number in (0, 1]"),
    ("lr_step_epochs", 0, "an integer >= 1"),
    ("num_epochs", 0, "an integer >= 1"),
    ("steps_per_epoch", 0, "-1 (every full batch) or an integer >= 1"),
    ("steps_per_epoch", -2, "-1 (every full batch) or an integer >= 1"),
    ("seed", -1, "an integer in [0, 4294967295]"),
    ("seed", 2**32, "an integer in [0, 4294967295]"),
    ("parallelism", "dp", "one of pmap, shard_map"),
    ("log_every_steps", 0, "an integer >= 1"),
    ("checkpoint_every_steps", -1, "an integer >= 0"),
    ("checkpoint_every_seconds", -1.0, "a finite number of seconds >= 0 (0: every epoch end)"),
    ("checkpoint_every_seconds", float("nan"), "a finite number of seconds >= 0"),
    ("steps_per_call", -1, "0 (auto, per backend) or an integer >= 1"),
    ("steps_per_call", 2.5, "0 (auto, per backend) or an integer >= 1"),
    ("steps_per_call", "4", "0 (auto, per backend) or an integer >= 1"),
    ("max_checkpoints_to_keep", 0, "None (keep all) or an integer >= 1"),
    ("profile_steps", -1, "an integer >= 0"),
    ("evaluators", ("pointing",), "entry 'pointing' is not a name among classification, "
     "per_subject, localization"),
    ("evaluators", (("localization", "validation", 1),), "localization: test)"),
    ("evaluators", (("classification", "test", 0),), "every epochs >= 1"),
    ("input_shape", (200,), "two integers >= 1 (time, sensors)"),
    ("input_shape", (200, 0), "two integers >= 1 (time, sensors)"),
    ("input_shape", (10, 3), "need at least 36 time steps"),
    ("num_classes", 1, "an integer >= 2"),
    ("model.backbone", "vgg", "one of cnn, resnet"),
    ("model.attention", "self", "one of none, channel, temporal, channel_temporal"),
    ("model.widths", (), "a non-empty tuple of integers >= 1"),
    ("model.widths", (8, 0, 8), "a non-empty tuple of integers >= 1"),
    ("model.kernel", 0, "an integer >= 1"),
    ("model.strides", (2, 0, 2), "a tuple of 3 integers >= 1"),
    ("model.strides", (2, 2), "a tuple of 3 integers >= 1, one per entry of model.widths=(128, "),
    ("model.padding", -1, "an integer >= 0"),
    ("model.kernel2", 0, "an integer >= 1"),
    ("model.temporal_kernel", (6, 7), "two odd integers >= 1 (time, sensor)"),
    ("model.temporal_kernel", (7,), "two odd integers >= 1 (time, sensor)"),
    ("model.dtype", "float16", "one of float32, bfloat16"),
    ("model.conv_impl", "fft", "one of "),
    ("model.time_as_channels", 1, "True or False"),
    ("matmul_precision", "fastest", "one of default, high, highest"),
]


@pytest.mark.parametrize("field,value,allowed", BAD,
                         ids=[f"{f}={v!r}" for f, v, _ in BAD])
def test_each_bad_field_gives_one_line_naming_field_value_and_what_is_allowed(
    field, value, allowed):
  c = config()
  if field == "matmul_precision" and "matmul_precision" not in c:
    c.matmul_precision = "default"  # the field is optional: checked where a config has it
  with c.ignore_type():
    c.unlock()
    *path, leaf = field.split(".")
    target = c
    for p in path:
      target = target[p]
    target[leaf] = value
  with pytest.raises(ValueError) as raised:
    config_check.validate(c)
  message = str(raised.value)
  assert "\n" not in message
  shown = tuple(value) if isinstance(value, list) else value
  assert f"config.{field}={shown!r}" in message, message
  assert allowed in message, message


def test_every_numeric_and_enumerated_field_has_a_row():
  c = config()
  fields = {k for k, v in c.items() if not isinstance(v, (str, type(c))) or k in (
      "lr_schedule", "parallelism")}
  fields |= {f"model.{k}" for k in c.model}
  fields -= {"model.logit_standardization"}  # a bool, checked like time_as_channels
  assert fields <= {f for f, _, _ in BAD}, fields - {f for f, _, _ in BAD}


@pytest.mark.parametrize("name", DATASET_CONFIGS)
def test_every_shipped_config_and_variant_passes(name):
  module = importlib.import_module(f"configs.{name}")
  for variant in VARIANTS:
    config_check.validate(module.get_config(variant or None))


@pytest.mark.parametrize("kernel,strides,padding,kernel2", [
    (6, (2, 2, 2), 0, 3), (6, (3, 3, 3), 1, 3), (6, (2, 3, 2), 1, 3), (5, (2, 2), 1, 5)])
def test_min_length_is_the_shortest_input_the_network_takes(kernel, strides, padding, kernel2):
  c = config(**{"model.widths": (4,) * len(strides), "model.kernel": kernel,
                "model.strides": strides, "model.padding": padding, "model.kernel2": kernel2,
                "model.conv_impl": "im2col"})
  need = config_check.min_length(kernel, strides, padding, kernel2)
  model = models.create_model(c)
  init = lambda t: jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((2, t, 3)), train=False))
  init(need)
  with pytest.raises(Exception):  # noqa: B017 -- whatever the network says, it cannot run
    init(need - 1)
  c.input_shape = (need, 3)
  config_check.validate(c)
  c.input_shape = (need - 1, 3)
  with pytest.raises(ValueError, match=f"need at least {need} time steps"):
    config_check.validate(c)


@pytest.mark.parametrize("flags,message", [
    (["--config=configs/wisdm.py:foo"],
     "error: bad --config: ValueError: Unknown config argument(s) [foo]; valid: danhar, resnet, "
     "cnn, att_cnn, channel, temporal, temporal_channel, quick."),
    (["--config=configs/wisdm.py", "--config.batch_size=0"],
     "error: config.batch_size=0 is not allowed: expected an integer >= 1."),
    (["--config=configs/wisdm.py", "--config.input_shape=(10,3)"],
     "error: config.input_shape=(10, 3) is too short for the network: its 3 blocks "
     "(model.kernel=6, model.strides=(2, 2, 2), model.padding=0, model.kernel2=3) need at "
     "least 36 time steps."),
    (["--config=configs/pamap2.py", "--config.lr_decay_rate=0"],
     "error: config.lr_decay_rate=0.0 is not allowed: expected a number in (0, 1]."),
    (["--config=configs/wisdm.py", "--config.class_weights=1,2,3"],
     "error: config.class_weights='1,2,3' is not allowed: expected 'none', 'balanced', or 6 "
     "comma-separated weights >= 0 (one per class), not all 0."),
])
def test_main_py_says_it_in_one_line_before_anything_runs(flags, message, tmp_path):
  path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
  proc = subprocess.run(
      [sys.executable, "main.py", f"--workdir={tmp_path / 'run'}", *flags], cwd=ROOT,
      env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines() == [message], proc.stderr[-2000:]
  assert not (tmp_path / "run").exists()  # nothing ran: not even the workdir lock
