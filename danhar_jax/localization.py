"""Does temporal attention find the target in a weakly labeled window? Measured, not just drawn.

The paper (§4.6, Fig. 10) shows that DanHAR's temporal attention lights up where the target
activity is in a long walking window labelled only with the target. On the `weakly` dataset the
true segment `[segment_start, segment_end)` of every window is known, so this module scores the
attention against it on the test split:

* **Time mapping.** Block k's mask is `[N, T_k, S_k]` (time, sensor). Its time axis is the output
  of the block's first conv, `(k, 1)` with stride s and padding p (the second conv and the
  attention conv are stride 1 and padded symmetrically, so they keep every position's centre).
  Position j of block k therefore sits at input sample `c_k + a_k * j`, the centre of its
  receptive field: a_k = s_1 ... s_k, c_k = c_{k-1} + a_{k-1} ((kernel - 1) / 2 - p), c_0 = 0.
  The mask is averaged over its sensor axis and linearly interpolated between those centres
  onto every input sample (held constant beyond the first and last centre).
* **Which block.** The primary numbers use the LAST block's mask: it gates the features the
  classifier reads, so it is where the network decides to look. Every block's numbers, and those
  of the mean of the three time-mapped masks, are reported too (`..._block<k>`, `..._blocks`).
* **Pointing accuracy:** the share of windows whose attention peak lies inside the segment. The
  peak is the middle of the first run of samples that reach the window's maximum (a held edge or
  a plateau is one run, so it counts at its middle, not at its first sample).
* **IoU:** between the segment and the samples whose attention is strictly above the window's
  mean attention (no ground truth used), averaged over windows. `iou_topk` instead selects the
  segment-length samples of highest attention: it is told the length, so it isolates "where".
* **Baselines**, exact expectations rather than samples:
  - uniform attention: every sample is a peak, so a random tie-break points inside the segment
    with probability L / T; nothing is above the mean, so the whole window is taken: IoU = L / T;
  - random position: a box of the true length L at a uniformly random start: pointing with its
    centre, IoU with the segment; this is the chance level for `iou_topk`.

Models without temporal attention (cnn, resnet, channel) get the baselines only.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# ---------------------------------------------------------------------------------------------
# Time mapping: where each position of each block's mask sits on the input's time axis.


def block_lengths(config, input_length: int) -> list[int]:
  """T_k of each block: the authors' conv arithmetic, floor((T + 2p - kernel) / s) + 1."""
  m, lengths, t = config.model, [], input_length
  for stride in m.strides:
    t = (t + 2 * m.padding - m.kernel) // stride + 1
    lengths.append(t)
  return lengths


def block_centres(config, input_length: int) -> list[np.ndarray]:
  """Per block, the input sample (float) at the centre of each mask position's receptive field."""
  m = config.model
  if m.time_as_channels:
    raise ValueError("config.model.time_as_channels: the convs slide along the sensor axis, so "
                     "the attention mask has no time axis to map.")
  centres, scale, offset = [], 1, 0.0
  for stride, length in zip(m.strides, block_lengths(config, input_length)):
    offset += scale * ((m.kernel - 1) / 2 - m.padding)
    scale *= stride
    centres.append(offset + scale * np.arange(length, dtype=np.float64))
  return centres


def receptive_fields(config) -> list[int]:
  """Input samples seen by one position of each block's output (conv1, then conv2 at stride 1)."""
  m, fields, field, scale = config.model, [], 1, 1
  for stride in m.strides:
    field += (m.kernel - 1) * scale
    scale *= stride
    field += (m.kernel2 - 1) * scale
    fields.append(field)
  return fields


def interpolation_matrix(centres: np.ndarray, input_length: int) -> np.ndarray:
  """[input_length, len(centres)] weights of `np.interp(arange(T), centres, values)`."""
  eye = np.eye(len(centres))
  return np.stack([np.interp(np.arange(input_length), centres, row) for row in eye], axis=1)


def to_input_time(mask: np.ndarray, centres: np.ndarray, input_length: int) -> np.ndarray:
  """A block's mask `[N, T_k, S_k]` (or `[N, T_k]`) → `[N, T]`: sensor mean, then interpolated."""
  mask = np.asarray(mask, np.float64)
  if mask.ndim == 3:
    mask = mask.mean(axis=2)
  return mask @ interpolation_matrix(centres, input_length).T


# ---------------------------------------------------------------------------------------------
# Running the model for its attention.


