"""The PyTorch contenders, each a `timing.Prepared` built from a Setting and its config.

- `eager`: the authors' way (torch_reference.make_steps): NCHW, PyTorch's default Adam, no
  autocast, PyTorch's own switches, which it records and never sets.
- `tuned`: the faster layout (probed), fused Adam, the setting's numerics (TF32 flags, or bf16
  autocast with float32 parameters), cudnn.benchmark and, on a GPU, the whole train step
  (forward, backward, Adam) captured in one CUDA graph and replayed.
- `compiled`: torch.compile of the whole train step; on a GPU with CUDA graphs.
- `torch_latency`: batch-1 inference of the tuned model; on a GPU one CUDA graph per call.

Every step runs on one fixed device-resident batch and synchronises only at the end of run(n).
A worker runs one torch group (plan.CONTENDERS), so the switches `tuned` and `compiled` set never
reach `eager`. This module never imports JAX: tests compare `params` with the JAX model's count.
"""

from __future__ import annotations

import gc
import time
from typing import Callable

import torch

from benchmarks import plan
from benchmarks import timing
from benchmarks import torch_reference as ref

GRAPH_WARMUP = 3      # side-stream steps before a capture, as PyTorch's whole-network recipe
PROBE_CALLS = 5       # timed calls per layout when choosing one, unless PROBE_S runs out first
PROBE_S = 5.0
# A GPU: Inductor's kernels in CUDA graphs ('reduce-overhead'), where launches dominate these
# small convs; max-autotune's kernel search would not fit a short lease beside the other rows.
# A CPU has no graphs: the autotuned kernels alone.
COMPILE_MODES = {"cuda": "reduce-overhead", "cpu": "max-autotune-no-cudagraphs"}


def switches() -> dict:
  """The process-wide switches a torch row depends on, as they are now."""
  return {"torch_cudnn_benchmark": torch.backends.cudnn.benchmark,
          "torch_allow_tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
          "torch_allow_tf32_cudnn": torch.backends.cudnn.allow_tf32,
          "torch_float32_matmul_precision": torch.get_float32_matmul_precision()}


def probe() -> dict:
  """Where this process's PyTorch runs (the worker's `probe`)."""
  cuda = torch.cuda.is_available()
  return {"platform": "gpu" if cuda else "cpu",
          "device": torch.cuda.get_device_name(0) if cuda else "cpu",
          "local_devices": torch.cuda.device_count() if cuda else 1}


class Steps:
  """run(n): n calls of `step`, then one synchronisation. `last()` is the last call's output
  (the loss, or the logits), a device tensor for tests to read after a run."""

  def __init__(self, step: Callable[[], torch.Tensor], device: str, model=None):
    self.step, self.device, self.out, self.model = step, device, None, model

  def __call__(self, n: int) -> None:
    for _ in range(n):
      self.out = self.step()
    ref.sync(self.device)

  def last(self) -> torch.Tensor:
    return self.out.detach()


def is_cuda(device: str) -> bool:
  return device.startswith("cuda")


def fresh_model(config, device: str) -> ref.DanHAR:
  torch.manual_seed(0)  # every contender, and each layout probed, starts from the same weights
  return ref.DanHAR(config).to(device)


def set_numerics(numerics: str) -> None:
  """TF32 on ('tf32', and 'bf16' for what autocast leaves in float32) or off ('f32')."""
  ref.set_matmul_precision(plan.NUMERICS[numerics][1])


def graphed(step: Callable[[], torch.Tensor], before_capture: Callable[[], None] = lambda: None
            ) -> Callable[[], torch.Tensor]:
  """`step` captured in one CUDA graph by PyTorch's whole-network recipe: warm-up steps on a side
  stream (cuDNN autotuning, Adam's state), then the capture; each call replays it and returns
  the captured output, which every replay overwrites in place."""
  stream = torch.cuda.Stream()
  stream.wait_stream(torch.cuda.current_stream())
  with torch.cuda.stream(stream):
    for _ in range(GRAPH_WARMUP):
      step()
  torch.cuda.current_stream().wait_stream(stream)
  before_capture()
  graph = torch.cuda.CUDAGraph()
  try:
    with torch.cuda.graph(graph):
      out = step()
  except Exception as e:  # pylint: disable=broad-except
    raise RuntimeError(f"CUDA graph capture refused: {type(e).__name__}: "
                       f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from e

  def replay():
    graph.replay()
    return out

  return replay


def faster_layout(make: Callable[[bool], Steps]) -> tuple[bool, dict]:
  """(channels_last?, {layout: fastest ms per call}): each layout built by `make`, warmed up by
  one call, then timed call by call for PROBE_CALLS calls or PROBE_S seconds."""
  ms = {}
  for channels_last in (False, True):
    run = make(channels_last)
    run(1)
    best, start = float("inf"), time.perf_counter()
    for _ in range(PROBE_CALLS):
      t = time.perf_counter()
      run(1)
      best = min(best, time.perf_counter() - t)
      if time.perf_counter() - start > PROBE_S:
        break
    ms["channels_last" if channels_last else "nchw"] = round(best * 1e3, 4)
    del run
    gc.collect()  # the probe's model, optimizer state and graph pool, before the next build
  return ms["channels_last"] < ms["nchw"], ms


def finisher(device: str) -> Callable[[], dict]:
  """Resets the device's peak memory (so call it once built) and returns `finish`."""
  if not is_cuda(device):
    return dict  # the worker adds the process's peak RSS itself
  torch.cuda.reset_peak_memory_stats()
  return lambda: {"peak_memory_bytes": int(torch.cuda.max_memory_allocated()),
                  "memory_kind": "device"}


def info_of(model, device: str, **extra) -> dict:
  """The row's extras: the parameter count, where and with what, and the switches as set."""
  return {"params": ref.count_params(model), "torch_device": device, "torch": torch.__version__,
          "torch_threads": torch.get_num_threads(), **switches(), **extra}


def eager(setting: plan.Setting, config) -> timing.Prepared:
  """The authors' way, untouched: it sets no switch, and records them as they are."""
  device = ref.default_device()
  model = fresh_model(config, device)
  train_step, _ = ref.make_steps(model, config, setting.batch, device)
  # PyTorch's default Adam is foreach on CUDA tensors and the for-loop one on CPU tensors.
  adam = "default (foreach)" if is_cuda(device) else "default (for-loop)"
  info = info_of(model, device, torch_adam=adam, torch_channels_last=False, torch_autocast=None,
                 cuda_graph=False)
  return timing.Prepared(Steps(train_step, device), setting.batch, info, finisher(device))


def tuned_train(config, batch: int, device: str, channels_last: bool) -> Steps:
  """The tuned train step; on a GPU, one CUDA graph of forward, backward and Adam's step."""
  cuda = is_cuda(device)
  model = ref.tune(fresh_model(config, device), device, channels_last).train()
  x, y = ref.fixed_batch(config, batch, device)
  # Fused Adam takes capturable=True on CUDA (its step counters stay on the device).
  optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                               weight_decay=config.weight_decay, fused=True, capturable=cuda)
  update = ref.update_on(model, optimizer, x, y,
                         ref.autocast_for(config, device, cache_enabled=not cuda))
  if cuda:  # grads set to None before capture: backward allocates them in the graph's pool
    update = graphed(update, lambda: optimizer.zero_grad(set_to_none=True))
  return Steps(update, device, model)


