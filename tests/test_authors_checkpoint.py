"""The authors' PyTorch checkpoints load into Flax and compute the same logits.

The PyTorch modules below are the authors' 15 model classes (godwenbin/DanHAR `baseline_*.py` =
`cnn`, `new_*_resnet.py` and `new_*_resnet_attention.py` = `resnet`) written out with their
attribute names, layer order, kernels, strides, paddings and hard-coded classifier sizes, so that
their `state_dict` has exactly the authors' keys and shapes. Nothing here is derived from our
configs: the loader must bridge the two.

Shapes are the authors' (see AUTHORS): OPPORTUNITY is their (64, 107) windows with 17 classes and
the weakly labeled model their (2048, 3) windows; our configs default to (64, 113) with 17 classes
and (1024, 6), which the authors' checkpoints cannot fit, so those two configs are overridden.
"""

import importlib
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from danhar_jax import authors_checkpoint
from danhar_jax import input_pipeline
from danhar_jax import models
from danhar_jax import train
from tests.conftest import ROOT
from tests.conftest import one_error_line

torch = pytest.importorskip("torch")
nn = torch.nn

# dataset → (our config, widths, conv1 kernel, strides, padding, attention kernel, attention
# padding, classes, input (time, sensors), fc inputs, time as channels, ca/sa declared before the
# shortcut), all read from the authors' files.
AUTHORS = {
    "wisdm": ("wisdm", (128, 256, 384), 6, (2, 2, 2), 0, (7, 7), (3, 3), 6, (200, 3), 24192,
              False, False),
    "pamap2": ("pamap2", (128, 256, 384), 6, (3, 3, 3), 1, (7, 1), (3, 0), 18, (171, 40), 76800,
               False, False),
    "unimib": ("unimib_shar", (128, 256, 384), 6, (2, 3, 2), 1, (9, 9), (4, 4), 17, (151, 3),
               12672, False, False),
    "opp": ("opportunity", (128, 256, 384), 3, (2, 2, 2), 1, (7, 7), (3, 3), 17, (64, 107), 5376,
            True, True),
    "weakly": ("weakly", (64, 128, 256), 6, (3, 3, 3), 1, (7, 7), (3, 3), 4, (2048, 3), 57600,
               False, False),
}
CLASSES = ("cnn", "resnet", "danhar")  # baseline_*, new_*_resnet, new_*_resnet_attention


