"""DanHAR in plain PyTorch, built the way the authors' code builds it: the peer that
benchmarks/contenders_torch.py times.

The model follows godwenbin/DanHAR: NCHW input `(N, 1, T, S)`,
`Conv2d` with (k, 1) kernels, `BatchNorm2d`, CBAM channel attention (avg + max pool, a shared
bias-free 1×1-conv MLP with reduction 16) and spatial ("temporal") attention (mean/max over
filters, a bias-free k×k conv, sigmoid), a projection shortcut in every block, no ReLU after the
add, then flatten and one `Linear`. OPPORTUNITY feeds its 64 time steps as input channels,
`(N, 64, S, 1)`. It is built from the same `config` as the JAX model, so `check_param_count`
can assert the two count the same parameters.

torch is an optional extra (`pip install danhar_jax[torch]`); this module imports it at the top,
so import it lazily. It imports JAX only inside `build`, so that a torch worker never loads it.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class ChannelAttention(nn.Module):
  """CBAM channel attention; the authors hard-code the reduction to 16."""

  def __init__(self, planes: int):
    super().__init__()
    self.fc1 = nn.Conv2d(planes, planes // 16, 1, bias=False)
    self.fc2 = nn.Conv2d(planes // 16, planes, 1, bias=False)

  def forward(self, x):
    mlp = lambda v: self.fc2(F.relu(self.fc1(v)))
    return torch.sigmoid(mlp(F.adaptive_avg_pool2d(x, 1)) + mlp(F.adaptive_max_pool2d(x, 1)))


class SpatialAttention(nn.Module):
  """CBAM spatial attention, the paper's "temporal" attention: a mask over (time, sensor)."""

  def __init__(self, kernel):
    super().__init__()
    kh, kw = kernel
    self.conv = nn.Conv2d(2, 1, (kh, kw), padding=(kh // 2, kw // 2), bias=False)

  def forward(self, x):
    pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
    return torch.sigmoid(self.conv(pooled))


class Block(nn.Module):
  """Conv(k,1)/s → BN → ReLU → Conv(k2,1) → BN → ReLU, attention, projection shortcut (resnet)."""

  def __init__(self, cin: int, features: int, m, stride: int):
    super().__init__()
    k, p, k2 = m.kernel, m.padding, m.kernel2
    self.layer = nn.Sequential(
        nn.Conv2d(cin, features, (k, 1), (stride, 1), (p, 0)), nn.BatchNorm2d(features),
        nn.ReLU(inplace=True),
        nn.Conv2d(features, features, (k2, 1), 1, (k2 // 2, 0)), nn.BatchNorm2d(features),
        nn.ReLU(inplace=True))
    self.order = {"none": (), "channel": ("ca",), "temporal": ("sa",),
                  "channel_temporal": ("ca", "sa"), "temporal_channel": ("sa", "ca")}[m.attention]
    self.ca = ChannelAttention(features) if "ca" in self.order else None
    self.sa = SpatialAttention(tuple(m.temporal_kernel)) if "sa" in self.order else None
    self.shortcut = None
    if m.backbone == "resnet":
      self.shortcut = nn.Sequential(nn.Conv2d(cin, features, (k, 1), (stride, 1), (p, 0)),
                                    nn.BatchNorm2d(features))

  def forward(self, x):
    h = self.layer(x)
    for name in self.order:
      h = getattr(self, name)(h) * h
    return h if self.shortcut is None else h + self.shortcut(x)


class DanHAR(nn.Module):
  """Three blocks, flatten, one Linear, from a danhar_jax config."""

  def __init__(self, config):
    super().__init__()
    m = config.model
    t, s = config.input_shape
    self.time_as_channels = m.time_as_channels
    self.logit_standardization = m.logit_standardization
    self.channels_last = False   # set by `tune`
    cin, length = (t, s) if m.time_as_channels else (1, t)
    blocks = []
    for features, stride in zip(m.widths, m.strides):
      blocks.append(Block(cin, features, m, stride))
      cin, length = features, (length + 2 * m.padding - m.kernel) // stride + 1
    self.blocks = nn.Sequential(*blocks)
    width = 1 if m.time_as_channels else s
    self.final_hw = (length, width)   # what the classifier flattens with the filters
    self.fc = nn.Linear(cin * length * width, config.num_classes)

  def forward(self, windows):
    """`[N, time, sensors]` windows → `[N, classes]` logits."""
    # The authors' layouts: (N, 1, T, S), or OPPORTUNITY's (N, T, S, 1) with time as channels.
    x = windows[..., None] if self.time_as_channels else windows[:, None]
    if self.channels_last:
      x = x.contiguous(memory_format=torch.channels_last)
    logits = self.fc(torch.flatten(self.blocks(x), 1))
    if self.logit_standardization:  # the authors' per-forward `nn.LayerNorm(x.size())`
      logits = F.layer_norm(logits, logits.shape)
    return logits


def count_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build(config, device: str = "cpu") -> DanHAR:
  """The peer model; fails if its parameter count differs from the JAX model's."""
  from danhar_jax import models, summary  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  model = DanHAR(config).to(device)
  jax_model = models.create_model(config)
  expected = summary.count_params(jax.eval_shape(
      lambda: models.init_variables(jax_model, config.input_shape))["params"])
  got = count_params(model)
  if got != expected:
    raise AssertionError(f"PyTorch DanHAR has {got:,} parameters, the JAX model {expected:,}.")
  return model


def load_jax_variables(model: DanHAR, variables) -> DanHAR:
  """Copies a JAX DanHAR's `{'params', 'batch_stats'}` into this peer, in place.

  The two then compute the same function (tests/test_benchmarks.py checks training and
  evaluation). Kernels go from HWIO to PyTorch's OIHW; the classifier's rows go from the JAX
  flatten order (time, sensor, filter) to PyTorch's NCHW order (filter, time, sensor).
  """
  params, stats = variables["params"], variables.get("batch_stats", {})
  tensor = lambda a: torch.tensor(np.asarray(a, np.float32))
  conv = lambda kernel: tensor(np.transpose(kernel, (3, 2, 0, 1)))  # HWIO → OIHW
  targets = {"conv1": "layer.0", "bn1": "layer.1", "conv2": "layer.3", "bn2": "layer.4",
             "shortcut_conv": "shortcut.0", "shortcut_bn": "shortcut.1"}
  state = {}
  for i, block in enumerate(model.blocks):
    p, b, prefix = params[f"block{i + 1}"], stats.get(f"block{i + 1}", {}), f"blocks.{i}."
    for name, target in targets.items():
      if name not in p:
        continue
      if "conv" in name:
        state[prefix + target + ".weight"] = conv(p[name]["kernel"])
        state[prefix + target + ".bias"] = tensor(p[name]["bias"])
      else:
        state[prefix + target + ".weight"] = tensor(p[name]["scale"])
        state[prefix + target + ".bias"] = tensor(p[name]["bias"])
        state[prefix + target + ".running_mean"] = tensor(b[name]["mean"])
        state[prefix + target + ".running_var"] = tensor(b[name]["var"])
        state[prefix + target + ".num_batches_tracked"] = torch.tensor(0)
    if block.ca is not None:
      for fc in ("fc1", "fc2"):
        dense = np.asarray(p["channel_attention"][fc]["kernel"]).T
        state[f"{prefix}ca.{fc}.weight"] = tensor(dense[:, :, None, None])
    if block.sa is not None:
      state[prefix + "sa.conv.weight"] = conv(p["temporal_attention"]["conv"]["kernel"])
  kernel = np.asarray(params["classifier"]["kernel"])           # [H·W·C, classes]
  kernel = kernel.reshape(*model.final_hw, -1, kernel.shape[-1]).transpose(2, 0, 1, 3)
  state["fc.weight"] = tensor(kernel.reshape(model.fc.in_features, -1).T)
  state["fc.bias"] = tensor(params["classifier"]["bias"])
  model.load_state_dict(state, strict=True)
  return model


def sync(device: str) -> None:
  """Waits for the device; the runners call it once per repeat, never inside a step."""
  if device.startswith("cuda"):
    torch.cuda.synchronize()


def fixed_batch(config, batch_size: int, device: str):
  t, s = config.input_shape
  g = torch.Generator().manual_seed(0)
  x = torch.randn(batch_size, t, s, generator=g).to(device)
  y = torch.randint(0, config.num_classes, (batch_size,), generator=g).to(device)
  return x, y


def autocast_for(config, device: str, cache_enabled: bool = True):
  """bfloat16 autocast when the config computes in bfloat16, as JAX's bf16 with f32 params;
  otherwise no autocast context at all, as the authors' code. A CUDA graph needs
  `cache_enabled=False` (PyTorch's CUDA graphs notes)."""
  if config.model.dtype != "bfloat16":
    return contextlib.nullcontext
  return lambda: torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                                cache_enabled=cache_enabled)


def update_on(model: nn.Module, optimizer, x, y, autocast):
  """One Adam update of `model` on (x, y), as both peers train; returns the loss."""
  loss_fn = nn.CrossEntropyLoss()

  def update():
    optimizer.zero_grad(set_to_none=True)
    with autocast():
      loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss

  return update


def make_steps(model: nn.Module, config, batch_size: int, device: str = "cpu"):
  """The authors'-style eager peer: (train_step, eval_step) on one fixed batch on `device`.

  PyTorch's default Adam (foreach on CUDA), NCHW, no cuDNN autotuning: as the authors train.
  """
  x, y = fixed_batch(config, batch_size, device)
  optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                               weight_decay=config.weight_decay)
  autocast = autocast_for(config, device)
  update = update_on(model, optimizer, x, y, autocast)

  def train_step():
    model.train()
    return update()

  def eval_step():
    model.eval()
    with torch.inference_mode(), autocast():
      return model(x)

  return train_step, eval_step


def tune(model: DanHAR, device: str, channels_last: bool) -> DanHAR:
  """The usual GPU settings on a peer model, in place: cuDNN autotuning (process-wide, so only the
  tuned groups' processes call it) and the layout."""
  if device.startswith("cuda"):
    torch.backends.cudnn.benchmark = True  # as XLA autotunes its convolutions when compiling
  model.channels_last = channels_last
  return model.to(memory_format=torch.channels_last if channels_last
                  else torch.contiguous_format)


def set_matmul_precision(precision: str) -> dict:
  """Sets PyTorch's float32 matmul and cuDNN conv precision to match JAX's `precision`.

  'highest' is full float32 on both; 'high' and 'default' allow TF32 on both, as JAX's GPU
  default does (PyTorch's own default differs: TF32 convs but float32 matmuls). Returns the
  flags, for the benchmark rows.
  """
  tf32 = precision != "highest"
  torch.backends.cuda.matmul.allow_tf32 = tf32
  torch.backends.cudnn.allow_tf32 = tf32
  torch.set_float32_matmul_precision("high" if tf32 else "highest")
  return {"torch_allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
          "torch_allow_tf32_cudnn": torch.backends.cudnn.allow_tf32}


def default_device() -> str:
  return "cuda" if torch.cuda.is_available() else "cpu"
