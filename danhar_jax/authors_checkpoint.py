"""The authors' PyTorch checkpoints (godwenbin/DanHAR) as Flax variables.

`from_authors_state_dict(state_dict, config)` takes what `torch.save(net.state_dict(), ...)` wrote
for any of their model classes (`baseline_*` = CNN, `new_*_resnet` = ResNet,
`new_*_resnet_attention` = DanHAR) and returns the `{'params', 'batch_stats'}` that
`models.init_variables(models.create_model(config), config.input_shape)` would, with their weights.

Their names: `BlockN.{0,1,3,4}` are conv1, its BatchNorm, conv2, its BatchNorm (2 and 5 are
ReLUs); `shortcutN.{0,1}` the projection conv and BatchNorm; `caN.fc1/fc2` the channel
attention's bias-free 1×1 convs; `saN.conv1` the temporal attention's conv; `fc.0` the classifier.
The logit LayerNorm is built inside their `forward`, so it holds no weights here.

Layouts: PyTorch convs are OIHW, ours HWIO. PyTorch flattens the last block's NCHW output as
(filter, time, sensor) and ours flattens NHWC as (time, sensor, filter), so the classifier's input
rows are permuted. BatchNorm `running_var` is PyTorch's unbiased one, which is what our
`batch_stats` hold too (ops.batch_norm.BatchNorm2d), so the statistics are copied as they are.

Any mismatch with the config is refused with one line naming the first offending key. torch is
not imported here: values may be torch tensors or numpy arrays.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from danhar_jax import models

# Our module name in a block → the authors' (attribute, sub-key) in block N.
_BLOCK_MODULES = {
    "conv1": ("Block", "0"), "bn1": ("Block", "1"), "conv2": ("Block", "3"), "bn2": ("Block", "4"),
    "shortcut_conv": ("shortcut", "0"), "shortcut_bn": ("shortcut", "1"),
    "channel_attention/fc1": ("ca", "fc1"), "channel_attention/fc2": ("ca", "fc2"),
    "temporal_attention/conv": ("sa", "conv1"),
}
_LEAVES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
           "var": "running_var"}
# The authors' key order: block by block, module by module (shortcut may come before or after the
# attention in their files; this order is only for naming the first offending key), then fc.
_MODULE_ORDER = ("Block", "shortcut", "ca", "sa")
_LEAF_ORDER = ("weight", "bias", "running_mean", "running_var")
# The fc.0.weight shape of each dataset's authors' checkpoint: it tells which dataset a
# state_dict came from.
AUTHORS_CLASSIFIERS = {(6, 24192): "wisdm", (18, 76800): "pamap2", (17, 12672): "unimib",
                       (17, 5376): "opportunity (64 x 107, 17 classes)", (4, 57600): "weakly"}
# (has shortcuts, has attention) → the model family, as the authors' files name it.
VARIANTS = {(False, False): "CNN (baseline_*.py)", (True, False): "ResNet (new_*_resnet.py)",
            (True, True): "DanHAR (new_*_resnet_attention.py)",
            (False, True): "Att-based CNN (baseline_att_*.py)"}


class _Entry(NamedTuple):
  """One Flax leaf, the authors' key it comes from, and the layout change between them."""
  collection: str
  path: tuple[str, ...]
  shape: tuple[int, ...]    # ours
  key: str
  kind: str                 # 'conv' | 'dense_1x1' | 'classifier' | 'plain'
  classifier_hw: tuple[int, int] = (0, 0)  # the last block's (time, sensor), for 'classifier'

  def torch_shape(self) -> tuple[int, ...]:
    s = self.shape
    return {"conv": lambda: (s[3], s[2], s[0], s[1]),           # OIHW of our HWIO
            "dense_1x1": lambda: (s[1], s[0], 1, 1),            # a 1×1 conv of our [in, out]
            "classifier": lambda: (s[1], s[0]),
            "plain": lambda: s}[self.kind]()

  def to_flax(self, value: np.ndarray) -> np.ndarray:
    if self.kind == "conv":
      return value.transpose(2, 3, 1, 0)
    if self.kind == "dense_1x1":
      return value[:, :, 0, 0].T
    if self.kind == "classifier":  # rows (filter, time, sensor) → (time, sensor, filter)
      classes = value.shape[0]
      return (value.reshape(classes, -1, *self.classifier_hw).transpose(2, 3, 1, 0)
              .reshape(-1, classes))
    return value


