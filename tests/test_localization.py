"""Localisation scores on hand-made attention, the time mapping against the model, the loaders."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import weakly as weakly_config
from configs import wisdm
from danhar_jax import input_pipeline
from danhar_jax import localization
from danhar_jax import models
from tfds_builders.weakly import weakly_dataset_builder as weakly

DUMMY = pathlib.Path(weakly.__file__).parent / "dummy_data"


def small(config, input_shape, widths=(16, 16, 16)):
  config.input_shape, config.model.widths = input_shape, widths
  return config


# ---------------------------------------------------------------------------------------------
# Time mapping.


def test_block_lengths_follow_the_authors_shapes():
  assert localization.block_lengths(wisdm.get_config(), 200) == [98, 47, 21]
  assert localization.block_lengths(weakly_config.get_config(), 2048) == [682, 227, 75]
  assert localization.block_lengths(weakly_config.get_config(), 1024) == [341, 113, 37]


def test_block_centres_are_the_receptive_field_centres():
  # WISDM: kernel 6, stride 2, no padding. Block 1 position j reads inputs 2j .. 2j+5.
  centres = localization.block_centres(wisdm.get_config(), 200)
  np.testing.assert_allclose(centres[0][:3], [2.5, 4.5, 6.5])
  # Block 2 position j reads block-1 positions 2j .. 2j+5, centred at 2.5 + 2 (2j + 2.5).
  np.testing.assert_allclose(centres[1][:2], [7.5, 11.5])
  np.testing.assert_allclose(centres[2][:2], [17.5, 25.5])
  assert [len(c) for c in centres] == [98, 47, 21]
  # Weakly: kernel 6, stride 3, padding 1: block 1 position j reads inputs 3j-1 .. 3j+4.
  centres = localization.block_centres(weakly_config.get_config(), 1024)
  np.testing.assert_allclose(centres[0][:2], [1.5, 4.5])
  np.testing.assert_allclose(centres[2][:2], [19.5, 46.5])


@pytest.mark.slow
@pytest.mark.parametrize("make, length", [(wisdm.get_config, 300),
                                          (weakly_config.get_config, 1024)])
def test_block_centres_match_the_models_gradient_support(make, length):
  """Interior positions of each block's mask depend on inputs centred on the mapped centre.

  With positive weights and inputs every ReLU passes, so the gradient of mask position j reaches
  its whole receptive field (conv1, conv2, shortcut and the attention convs, all symmetric
  around the centre except conv1's offset, which the mapping accounts for). Channel attention
  pools over the whole window, so it would spread every gradient everywhere: the 'temporal'
  variant leaves it out.
  """
  config = small(make("temporal"), (length, 3))
  # Exact zeros outside the receptive field need a direct conv: Winograd reaches each output
  # through its whole tile, and the cancellations there leave float32 residue (~1e-7).
  config.model.conv_impl = "im2col"
  model = models.create_model(config)
  variables = models.init_variables(model, config.input_shape)
  # Positive weights; tiny attention-conv weights keep every sigmoid away from saturation, where
  # float32 gradients would vanish.
  variables = jax.tree_util.tree_map_with_path(
      lambda path, v: jnp.abs(v) * (1e-3 if "temporal_attention" in str(path) else 1.0),
      variables)
  x = jnp.abs(jax.random.normal(jax.random.key(0), (1, *config.input_shape))) + 0.1

  def masks(x):
    _, state = model.apply(variables, x, mutable=["intermediates"])
    return [state["intermediates"][f"block{k}"]["temporal_attention"]["mask"][0]
            for k in (1, 2, 3)]

  outputs = masks(x)
  # One compile; one backward pass per position.
  input_grad = jax.jit(lambda x, cotangent: jax.vjp(masks, x)[1](cotangent)[0])
  centres = localization.block_centres(config, length)
  fields = localization.receptive_fields(config)
  for block in (1, 2, 3):
    positions = len(centres[block - 1])
    for j in (positions // 3, positions // 2):
      cotangent = [jnp.zeros_like(o) for o in outputs]
      cotangent[block - 1] = cotangent[block - 1].at[0, j].set(1.0)
      grad = np.abs(np.asarray(input_grad(x, cotangent))[0]).sum(axis=1)
      support = np.flatnonzero(grad > 0)
      assert (support[0] + support[-1]) / 2 == pytest.approx(centres[block - 1][j])
      # The support is the receptive field plus the attention convs' reach on either side,
      # and these positions are far enough from the edges to see all of it.
      assert support[-1] - support[0] + 1 > fields[block - 1]
      assert 0 < support[0] and support[-1] < length - 1


def test_to_input_time_averages_sensors_and_interpolates_between_centres():
  mask = np.array([[[0.0, 2.0], [4.0, 4.0], [1.0, 1.0]]])  # [1, 3 positions, 2 sensors]
  out = localization.to_input_time(mask, np.array([2.0, 4.0, 8.0]), 10)
  np.testing.assert_allclose(out[0], [1, 1, 1, 2.5, 4, 3.25, 2.5, 1.75, 1, 1])


# ---------------------------------------------------------------------------------------------
# Scores on hand-made attention.


def test_peaks_take_the_middle_of_the_first_maximal_run():
  a = np.array([[0, 1, 5, 5, 5, 0, 5, 0],
                [9, 9, 9, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 0, 0, 0, 1]], float)
  np.testing.assert_array_equal(localization.peaks(a), [3, 1, 7])


def test_pointing_accuracy_and_iou_exactly():
  t = 10
  a = np.zeros((3, t))
  a[0, 2:5] = 1.0  # above the mean: samples 2, 3, 4; peak 3
  a[1, 7] = 1.0    # above the mean: sample 7; peak 7
  a[2] = np.arange(t)  # above the mean (4.5): 5..9; peak 9
  starts, ends = np.array([2, 0, 4]), np.array([6, 5, 8])
  assert localization.pointing_accuracy(a, starts, ends) == pytest.approx(1 / 3)
  ious = localization.iou(localization.above_mean(a), starts, ends)
  np.testing.assert_allclose(ious, [3 / 4, 0, 3 / 6])
  s = localization.scores(a, starts, ends)
  assert s["iou"] == pytest.approx((3 / 4 + 0 + 1 / 2) / 3)
  # top-k with k = 4, 5, 4: {2,3,4,0}, {7,0,1,2,3}, {9,8,7,6}.
  topk = localization.top_k(a, ends - starts)
  assert topk.sum(1).tolist() == [4, 5, 4]
  np.testing.assert_allclose(localization.iou(topk, starts, ends), [3 / 5, 4 / 6, 2 / 6])


def test_baselines_are_exact_expectations():
  t, starts, ends = 12, np.array([0, 5]), np.array([3, 9])
  out = localization.baselines(starts, ends, t)
  assert out["pointing_uniform"] == out["iou_uniform"] == pytest.approx((3 / 12 + 4 / 12) / 2)
  # Brute force over every start x of a true-length box, scored as any attention map would be.
  pointing, ious = [], []
  for a, b in zip(starts, ends):
    boxes = np.stack([np.arange(t) - x for x in range(t - (b - a) + 1)])
    boxes = ((boxes >= 0) & (boxes < b - a)).astype(float)  # one box per row
    pointing.append(localization.pointing_accuracy(boxes, [a] * len(boxes), [b] * len(boxes)))
    ious.append(localization.iou(boxes > 0, [a] * len(boxes), [b] * len(boxes)).mean())
  assert out["pointing_random"] == pytest.approx(np.mean(pointing))
  assert out["iou_random"] == pytest.approx(np.mean(ious))


def test_attention_at_the_segment_scores_perfectly_and_uniform_scores_its_baseline():
  t, starts, ends = 64, np.array([10, 30]), np.array([20, 50])
  perfect = localization.segment_masks(starts, ends, t).astype(float)
  s = localization.scores(perfect, starts, ends)
  assert s == {"pointing": 1.0, "iou": 1.0, "iou_topk": 1.0}


# ---------------------------------------------------------------------------------------------
# On a model.


@pytest.mark.slow
@pytest.mark.parametrize("variant, has_attention", [("danhar", True), ("resnet", False)])
def test_evaluate_on_a_small_model(variant, has_attention):
  config = small(weakly_config.get_config(variant), (120, 3))
  model = models.create_model(config)
  variables = models.init_variables(model, config.input_shape)
  rng = np.random.default_rng(0)
  signals = rng.normal(size=(7, 120, 3)).astype(np.float32)
  starts = rng.integers(0, 80, 7)
  ends = starts + 30
  out = localization.evaluate(model.apply, signals, starts, ends, config, variables=variables,
                              batch_size=4)
  assert out["loc_n"] == 7 and out["loc_pointing_uniform"] == pytest.approx(30 / 120)
  assert ("loc_pointing" in out) == has_attention
  if has_attention:
    assert {"loc_iou", "loc_iou_topk", "loc_pointing_block1", "loc_iou_blocks"} <= set(out)
    assert out["loc_pointing"] == out["loc_pointing_block3"]
  assert all(isinstance(v, float) and 0 <= v <= 7 for v in out.values())
  # The same batch size throughout: one compile.
  logits, maps = localization.attention(model.apply, signals, variables=variables, batch_size=4)
  assert logits.shape == (7, 4)
  if has_attention:
    assert maps["block3"]["mask"].shape == (7, len(localization.block_centres(config, 120)[2]), 3)
    assert maps["block1"]["weights"].shape == (7, 16)
    full = localization.temporal_attention(model.apply, signals, config, variables=variables,
                                           batch_size=4)
    assert full.shape == (7, 120)


def test_the_pipeline_keeps_segments_in_line_with_its_splits(tmp_path):
  builder = weakly.Builder(data_dir=tmp_path, config="wisdm2019")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=DUMMY))
  config = weakly_config.get_config()
  config.dataset, config.data_dir = "weakly/wisdm2019", str(tmp_path)
  config.input_shape = (1024, 6)
  sources = tfds.data_source("weakly/wisdm2019", data_dir=tmp_path, download=False)
  for test_subjects, split in (("", "test"), ("1600", "train")):
    config.test_subjects = test_subjects
    _, test, _ = input_pipeline.load(config)
    starts, ends = localization.test_segments(test)
    # The windows of that subject, in the order the pipeline reads them.
    records = sources[split].__getitems__(list(range(len(sources[split]))))
    np.testing.assert_array_equal(starts, [r["segment_start"] for r in records])
    np.testing.assert_array_equal(ends, [r["segment_end"] for r in records])
    np.testing.assert_array_equal(test["signal"][5], records[5]["signal"])
  assert localization.test_segments({"signal": test["signal"]}) is None