@functools.lru_cache(maxsize=8)
def _forward(apply_fn):
  """Jitted forward pass returning logits and the sown attention (one compile per model)."""

  def forward(variables, x):
    logits, state = apply_fn(variables, x, train=False, mutable=["intermediates"])
    return logits, state.get("intermediates", {})

  return jax.jit(forward)


def _apply_fn_and_variables(model, variables=None):
  """(apply_fn, variables) from a TrainState, or from `model` = apply_fn plus `variables`."""
  if variables is not None:
    return model, variables
  return model.apply_fn, {"params": model.params, "batch_stats": model.batch_stats}


def attention(model, signals: np.ndarray, *, variables=None, batch_size: int = 256):
  """Runs the model over `signals` [N, T, S] in padded batches.

  `model` is an unreplicated TrainState (or an `apply_fn` with `variables`). Returns
  (logits [N, K], {block name: {'mask': [N, T_k, S_k], 'weights': [N, C_k]}}), holding only the
  attentions the model has.
  """
  apply_fn, variables = _apply_fn_and_variables(model, variables)
  forward, n = _forward(apply_fn), len(signals)
  batch_size = max(1, min(batch_size, n))
  logits, maps = [], []
  for lo in range(0, n, batch_size):
    x = np.asarray(signals[lo:lo + batch_size], np.float32)
    pad = batch_size - len(x)  # one batch shape: one compile
    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), np.float32)]) if pad else x
    out, inter = jax.device_get(forward(variables, jnp.asarray(x)))
    logits.append(out[:batch_size - pad])
    maps.append({block: {name: values[0][:batch_size - pad]
                         for module in ("temporal_attention", "channel_attention")
                         for name, values in inter.get(block, {}).get(module, {}).items()}
                 for block in sorted(inter)})
  blocks = maps[0].keys() if maps else ()
  merged = {b: {k: np.concatenate([m[b][k] for m in maps]) for k in maps[0][b]} for b in blocks}
  return np.concatenate(logits), {b: v for b, v in merged.items() if v}


def time_mapped(maps: dict, config, input_length: int) -> dict[str, np.ndarray]:
  """{'block<k>': [N, T], 'blocks': mean of those}: each temporal mask on the input's time axis."""
  centres = block_centres(config, input_length)
  out = {f"block{k + 1}": to_input_time(maps[f"block{k + 1}"]["mask"], c, input_length)
         for k, c in enumerate(centres) if "mask" in maps.get(f"block{k + 1}", {})}
  if out:
    out["blocks"] = np.mean(list(out.values()), axis=0)
  return out


def temporal_attention(model, signals: np.ndarray, config, *, rule: str = "last",
                       variables=None, batch_size: int = 256) -> np.ndarray | None:
  """`[N, T]` temporal attention on the input's time axis; None if the model has none.

  `rule`: 'last' (the last block's mask, the primary rule), 'blocks' (mean of every block's), or
  'block<k>'.
  """
  _, maps = attention(model, signals, variables=variables, batch_size=batch_size)
  mapped = time_mapped(maps, config, signals.shape[1])
  if not mapped:
    return None
  return mapped[_resolve(rule, mapped)]


def block_names(maps) -> list[str]:
  """The 'block<k>' keys of `maps`, in block order (without 'blocks', their mean)."""
  return sorted((k for k in maps if k != "blocks"), key=lambda k: int(k[5:]))


def _resolve(rule: str, mapped: dict) -> str:
  if rule == "last":
    return block_names(mapped)[-1]
  if rule not in mapped:
    raise ValueError(f"Unknown attention rule {rule!r}; valid: last, {', '.join(mapped)}.")
  return rule


# ---------------------------------------------------------------------------------------------
# Scores.


def peaks(attention_map: np.ndarray) -> np.ndarray:
  """Per window, the middle sample of the first run of samples at the window's maximum."""
  attention_map = np.asarray(attention_map, np.float64)
  at_max = attention_map >= attention_map.max(axis=1, keepdims=True)
  first = np.argmax(at_max, axis=1)
  out = np.empty(len(attention_map), np.int64)
  for i, (row, lo) in enumerate(zip(at_max, first)):
    run = np.argmin(row[lo:]) if not row[lo:].all() else len(row) - lo
    out[i] = lo + (run - 1) // 2
  return out


def pointing_accuracy(attention_map, starts, ends) -> float:
  """Share of windows whose attention peak lies in [start, end)."""
  p = peaks(attention_map)
  return float(np.mean((p >= np.asarray(starts)) & (p < np.asarray(ends))))


def segment_masks(starts, ends, input_length: int) -> np.ndarray:
  t = np.arange(input_length)
  return (t >= np.asarray(starts)[:, None]) & (t < np.asarray(ends)[:, None])


