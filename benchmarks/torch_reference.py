"""DanHAR in plain PyTorch, built the way the authors' code builds it: the peer for throughput.py.

The model follows godwenbin/DanHAR: NCHW input `(N, 1, T, S)`,
`Conv2d` with (k, 1) kernels, `BatchNorm2d`, CBAM channel attention (avg + max pool, a shared
bias-free 1×1-conv MLP with reduction 16) and spatial ("temporal") attention (mean/max over
filters, a bias-free k×k conv, sigmoid), a projection shortcut in every block, no ReLU after the
add, then flatten and one `Linear`. OPPORTUNITY feeds its 64 time steps as input channels,
`(N, 64, S, 1)`. It is built from the same `config` as the JAX model, so `check_param_count`
can assert the two count the same parameters.

torch is an optional extra (`pip install danhar_jax[torch]`); this module imports it at the top,
so import it lazily (throughput.py does).
"""

from __future__ import annotations

import time

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


def autocast_for(config, device: str):
  """bfloat16 autocast when the config computes in bfloat16, as JAX's bf16 with f32 params."""
  enabled = config.model.dtype == "bfloat16"
  return lambda: torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                                enabled=enabled)


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

  Default Adam (foreach), NCHW, no cuDNN autotuning: the way the authors' code trains.
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


COMPILE_MODES = ("max-autotune-no-cudagraphs", "reduce-overhead")


def tune(model: DanHAR, device: str, channels_last: bool) -> DanHAR:
  """The usual GPU settings on a peer model, in place: cuDNN autotuning and the layout."""
  if device.startswith("cuda"):
    torch.backends.cudnn.benchmark = True  # as XLA autotunes its convolutions when compiling
  model.channels_last = channels_last
  return model.to(memory_format=torch.channels_last if channels_last
                  else torch.contiguous_format)


def tuned_adam(model: nn.Module, config, device: str, compiled: bool):
  """(optimizer, how): fused Adam where the device has it; under torch.compile the foreach
  path, which Inductor fuses itself (capturable on CUDA, so CUDA graphs can hold its step)."""
  kw = dict(lr=config.learning_rate, weight_decay=config.weight_decay)
  if compiled:
    return torch.optim.Adam(model.parameters(), capturable=device.startswith("cuda"),
                            **kw), "foreach (compiled)"
  try:
    return torch.optim.Adam(model.parameters(), fused=True, **kw), "fused"
  except (RuntimeError, ValueError):  # a device without the fused kernel
    return torch.optim.Adam(model.parameters(), **kw), "foreach"


def tuned_steps(model: DanHAR, config, batch_size: int, device: str = "cpu", *,
                channels_last: bool = False, compile_mode: str | None = None):
  """The tuned peer: (train_step, eval_step, info) on one fixed batch on `device`.

  cuDNN autotuning, the given layout, fused Adam, and with `compile_mode` (one of
  COMPILE_MODES) torch.compile of the whole train step, optimizer included, and of the eval
  forward. Their first calls compile; the caller bounds and times them apart.
  """
  if compile_mode is not None and compile_mode not in COMPILE_MODES:
    raise ValueError(f"compile_mode {compile_mode!r}: use one of {', '.join(COMPILE_MODES)}")
  tune(model, device, channels_last)
  x, y = fixed_batch(config, batch_size, device)
  x = x.contiguous()
  optimizer, adam = tuned_adam(model, config, device, compile_mode is not None)
  autocast = autocast_for(config, device)
  train_body = update_on(model, optimizer, x, y, autocast)

  def eval_body():
    with torch.no_grad(), autocast():
      return model(x)

  if compile_mode is not None:
    train_body = torch.compile(train_body, mode=compile_mode)
    eval_body = torch.compile(eval_body, mode=compile_mode)
  graphs = compile_mode == "reduce-overhead" and device.startswith("cuda")

  def train_step():
    model.train()
    if graphs:  # a new iteration: the previous step's graph outputs may be overwritten
      torch.compiler.cudagraph_mark_step_begin()
    return train_body()

  def eval_step():
    model.eval()
    if graphs:
      torch.compiler.cudagraph_mark_step_begin()
    return eval_body()

  info = {"torch_adam": adam, "torch_channels_last": channels_last,
          "torch_cudnn_benchmark": torch.backends.cudnn.benchmark,
          "torch_compile_mode": compile_mode}
  return train_step, eval_step, info


def faster_layout(config, batch_size: int, device: str, steps: int = 3) -> tuple[bool, dict]:
  """(channels_last?, {layout: train seconds per step}): both layouts timed on the tuned
  eager peer, after one warm-up step each."""
  seconds = {}
  for channels_last in (False, True):
    torch.manual_seed(0)
    train_step, _, _ = tuned_steps(build(config, device), config, batch_size, device,
                                   channels_last=channels_last)
    train_step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
      train_step()
    sync(device)
    seconds["channels_last" if channels_last else "nchw"] = (time.perf_counter() - start) / steps
  return seconds["channels_last"] < seconds["nchw"], seconds


def time_steps(step, repeats: int, warmup: int) -> tuple[float, list[float]]:
  """(seconds of the first call, seconds of each timed call after `warmup` more)."""
  start = time.perf_counter()
  step()
  first = time.perf_counter() - start
  for _ in range(warmup):
    step()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return first, times


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


def versions() -> dict:
  return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
          "torch_device": (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                           else "cpu")}


if __name__ == "__main__":  # a quick self-check: python benchmarks/torch_reference.py
  import importlib
  import sys
  sys.path.insert(0, ".")
  for name in ("wisdm", "pamap2", "unimib_shar", "opportunity", "weakly"):
    cfg = importlib.import_module(f"configs.{name}").get_config()
    net = build(cfg)
    tr, _ = make_steps(net, cfg, 4)
    print(name, count_params(net), float(tr()), np.round(time_steps(tr, 2, 0)[1], 3))