class ChannelAttention(nn.Module):
  def __init__(self, in_planes, ratio=16):
    super().__init__()
    self.avg_pool = nn.AdaptiveAvgPool2d(1)
    self.max_pool = nn.AdaptiveMaxPool2d(1)
    self.fc1 = nn.Conv2d(in_planes, in_planes // 16, 1, bias=False)
    self.relu1 = nn.ReLU()
    self.fc2 = nn.Conv2d(in_planes // 16, in_planes, 1, bias=False)
    self.sigmoid = nn.Sigmoid()

  def forward(self, x):
    avg_out = self.fc2(self.relu1(self.fc1(self.avg_pool(x))))
    max_out = self.fc2(self.relu1(self.fc1(self.max_pool(x))))
    return self.sigmoid(avg_out + max_out)


class SpatialAttention(nn.Module):
  def __init__(self, kernel_size, padding):
    super().__init__()
    self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=padding, bias=False)
    self.sigmoid = nn.Sigmoid()

  def forward(self, x):
    avg_out = torch.mean(x, dim=1, keepdim=True)
    max_out, _ = torch.max(x, dim=1, keepdim=True)
    return self.sigmoid(self.conv1(torch.cat([avg_out, max_out], dim=1)))


class AuthorsModel(nn.Module):
  """The authors' `cnn` (variant 'cnn') or `resnet` class, for one dataset."""

  def __init__(self, dataset, variant):
    super().__init__()
    (_, widths, k, strides, pad, sa_kernel, sa_pad, classes, (t, _), fc_in, time_as_channels,
     attention_first) = AUTHORS[dataset]
    self.dataset, self.variant, self.time_as_channels = dataset, variant, time_as_channels
    cin = t if time_as_channels else 1
    for i, (c, s) in enumerate(zip(widths, strides), start=1):
      setattr(self, f"Block{i}", nn.Sequential(
          nn.Conv2d(cin, c, (k, 1), (s, 1), (pad, 0)), nn.BatchNorm2d(c), nn.ReLU(True),
          nn.Conv2d(c, c, (3, 1), 1, (1, 0)), nn.BatchNorm2d(c), nn.ReLU(True)))
      if variant == "cnn":
        cin = c
        continue
      shortcut = lambda: nn.Sequential(nn.Conv2d(cin, c, (k, 1), (s, 1), (pad, 0)),  # noqa: B023
                                       nn.BatchNorm2d(c))
      if not attention_first:
        setattr(self, f"shortcut{i}", shortcut())
      if variant == "danhar":
        setattr(self, f"ca{i}", ChannelAttention(c))
        setattr(self, f"sa{i}", SpatialAttention(sa_kernel, sa_pad))
      if attention_first:
        setattr(self, f"shortcut{i}", shortcut())
      cin = c
    self.fc = nn.Sequential(nn.Linear(fc_in, classes))

  def forward(self, x):
    # Their layouts: (N, 1, T, S); OPPORTUNITY's (N, 64, 107, 1) with time as channels.
    x = x[..., None] if self.time_as_channels else x[:, None]
    for i in (1, 2, 3):
      h = getattr(self, f"Block{i}")(x)
      if self.variant != "cnn":
        r = getattr(self, f"shortcut{i}")(x)
        if self.variant == "danhar":
          h = getattr(self, f"ca{i}")(h) * h
          h = getattr(self, f"sa{i}")(h) * h
        h = h + r
      x = h
    x = self.fc(x.view(x.size(0), -1))
    if self.variant != "cnn" or self.dataset == "opp":
      x = nn.LayerNorm(x.size())(x)  # theirs: a fresh, weightless LayerNorm every forward
    return x


def authors_net(dataset, variant, seed=0):
  """Their model in eval mode, with random weights and non-trivial BatchNorm statistics."""
  torch.manual_seed(seed)
  net = AuthorsModel(dataset, variant)
  for m in net.modules():
    if isinstance(m, nn.BatchNorm2d):
      nn.init.uniform_(m.weight, 0.5, 1.5)
      nn.init.normal_(m.bias, 0, 0.2)
      m.running_mean.normal_(0, 0.3)
      m.running_var.uniform_(0.5, 2.0)
      m.num_batches_tracked.fill_(37)
  return net.eval()


def our_config(dataset, variant):
  name = AUTHORS[dataset][0]
  config = importlib.import_module(f"configs.{name}").get_config(
      None if variant == "danhar" else variant)
  config.input_shape, config.num_classes = AUTHORS[dataset][8], AUTHORS[dataset][7]
  # Theirs, per file, whatever our default: on for every ResNet and DanHAR file and baseline_opp.
  config.model.logit_standardization = variant != "cnn" or dataset == "opp"
  return config


def saved_state_dict(net, tmp_path):
  path = tmp_path / "authors.pth"
  torch.save(net.state_dict(), path)
  return torch.load(path, map_location="cpu", weights_only=True), path


# Our BatchNorm modules and their authors' names, to check the statistics independently.
BATCH_NORMS = {"bn1": "Block{}.1", "bn2": "Block{}.4", "shortcut_bn": "shortcut{}.1"}


@pytest.mark.slow
@pytest.mark.parametrize("variant", CLASSES)
@pytest.mark.parametrize("dataset", sorted(AUTHORS))
def test_authors_checkpoint_gives_their_logits(dataset, variant, tmp_path):
  net = authors_net(dataset, variant)
  state_dict, _ = saved_state_dict(net, tmp_path)
  config = our_config(dataset, variant)
  variables = authors_checkpoint.from_authors_state_dict(state_dict, config)

  model = models.create_model(config)
  expected = jax.eval_shape(lambda: models.init_variables(model, config.input_shape))
  assert (jax.tree.structure(variables) == jax.tree.structure(expected))
  assert jax.tree.map(np.shape, variables) == jax.tree.map(np.shape, expected)

  for block in (1, 2, 3):
    stats = variables["batch_stats"][f"block{block}"]
    for ours, theirs in BATCH_NORMS.items():
      if ours not in stats:
        continue
      np.testing.assert_array_equal(stats[ours]["mean"],
                                    state_dict[theirs.format(block) + ".running_mean"].numpy())
      np.testing.assert_array_equal(stats[ours]["var"],
                                    state_dict[theirs.format(block) + ".running_var"].numpy())

  x = np.random.default_rng(1).normal(size=(3, *config.input_shape)).astype(np.float32)
  with torch.no_grad():
    theirs = net(torch.from_numpy(x)).numpy()
  ours = np.asarray(jax.jit(lambda v, w: model.apply(v, w, train=False))(variables, x))
  scale = np.abs(theirs).max()
  assert scale > 0.1  # the comparison means something
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * scale)


def numpy_state_dict(dataset, variant):
  return {k: v.numpy() for k, v in authors_net(dataset, variant).state_dict().items()}


def rejection(state_dict, config) -> str:
  with pytest.raises(ValueError) as raised:
    authors_checkpoint.from_authors_state_dict(state_dict, config)
  message = str(raised.value)
  assert "\n" not in message
  return message