def tuned(setting: plan.Setting, config) -> timing.Prepared:
  """Both layouts probed, then the faster one built afresh (so it starts from the seed's weights);
  a CUDA graph is captured while preparing, so its first call is already a replay."""
  device = ref.default_device()
  set_numerics(setting.numerics)
  channels_last, layout_ms = faster_layout(
      lambda cl: tuned_train(config, setting.batch, device, cl))
  run = tuned_train(config, setting.batch, device, channels_last)
  info = info_of(run.model, device, torch_adam="fused", torch_channels_last=channels_last,
                 torch_layout_ms=layout_ms, torch_autocast=autocast_name(config),
                 cuda_graph=is_cuda(device))
  return timing.Prepared(run, setting.batch, info, finisher(device))


def tuned_inference(config, device: str, channels_last: bool) -> Steps:
  """Batch-1 eval-mode logits of the tuned model; on a GPU, one CUDA graph per call."""
  cuda = is_cuda(device)
  model = ref.tune(fresh_model(config, device), device, channels_last).eval()
  x, _ = ref.fixed_batch(config, 1, device)
  autocast = ref.autocast_for(config, device, cache_enabled=not cuda)

  def forward():
    with torch.inference_mode(), autocast():
      return model(x)

  return Steps(graphed(forward) if cuda else forward, device, model)


def latency(setting: plan.Setting, config) -> timing.Prepared:
  """One window per call whatever setting.batch says, as the JAX latency contender."""
  device = ref.default_device()
  set_numerics(setting.numerics)
  channels_last, layout_ms = faster_layout(lambda cl: tuned_inference(config, device, cl))
  run = tuned_inference(config, device, channels_last)
  info = info_of(run.model, device, torch_channels_last=channels_last,
                 torch_layout_ms=layout_ms, torch_autocast=autocast_name(config),
                 cuda_graph=is_cuda(device))
  return timing.Prepared(run, 1, info, finisher(device), latency=True)


def compiled(setting: plan.Setting, config) -> timing.Prepared:
  """torch.compile of the whole train step; its first call compiles (the worker times it apart).
  NCHW: Inductor chooses the convolutions' layout itself (its layout optimisation)."""
  device = ref.default_device()
  cuda = is_cuda(device)
  set_numerics(setting.numerics)
  model = ref.tune(fresh_model(config, device), device, channels_last=False).train()
  x, y = ref.fixed_batch(config, setting.batch, device)
  # Foreach Adam, which Inductor fuses itself; capturable keeps its steps on the GPU for graphs.
  optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                               weight_decay=config.weight_decay, capturable=cuda)
  mode = COMPILE_MODES["cuda" if cuda else "cpu"]
  body = torch.compile(ref.update_on(model, optimizer, x, y, ref.autocast_for(config, device)),
                       mode=mode)

  def step():
    if cuda:  # a new iteration: the previous step's graph outputs may be overwritten
      torch.compiler.cudagraph_mark_step_begin()
    return body()

  info = info_of(model, device, torch_adam="foreach (compiled)", torch_channels_last=False,
                 torch_compile_mode=mode, torch_autocast=autocast_name(config), cuda_graph=cuda)
  return timing.Prepared(Steps(step, device), setting.batch, info, finisher(device))


def autocast_name(config) -> str | None:
  return "bfloat16" if config.model.dtype == "bfloat16" else None


PREPARE: dict[str, Callable[[plan.Setting, object], timing.Prepared]] = {
    "eager": eager, "tuned": tuned, "compiled": compiled, "torch_latency": latency}


def prepare(setting: plan.Setting, config) -> timing.Prepared:
  """PREPARE[setting.contender]; a contender that is not a torch one fails naming those that are."""
  plan.one_of("torch contender", setting.contender, PREPARE)
  return PREPARE[setting.contender](setting, config)