def iou(selected: np.ndarray, starts, ends) -> np.ndarray:
  """Per window, |selected ∩ segment| / |selected ∪ segment|; `selected` is [N, T] bool."""
  truth = segment_masks(starts, ends, selected.shape[1])
  inter, union = (selected & truth).sum(1), (selected | truth).sum(1)
  return inter / np.maximum(union, 1)


def above_mean(attention_map: np.ndarray) -> np.ndarray:
  """The threshold rule: samples strictly above the window's mean attention."""
  a = np.asarray(attention_map, np.float64)
  return a > a.mean(axis=1, keepdims=True)


def top_k(attention_map: np.ndarray, ks) -> np.ndarray:
  """The k highest-attention samples of each window (k = the segment's length; ties by index)."""
  order = np.argsort(-np.asarray(attention_map, np.float64), axis=1, kind="stable")
  ranks = np.empty_like(order)
  np.put_along_axis(ranks, order, np.arange(order.shape[1])[None], axis=1)
  return ranks < np.asarray(ks)[:, None]


def baselines(starts, ends, input_length: int) -> dict[str, float]:
  """Exact expected scores of uniform attention and of a randomly placed true-length box."""
  starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
  lengths = ends - starts
  pointing_random, iou_random = [], []
  for a, length in zip(starts.tolist(), lengths.tolist()):
    x = np.arange(input_length - length + 1)  # every start of the random box
    overlap = np.clip(length - np.abs(x - a), 0, None)
    iou_random.append(np.mean(overlap / (2 * length - overlap)))
    centre = x + (length - 1) // 2  # the box's peak, by the same middle rule as `peaks`
    pointing_random.append(np.mean((centre >= a) & (centre < a + length)))
  fraction = float(np.mean(lengths / input_length))
  return {"pointing_uniform": fraction, "iou_uniform": fraction,
          "pointing_random": float(np.mean(pointing_random)),
          "iou_random": float(np.mean(iou_random))}


def scores(attention_map: np.ndarray, starts, ends) -> dict[str, float]:
  """pointing, iou (above-mean rule) and iou_topk of one time-mapped attention map."""
  starts, ends = np.asarray(starts), np.asarray(ends)
  return {"pointing": pointing_accuracy(attention_map, starts, ends),
          "iou": float(np.mean(iou(above_mean(attention_map), starts, ends))),
          "iou_topk": float(np.mean(iou(top_k(attention_map, ends - starts), starts, ends)))}


def evaluate(model, signals: np.ndarray, segment_starts, segment_ends, config, *,
             variables=None, batch_size: int = 256, prefix: str = "loc_") -> dict[str, float]:
  """Localisation scores of the model on windows with known segments, as a flat dict of floats.

  `model`: an unreplicated TrainState (`t.par.unreplicate(pstate)` in the trainer), or an
  `apply_fn` with `variables`. Keys (with `prefix`): pointing, iou, iou_topk (last block);
  the same with _block<k> and _blocks (mean of blocks); pointing_uniform, iou_uniform,
  pointing_random, iou_random (baselines); and n (windows scored).
  """
  signals = np.asarray(signals)
  out = {"n": float(len(signals)), **baselines(segment_starts, segment_ends, signals.shape[1])}
  _, maps = attention(model, signals, variables=variables, batch_size=batch_size)
  mapped = time_mapped(maps, config, signals.shape[1])
  if mapped:
    last = _resolve("last", mapped)
    out.update(scores(mapped[last], segment_starts, segment_ends))
    for name, attention_map in mapped.items():
      out.update({f"{k}_{name}": v
                  for k, v in scores(attention_map, segment_starts, segment_ends).items()})
  return {prefix + k: v for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# The trainer's evaluator.

SEGMENT_FEATURES = ("segment_start", "segment_end")


def test_segments(test: dict) -> tuple[np.ndarray, np.ndarray] | None:
  """(segment_start, segment_end) of a split from `input_pipeline.load`, or None without them."""
  if not all(k in test for k in SEGMENT_FEATURES):
    return None
  return tuple(np.asarray(test[k], np.int64) for k in SEGMENT_FEATURES)


def evaluator(state, test: dict, config) -> dict[str, float]:
  """The `localization` evaluator (evaluators.py): `evaluate` on test windows with known
  segments."""
  segments = test_segments(test)
  if segments is None:
    raise ValueError(f"config.evaluators has 'localization', but {config.dataset} has no "
                     "segment_start/segment_end features to score it against; use the weakly "
                     "dataset.")
  return evaluate(state, test["signal"], *segments, config)