def test_rejects_another_datasets_checkpoint():
  message = rejection(numpy_state_dict("wisdm", "cnn"), our_config("pamap2", "cnn"))
  assert message.startswith("The state_dict's 'fc.0.weight' has shape (6, 24192)")
  assert "needs (18, 76800)" in message and "the authors' CNN (baseline_*.py) for wisdm" in message
  # DanHAR: the temporal attention's kernel (7×7 on WISDM, 7×1 on PAMAP2) differs first.
  message = rejection(numpy_state_dict("wisdm", "danhar"), our_config("pamap2", "danhar"))
  assert message.startswith("The state_dict's 'sa1.conv1.weight' has shape (1, 2, 7, 7)")
  assert "for wisdm" in message
  message = rejection(numpy_state_dict("weakly", "resnet"), our_config("opp", "resnet"))
  assert message.startswith("The state_dict's 'Block1.0.weight' has shape (64, 1, 6, 1)")
  assert "for weakly" in message


def test_rejects_another_variants_checkpoint():
  message = rejection(numpy_state_dict("wisdm", "cnn"), our_config("wisdm", "danhar"))
  assert message.startswith("The state_dict looks like the authors' CNN (baseline_*.py) for "
                            "wisdm, but config wisdm")
  assert "is a DanHAR (new_*_resnet_attention.py): it lacks key 'shortcut1.0.weight'" in message
  message = rejection(numpy_state_dict("unimib", "danhar"), our_config("unimib", "resnet"))
  assert "looks like the authors' DanHAR" in message
  assert "it has extra key 'ca1.fc1.weight'" in message


def test_rejects_a_missing_key():
  state_dict = numpy_state_dict("pamap2", "resnet")
  del state_dict["Block2.4.running_var"]
  message = rejection(state_dict, our_config("pamap2", "resnet"))
  assert message.startswith("The state_dict lacks key 'Block2.4.running_var' that config pamap2")


def test_rejects_an_extra_key():
  state_dict = numpy_state_dict("opp", "cnn")
  state_dict["fc.1.weight"] = np.zeros((17, 17), np.float32)
  message = rejection(state_dict, our_config("opp", "cnn"))
  assert message.startswith("The state_dict has unexpected key 'fc.1.weight' for config "
                            "opportunity")


def test_rejects_a_wrong_shape():
  state_dict = numpy_state_dict("wisdm", "danhar")
  state_dict["ca2.fc1.weight"] = np.zeros((8, 256, 1, 1), np.float32)
  message = rejection(state_dict, our_config("wisdm", "danhar"))
  assert message.startswith("The state_dict's 'ca2.fc1.weight' has shape (8, 256, 1, 1), but "
                            "config wisdm")
  assert "needs (16, 256, 1, 1)" in message


def test_rejects_something_that_is_not_a_state_dict():
  assert "Expected a state_dict" in rejection([1, 2], our_config("wisdm", "cnn"))


@pytest.mark.slow
def test_evaluate_variables_scores_the_authors_weights_on_our_test_split(tmp_path, shared_data):
  """What `--init_from_torch` runs, on real WISDM bytes: our accuracy is their model's."""
  net = authors_net("wisdm", "cnn")
  config = our_config("wisdm", "cnn")
  config.data_dir, config.manual_dir = str(tmp_path), str(shared_data / "wisdm_ar_v1.1")
  config.batch_size, config.eval_batch_size = 32, 64  # the staged sample has 99 train windows
  result = train.evaluate_variables(
      config, authors_checkpoint.from_authors_state_dict(net.state_dict(), config))
  test, class_names = input_pipeline.load_test(config)
  with torch.no_grad():
    predicted = net(torch.from_numpy(test["signal"])).numpy().argmax(-1)
  assert result["class_names"] == class_names
  assert result["accuracy"] == pytest.approx(np.mean(predicted == test["label"]), abs=1e-6)


def test_main_refuses_init_from_torch_into_a_run(tmp_path):
  torch.save(authors_net("wisdm", "cnn").state_dict(), tmp_path / "authors.pth")
  (tmp_path / "run" / "checkpoints" / "37").mkdir(parents=True)
  proc = subprocess.run(
      [sys.executable, "main.py", "--config=configs/wisdm.py:cnn", "--mode=eval",
       f"--workdir={tmp_path / 'run'}", f"--init_from_torch={tmp_path / 'authors.pth'}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, "PYTHONPATH": str(ROOT)})
  assert proc.returncode != 0
  last = one_error_line(proc.stderr)
  assert last.startswith("error: --workdir=") and "already holds a run" in last, proc.stderr