def _entries(config) -> list[_Entry]:
  """What `config`'s model holds, leaf by leaf, in the authors' key order."""
  model = models.create_model(config)
  shapes = jax.eval_shape(lambda: models.init_variables(model, config.input_shape))
  # The classifier's input is the last block's [time, sensor, filter]: sensors survive the convs,
  # except with time as channels (OPPORTUNITY), where the width is 1.
  width = 1 if config.model.time_as_channels else config.input_shape[1]
  rows = shapes["params"]["classifier"]["kernel"].shape[0]
  hw = (rows // (width * config.model.widths[-1]), width)
  entries = [_entry(collection, tuple(p.key for p in path), tuple(leaf.shape), hw)
             for collection, tree in shapes.items()
             for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]

  def position(e):
    module, leaf = e.key.rsplit(".", 1)
    match = re.fullmatch(r"([A-Za-z]+)(\d+)\.(.*)", module)
    block = (float("inf"), 0, "") if match is None else (  # fc.0: after every block
        int(match[2]), _MODULE_ORDER.index(match[1]), match[3])
    return (*block, _LEAF_ORDER.index(leaf))

  return sorted(entries, key=position)


def _entry(collection, names, shape, classifier_hw) -> _Entry:
  leaf = _LEAVES[names[-1]]
  if names[0] == "classifier":
    kind = "classifier" if names[-1] == "kernel" else "plain"
    return _Entry(collection, names, shape, f"fc.0.{leaf}", kind, classifier_hw)
  block = int(names[0].removeprefix("block"))
  attr, sub = _BLOCK_MODULES["/".join(names[1:-1])]
  kind = "plain"
  if names[-1] == "kernel":
    kind = "dense_1x1" if attr == "ca" else "conv"
  return _Entry(collection, names, shape, f"{attr}{block}.{sub}.{leaf}", kind)


def _describe_config(config) -> str:
  m = config.model
  return (f"config {config.dataset} (model {m.backbone} + attention {m.attention}, "
          f"input {tuple(config.input_shape)}, {config.num_classes} classes)")


def _variant(keys) -> str:
  """The authors' model family whose checkpoint has `keys`."""
  return VARIANTS[("shortcut1.0.weight" in keys,
                   "ca1.fc1.weight" in keys or "sa1.conv1.weight" in keys)]


def _dataset(shapes: dict) -> str:
  """' for <dataset>' when fc.0.weight's shape is one of the authors' checkpoints', else ''."""
  dataset = AUTHORS_CLASSIFIERS.get(shapes.get("fc.0.weight"))
  return f" for {dataset}" if dataset else ""


def _as_numpy(value) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor, without importing torch
    value = value.detach().cpu().numpy()
  return np.asarray(value)


def from_authors_state_dict(state_dict, config) -> dict:
  """`{'params', 'batch_stats'}` for `config`'s model from the authors' PyTorch `state_dict`.

  Raises ValueError, in one line naming the first offending key, for a checkpoint of another
  variant or dataset, a missing or unexpected key, or a wrong shape.
  """
  if not hasattr(state_dict, "items"):
    raise ValueError(f"Expected a state_dict (names to tensors), got a {type(state_dict).__name__}."
                     " Save the model with torch.save(net.state_dict(), path).")
  entries = _entries(config)
  arrays = {k: _as_numpy(v) for k, v in state_dict.items()
            if not k.endswith("num_batches_tracked")}  # BatchNorm's counter; we keep none
  shapes = {k: tuple(v.shape) for k, v in arrays.items()}
  expected = {e.key: e for e in entries}
  missing = [e.key for e in entries if e.key not in arrays]
  extra = [k for k in arrays if k not in expected]
  config_text = _describe_config(config)
  if missing or extra:
    theirs, ours = _variant(arrays), _variant(expected)
    first = f"it lacks key {missing[0]!r}" if missing else f"it has extra key {extra[0]!r}"
    if theirs != ours:
      raise ValueError(f"The state_dict looks like the authors' {theirs}{_dataset(shapes)}, but "
                       f"{config_text} is a {ours}: {first}. Choose the matching --config "
                       "variant.")
    if missing:
      raise ValueError(f"The state_dict lacks key {missing[0]!r} that {config_text} needs.")
    raise ValueError(f"The state_dict has unexpected key {extra[0]!r} for {config_text}.")
  variables = {}
  for e in entries:
    if shapes[e.key] != e.torch_shape():
      looks = _dataset(shapes)
      guess = f": it looks like the authors' {_variant(arrays)}{looks}" if looks else ""
      raise ValueError(f"The state_dict's {e.key!r} has shape {shapes[e.key]}, but {config_text} "
                       f"needs {e.torch_shape()}{guess}.")
    node = variables.setdefault(e.collection, {})
    for name in e.path[:-1]:
      node = node.setdefault(name, {})
    node[e.path[-1]] = jnp.asarray(e.to_flax(arrays[e.key].astype(np.float32)))
  return variables
