"""The model zoo against the authors' code: exact parameter counts, FLOPs, layouts and variants."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from danhar_jax import models
from danhar_jax import summary

# (dataset config, variant) → parameters of the authors' PyTorch model files
# (godwenbin/DanHAR); the "M" in the paper's tables is count / 2^20.
PAPER_COUNTS = {
    ("wisdm", "cnn"): 1_625_094, ("wisdm", "resnet"): 2_414_598, ("wisdm", "danhar"): 2_443_564,
    ("pamap2", "cnn"): 2_862_354, ("pamap2", "resnet"): 3_651_858,
    ("pamap2", "danhar"): 3_680_572,
    ("unimib_shar", "cnn"): 1_695_377, ("unimib_shar", "resnet"): 2_484_881,
    ("unimib_shar", "danhar"): 2_514_039,
    ("opportunity", "cnn"): 1_201_937, ("opportunity", "resnet"): 1_622_033,
    ("opportunity", "danhar"): 1_650_999,
    ("weakly", "cnn"): 737_284, ("weakly", "resnet"): 984_772, ("weakly", "danhar"): 995_818,
    # Table VII's ablation on WISDM: temporal only adds 2·7·7 per block, channel only C²/8.
    ("wisdm", "temporal"): 2_414_892, ("wisdm", "channel"): 2_443_270,
    ("wisdm", "temporal_channel"): 2_443_564,
    # Att-CNN (inferred: the authors' baseline_att_*.py do not run as committed).
    ("wisdm", "att_cnn"): 1_654_060, ("opportunity", "att_cnn"): 1_230_903,
    ("weakly", "att_cnn"): 748_330,
}
PAPER_M = {("wisdm", "danhar"): 2.33, ("pamap2", "danhar"): 3.51, ("unimib_shar", "danhar"): 2.40,
           ("opportunity", "danhar"): 1.57, ("weakly", "danhar"): 0.95, ("wisdm", "cnn"): 1.55}
# Forward MFLOP per window of DanHAR on the authors' shapes.
FORWARD_MFLOP = {"wisdm": 401, "pamap2": 1728, "unimib_shar": 215, "opportunity": 61,
                 "weakly": 521}


def authors_config(dataset, variant="danhar"):
  config = importlib.import_module(f"configs.{dataset}").get_config(variant)
  if dataset == "opportunity":  # the authors' unpublished 107-channel files
    config.input_shape = (64, 107)
  if dataset == "weakly":  # the authors' private 2048 × 3 iPhone windows
    config.input_shape = (2048, 3)
  return config


def param_count(config):
  model = models.create_model(config)
  return summary.count_params(
      jax.eval_shape(lambda: models.init_variables(model, config.input_shape))["params"])


@pytest.mark.parametrize("dataset,variant", sorted(PAPER_COUNTS))
def test_parameter_count_equals_authors_code(dataset, variant):
  assert param_count(authors_config(dataset, variant)) == PAPER_COUNTS[dataset, variant]


@pytest.mark.parametrize("key", sorted(PAPER_M))
def test_paper_m_is_count_over_2_pow_20(key):
  assert round(PAPER_COUNTS[key] / 2**20, 2) == PAPER_M[key]


@pytest.mark.parametrize("dataset", sorted(FORWARD_MFLOP))
def test_forward_flops(dataset):
  config = authors_config(dataset)
  flops = summary.forward_flops(models.create_model(config), config.input_shape)
  assert round(flops / 1e6) == FORWARD_MFLOP[dataset]


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["im2col", "winograd"])
@pytest.mark.parametrize("dataset", ["wisdm", "pamap2", "unimib_shar", "opportunity"])
def test_conv_impls_equal_lax_conv(dataset, impl):
  config = authors_config(dataset)
  x = jax.random.normal(jax.random.key(1), (2, *config.input_shape))
  config.model.conv_impl = impl
  model = models.create_model(config)
  variables = models.init_variables(model, config.input_shape)
  config.model.conv_impl = "xla"
  reference = jax.jit(models.create_model(config).apply)(variables, x)
  np.testing.assert_allclose(jax.jit(model.apply)(variables, x), reference, rtol=2e-4, atol=2e-4)


@pytest.mark.slow
def test_winograd_trains_like_lax_conv():
  """Loss gradients of a training-mode pass (batch statistics, conv1 fused with the shortcut).

  At batch 4 these gradients are ill-conditioned (ReLU flips, BatchNorm over few samples):
  perturbing the input by 1e-5 moves lax.conv's own gradient by 8e-4 in relative norm, and
  Winograd's 1e-5 rounding moves it by the same 8e-4. A wrong backward pass moves it by O(1).
  """
  config = authors_config("wisdm")
  x = jax.random.normal(jax.random.key(1), (4, *config.input_shape))
  variables = models.init_variables(models.create_model(config), config.input_shape)

  def grads(impl):
    config.model.conv_impl = impl
    model = models.create_model(config)
    loss = lambda p: jnp.sum(model.apply({**variables, "params": p}, x, train=True,
                                         mutable=["batch_stats"])[0] ** 2)
    g = jax.jit(jax.grad(loss))(variables["params"])
    return g, jnp.concatenate([leaf.ravel() for leaf in jax.tree.leaves(g)])

  (got, got_flat), (want, want_flat) = grads("winograd"), grads("xla")
  assert jax.tree.structure(got) == jax.tree.structure(want)
  assert float(jnp.linalg.norm(got_flat - want_flat) / jnp.linalg.norm(want_flat)) < 5e-3


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["resnet", "cnn"])
def test_input_layer_batch_norm_from_patches_equals_batch_norm_2d(backbone):
  """In training, the 1-channel input layer's BatchNorms come from the patches' moments
  (BatchNorm2d.from_patches); lax.conv normalises the conv output itself. Raw accelerometer
  values (a mean of ~1 g) check that the covariance is centred."""
  config = authors_config("wisdm")
  config.model.backbone = backbone
  x = 9.8 + 4 * jax.random.normal(jax.random.key(1), (8, *config.input_shape))
  variables = models.init_variables(models.create_model(config), config.input_shape)
  variables = {**variables, "params": with_random(variables["params"], "'bias'", 0.5)}

  def train_pass(impl):
    config.model.conv_impl = impl
    model = models.create_model(config)
    return jax.jit(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables)

  (logits, updates), (want_logits, want_updates) = train_pass("im2col"), train_pass("xla")
  np.testing.assert_allclose(logits, want_logits, rtol=1e-4, atol=1e-4)
  for name in ("bn1", "shortcut_bn") if backbone == "resnet" else ("bn1",):
    got, want = updates["batch_stats"]["block1"][name], want_updates["batch_stats"]["block1"][name]
    np.testing.assert_allclose(got["mean"], want["mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["var"], want["var"], rtol=1e-5)
  assert jax.tree.structure(updates) == jax.tree.structure(want_updates)


def with_random(tree, keyword: str, scale: float, seed: int = 2):
  """`tree` with `scale`·N(0, 1) added to every leaf whose path contains `keyword`."""
  keys = iter(jax.random.split(jax.random.key(seed), len(jax.tree.leaves(tree))))
  return jax.tree_util.tree_map_with_path(
      lambda path, a: a + scale * jax.random.normal(next(keys), a.shape)
      if keyword in jax.tree_util.keystr(path) else a, tree)


CONV_BN = {"conv1": "bn1", "conv2": "bn2", "shortcut_conv": "shortcut_bn"}


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["resnet", "cnn"])
def test_batch_norm_keeps_pytorchs_statistics_without_the_conv_biases(backbone):
  """Training leaves every conv bias out (the batch mean absorbs it) and adds it to the running
  mean; the running variance is PyTorch's unbiased one. Block 1's bn1 is pinned by hand."""
  config = authors_config("wisdm")
  config.model.backbone = backbone
  model = models.create_model(config)
  variables = models.init_variables(model, config.input_shape)
  with_bias = with_random(variables["params"], "'bias'", 0.5)
  without_bias = jax.tree_util.tree_map_with_path(
      lambda path, a: jnp.zeros_like(a) if any(f"['{c}']['bias']" in jax.tree_util.keystr(path)
                                               for c in CONV_BN) else a, with_bias)
  x = jax.random.normal(jax.random.key(1), (4, *config.input_shape))
  step = jax.jit(lambda p: model.apply({**variables, "params": p}, x, train=True,
                                       mutable=["batch_stats"]))
  (logits, updates), (logits_0, updates_0) = step(with_bias), step(without_bias)
  np.testing.assert_allclose(logits, logits_0, rtol=1e-5, atol=1e-5)

  conv1 = with_bias["block1"]["conv1"]
  y = jax.lax.conv_general_dilated(x[..., None], conv1["kernel"], (2, 1), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv1["bias"]
  bn1 = updates["batch_stats"]["block1"]["bn1"]  # from mean 0 and var 1, momentum 0.1
  np.testing.assert_allclose(bn1["mean"], 0.1 * jnp.mean(y, (0, 1, 2)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(bn1["var"], 0.9 + 0.1 * jnp.var(y, (0, 1, 2), ddof=1), rtol=1e-5)
  for block, convs in with_bias.items():
    for conv, bn in CONV_BN.items():
      if conv in convs:  # only the biases move the running means, by momentum × bias
        shift = (updates["batch_stats"][block][bn]["mean"]
                 - updates_0["batch_stats"][block][bn]["mean"])
        np.testing.assert_allclose(shift, 0.1 * convs[conv]["bias"], rtol=1e-4, atol=1e-6)

  grads = jax.jit(jax.grad(lambda p: jnp.sum(step(p)[0] ** 2)))(with_bias)
  for block, convs in grads.items():
    for conv in CONV_BN:
      if conv in convs:
        assert not jnp.any(convs[conv]["bias"]), (block, conv)


def test_opportunity_feeds_time_as_channels():
  config = authors_config("opportunity")
  variables = jax.eval_shape(
      lambda: models.init_variables(models.create_model(config), config.input_shape))
  # The first conv reads 64 input channels (time) and slides over the 107 features.
  assert variables["params"]["block1"]["conv1"]["kernel"].shape == (3, 1, 64, 128)
  assert variables["params"]["classifier"]["kernel"].shape == (384 * 14, 17)


@pytest.mark.slow
def test_attention_maps_are_sown_per_block():
  config = authors_config("wisdm")
  model = models.create_model(config)
  variables = models.init_variables(model, config.input_shape)
  apply = jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))
  _, state = apply(variables, jnp.ones((2, 200, 3)))
  maps = state["intermediates"]
  lengths = [98, 47, 21]  # T after each block, as the authors' shapes give
  for i, t in enumerate(lengths):
    (mask,) = maps[f"block{i + 1}"]["temporal_attention"]["mask"]
    (weights,) = maps[f"block{i + 1}"]["channel_attention"]["weights"]
    assert mask.shape == (2, t, 3)
    assert weights.shape == (2, (128, 256, 384)[i])
    assert float(mask.min()) >= 0 and float(mask.max()) <= 1


@pytest.mark.slow
def test_logit_standardization_keeps_argmax_and_standardizes_the_batch():
  config = authors_config("wisdm", "resnet")
  config.model.logit_standardization = False  # the ResNet file's default is on
  x = jax.random.normal(jax.random.key(2), (8, 200, 3))
  variables = models.init_variables(models.create_model(config), config.input_shape)
  plain = jax.jit(models.create_model(config).apply)(variables, x)
  config.model.logit_standardization = True
  standardized = jax.jit(models.create_model(config).apply)(variables, x)
  np.testing.assert_array_equal(jnp.argmax(plain, -1), jnp.argmax(standardized, -1))
  assert abs(float(standardized.mean())) < 1e-5
  assert abs(float(standardized.std()) - 1) < 1e-3


@pytest.mark.slow
def test_bfloat16_computes_in_bf16_with_float32_params():
  config = authors_config("wisdm")
  config.model.dtype = "bfloat16"
  model = models.create_model(config)
  variables = models.init_variables(model, config.input_shape)
  assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype("float32")}
  lowered = jax.jit(model.apply).lower(variables, jnp.ones((2, 200, 3)))
  logits = lowered.compile()(variables, jnp.ones((2, 200, 3)))
  assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())
  text = lowered.as_text()
  assert "bf16" in text


@pytest.mark.parametrize("field,value,message", [
    ("backbone", "vgg", "config.model.backbone='vgg' is not one of cnn, resnet"),
    ("attention", "spatial", "is not one of none, channel, temporal, channel_temporal"),
    ("dtype", "float16", "config.model.dtype='float16' is not one of float32, bfloat16"),
    ("conv_impl", "fft", "config.model.conv_impl='fft' is not one of auto, im2col, winograd, xla"),
])
def test_unknown_variant_lists_the_valid_ones(field, value, message):
  config = authors_config("wisdm")
  config.model[field] = value
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    models.create_model(config)


@pytest.mark.parametrize("dataset", ["wisdm", "wisdm2019", "pamap2", "unimib_shar",
                                     "opportunity", "weakly"])
@pytest.mark.parametrize("arg", [None, "cnn", "resnet", "att_cnn", "channel", "temporal",
                                 "temporal_channel", "cnn,quick"])
def test_every_config_and_variant_builds_a_model(dataset, arg):
  config = importlib.import_module(f"configs.{dataset}").get_config(arg)
  assert config.num_epochs == (2 if arg and "quick" in arg else 500)
  assert param_count(config) > 0


# The authors' logit LayerNorm per (dataset config, variant), as each variant's file has it: every
# ResNet, DanHAR and baseline_att_* file and baseline_opp.py; not the other CNN baselines.
VARIANT_NAMES = ("cnn", "resnet", "danhar", "att_cnn", "channel", "temporal", "temporal_channel")
LOGIT_STANDARDIZATION = {
    (dataset, variant): variant != "cnn" or dataset == "opportunity"
    for dataset in ("wisdm", "wisdm2019", "pamap2", "unimib_shar", "opportunity", "weakly")
    for variant in VARIANT_NAMES}


@pytest.mark.parametrize("dataset,variant", sorted(LOGIT_STANDARDIZATION))
def test_logit_standardization_defaults_as_in_the_authors_files(dataset, variant):
  module = importlib.import_module(f"configs.{dataset}")
  for arg in (variant, f"{variant},quick"):
    assert (module.get_config(arg).model.logit_standardization
            is LOGIT_STANDARDIZATION[dataset, variant]), arg
  if variant == "danhar":  # no argument is DanHAR
    assert module.get_config().model.logit_standardization is True


def test_logit_standardization_can_be_overridden_and_summary_prints_it():
  import subprocess
  import sys
  from tests.conftest import ROOT
  config = importlib.import_module("configs.wisdm").get_config("quick")
  config.model.widths = (4, 4, 4)
  assert "logit_standardization=on" in summary.summary(config)
  proc = subprocess.run(
      [sys.executable, "main.py", "--config=configs/wisdm.py:quick", "--mode=summary",
       "--config.model.widths=(4,4,4)", "--config.model.logit_standardization=False"],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
  assert "logit_standardization=off" in proc.stdout


def test_opportunity_is_the_papers_17_gestures_and_challenge_keeps_null():
  from configs import opportunity
  from tfds_builders.opportunity import opportunity_dataset_builder as builder
  builder_configs = {c.name for c in builder.Builder.BUILDER_CONFIGS}
  for arg, name, classes in ((None, "gestures17", 17), ("cnn", "gestures17", 17),
                             ("challenge", "challenge", 18), ("cnn,challenge,quick", "challenge", 18)):
    config = opportunity.get_config(arg)
    assert (config.dataset, config.num_classes) == (f"opportunity/{name}", classes), arg
    assert name in builder_configs
  assert opportunity.get_config("cnn,challenge").model.backbone == "cnn"
  with pytest.raises(ValueError, match="valid: danhar, .*, challenge, quick"):
    opportunity.get_config("null")
  with pytest.raises(ValueError, match=r"\['challenge'\]; valid: danhar, .*temporal_channel, quick"):
    importlib.import_module("configs.wisdm").get_config("challenge")  # OPPORTUNITY's own


# The paper's test accuracies (%): CNN, Att-CNN, ResNet, DanHAR, then Table VII on WISDM.
PAPER_ACCURACY = {
    "wisdm": ("96.83", "97.56", "98.32", "98.85", "98.09", "98.12", "98.62"),
    "unimib_shar": ("74.83", "76.07", "77.12", "79.03"),
    "pamap2": ("91.21", "92.45", "92.72", "93.16"),
    "opportunity": ("77.53", "80.42", "82.05", "82.75"),
    "weakly": ("89.86", "93.62", "90.93", "94.86"),
}


@pytest.mark.parametrize("dataset", sorted(PAPER_ACCURACY))
def test_configs_quote_the_papers_accuracies_and_gains_in_points(dataset):
  doc = " ".join(importlib.import_module(f"configs.{dataset}").__doc__.split())
  cnn, _, resnet, danhar = (float(a) for a in PAPER_ACCURACY[dataset][:4])
  for number in (*PAPER_ACCURACY[dataset], f"+{danhar - cnn:.2f} points",
                 f"+{danhar - resnet:.2f}"):
    assert number in doc, number


def test_summary_ends_with_the_parameter_count():
  import subprocess
  import sys
  from tests.conftest import ROOT
  proc = subprocess.run(
      [sys.executable, "main.py", "--config=configs/opportunity.py", "--mode=summary",
       "--config.input_shape=(64,107)"],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
  lines = proc.stdout.strip().splitlines()
  assert lines[-1] == "params: 1650999"
  assert "1,650,999 = 1.57 M (the paper's M is 2^20)" in lines[-2]
  assert "forward FLOPs per window: 61,067,964" in proc.stdout
