"""Training and evaluation: the per-device steps, and the loop that drives, logs and checkpoints them.

The steps are pure functions of (state, batch), written once per device with explicit collectives
over `parallel.AXIS`: gradients and losses are averaged across devices, and BatchNorm takes its
batch statistics over the global batch (`axis_name`), so N devices train like one device on the
same global batch. `config.parallelism` maps them with `jax.pmap` or `jax.shard_map`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from etils import epath
from flax.training import train_state
from jax.experimental import multihost_utils

from danhar_jax import checkpoints
from danhar_jax import evaluators as evaluators_lib
from danhar_jax import input_pipeline
from danhar_jax import metrics as metrics_lib
from danhar_jax import models
from danhar_jax import parallel
from danhar_jax import profiling
from danhar_jax import selection
from danhar_jax import writers as writers_lib

AXIS = parallel.AXIS


class TrainState(train_state.TrainState):
  batch_stats: Any


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or inf; the run stops before anything is checkpointed."""


# ---------------------------------------------------------------------------------------------
# Optimiser: PyTorch's Adam(weight_decay=wd) with a scheduler stepped once per epoch.


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """ExponentialLR(gamma) or StepLR(step_size, gamma), stepped per epoch, as optax schedules."""
  lr, gamma = config.learning_rate, config.lr_decay_rate
  if config.lr_schedule == "constant":
    return optax.constant_schedule(lr)
  if config.lr_schedule == "exponential":
    return optax.exponential_decay(lr, steps_per_epoch, gamma, staircase=True)
  if config.lr_schedule == "step":
    return optax.exponential_decay(lr, steps_per_epoch * config.lr_step_epochs, gamma,
                                   staircase=True)
  raise ValueError(f"config.lr_schedule={config.lr_schedule!r} is not one of "
                   "constant, exponential, step.")


def make_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  # PyTorch's Adam adds weight_decay * param to the gradient *before* the moments (coupled L2),
  # which is not AdamW's decoupled decay.
  return optax.chain(
      optax.add_decayed_weights(config.weight_decay),
      optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
      optax.scale_by_learning_rate(learning_rate_schedule(config, steps_per_epoch)))


def create_train_state(config, model, steps_per_epoch: int) -> TrainState:
  variables = models.init_variables(model.clone(bn_axis_name=None), config.input_shape,
                                    config.seed)
  return TrainState.create(apply_fn=model.apply, params=variables["params"],
                           batch_stats=variables["batch_stats"],
                           tx=make_optimizer(config, steps_per_epoch))


# ---------------------------------------------------------------------------------------------
# The per-device steps.

MATMUL_PRECISIONS = ("default", "high", "highest")


def with_matmul_precision(step, precision: str):
  """`step` traced under `jax.default_matmul_precision(precision)`: its matmuls and convs, and
  their gradients, carry that precision. 'default' leaves JAX's own (or the environment's)."""
  if precision not in MATMUL_PRECISIONS:
    raise ValueError(f"config.matmul_precision={precision!r} is not one of "
                     f"{', '.join(MATMUL_PRECISIONS)}.")
  if precision == "default":
    return step

  @functools.wraps(step)
  def traced_with_precision(*args):
    with jax.default_matmul_precision(precision):
      return step(*args)

  return traced_with_precision


def divisible_batches(batch: int, devices: int) -> tuple[int, ...]:
  """The multiples of `devices` nearest to `batch`, below and above (one if it divides)."""
  below = max(batch // devices * devices, devices)
  return tuple(dict.fromkeys((below, -(-batch // devices) * devices)))


def check_batch_divides(batch: int, devices: int, field: str = "config.batch_size") -> None:
  """Fails before anything compiles if the global batch does not split evenly over devices."""
  if batch % devices:
    raise ValueError(f"{field}={batch} does not divide across the {devices} devices; use "
                     f"{' or '.join(map(str, divisible_batches(batch, devices)))} "
                     f"({field} is the global batch).")


def gather(data, idx, shapes=None):
  """Gathers a batch from the device-resident split: the input pipeline's only per-step work.
  With `shapes` (from `flat_windows`), each gathered row is reshaped back to its window."""
  if shapes is None:
    return jax.tree.map(lambda a: a[idx], data)
  return {k: a[idx].reshape(*idx.shape, *shapes[k]) for k, a in data.items()}


def flat_windows(split: dict) -> tuple[dict, dict]:
  """`split` as the devices hold it, each array [windows, values] ([windows] for one value),
  and each array's window shape for `gather`. A window dim of size 1 (a (1, 17) window) made
  pmap's XLA copy the whole split on every call, to change its layout for the loop."""
  flat = {k: np.reshape(v, (len(v), -1) if np.prod(np.shape(v)[1:]) > 1 else (len(v),))
          for k, v in split.items()}
  return flat, {k: tuple(np.shape(v)[1:]) for k, v in split.items()}


def train_step(state: TrainState, batch, class_weights=None):
  """One step on each device's part of the global batch. With `class_weights` the loss is
  PyTorch's CrossEntropyLoss(weight=w) over the GLOBAL batch, sum(w_y * l) / sum(w_y): each
  device divides its weighted sum by the global sum of weights (a psum) and scales by the device
  count, so the mean over the devices is the one-device loss."""
  def loss_fn(params):
    logits, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats}, batch["signal"], train=True,
        mutable=["batch_stats"])
    per_window = metrics_lib.cross_entropy(logits, batch["label"])
    if class_weights is None:  # the authors' unweighted mean, computed exactly as before
      loss = objective = per_window.mean()
    else:
      w = jnp.asarray(class_weights, per_window.dtype)[batch["label"]]
      # A batch whose windows all weigh 0 contributes nothing (PyTorch would return NaN).
      total = jax.lax.stop_gradient(jnp.maximum(jax.lax.psum(w.sum(), AXIS), 1e-12))
      weighted = (w * per_window).sum()
      loss, objective = weighted / total, weighted / total * jax.lax.psum(1, AXIS)
    # Differentiated as the mean over the devices: under shard_map's check the gradient of the
    # replicated parameters is then that mean itself; under pmap each device's own gradient,
    # which the pmean below averages (and which leaves shard_map's unchanged).
    return jax.lax.pmean(objective, AXIS), (loss, logits, updates["batch_stats"])

  (_, (loss, logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  if class_weights is not None:
    loss = jax.lax.psum(loss, AXIS)  # each device held its share of the global weighted mean
  grads = jax.lax.pmean(grads, AXIS)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  metrics = metrics_lib.TrainMetrics.of(
      loss=jnp.broadcast_to(loss, batch["label"].shape), logits=logits,
      labels=batch["label"]).psum(AXIS)
  return state, metrics


def eval_step(state: TrainState, batch):
  logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                          batch["signal"], train=False)
  # With the test windows' subjects, accuracy per subject too (the per_subject evaluator).
  return metrics_lib.EvalMetrics.of(
      loss=metrics_lib.cross_entropy(logits, batch["label"]), logits=logits,
      labels=batch["label"], mask=batch["mask"],
      subject_onehot=batch.get("subject_onehot")).psum(AXIS)


def train_steps(step_fn, state, tally, data, order, where, shapes=None):
  """Up to a block of train steps in one device call, each gathering its own batch on the device.

  `order` is the epoch's batches as positions in the device-resident split `data`
  ([steps_per_epoch, batch]); `where` = (first step in the epoch, steps to run). The trip count
  is traced, so one compile serves every block length, and each step computes exactly what one
  call of `step_fn` would: K changes how steps are grouped, not what they compute. `tally` sums
  the metrics on the device and keeps the loss of the first step whose loss was not finite, and
  that step's 1-based number within its epoch (-1 while there is none). `shapes`: as `gather`.
  """
  start, n = where[0], where[1]

  def body(i, carry):
    state, tally = carry
    state, m = step_fn(state, gather(data, order[start + i], shapes))
    new_bad = (tally["bad_step"] < 0) & ~jnp.isfinite(m.loss.total)
    return state, {"metrics": tally["metrics"].merge(m),
                   "bad_step": jnp.where(new_bad, start + i + 1, tally["bad_step"]),
                   "bad_loss": jnp.where(new_bad, m.loss.total, tally["bad_loss"])}

  return jax.lax.fori_loop(0, n, body, (state, tally))


def empty_tally():
  return {"metrics": metrics_lib.TrainMetrics.empty(), "bad_step": jnp.int32(-1),
          "bad_loss": jnp.float32(0)}


def eval_steps(step_fn, state, data, batches, shapes=None):
  """Every eval batch in one device call: `batches` holds their positions in the device-resident
  test split and their padding masks ([eval batches, batch] each); the metrics merge in order."""
  def one(i):
    return step_fn(state, {**gather(data, batches["positions"][i], shapes),
                           "mask": batches["mask"][i]})

  return jax.lax.fori_loop(1, batches["positions"].shape[0], lambda i, acc: acc.merge(one(i)),
                           one(0))


# ---------------------------------------------------------------------------------------------
# The loop.

# What config.steps_per_call=0 resolves to per backend (benchmarks/README.md, "trainer"); a
# block also ends at every log step, epoch end and checkpoint step.
STEPS_PER_CALL = {"cpu": 32, "gpu": 32, "tpu": 32}


def resolve_steps_per_call(value, backend: str) -> int:
  if not isinstance(value, int) or isinstance(value, bool) or value < 0:
    raise ValueError(f"config.steps_per_call={value!r} is not allowed: expected 0 (auto: "
                     "picked per backend) or an integer >= 1, the train steps per device call.")
  return value or STEPS_PER_CALL.get(backend, 1)


def check_workdir(workdir: str) -> None:
  """Fails before any compute if `workdir` cannot be created or written."""
  try:  # through etils.epath, so that a gs:// workdir works where its filesystem is installed
    probe = epath.Path(workdir) / f".write_probe_{os.getpid()}"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text("ok")
    probe.unlink()
  except OSError as e:
    raise PermissionError(f"--workdir={workdir} is not a writable directory ({e}). "
                          "Choose a folder you can write to.") from None


def epoch_steps(config, train_windows: int) -> int:
  """Steps per epoch: the full global batches of the train split, at most
  config.steps_per_epoch when that is positive."""
  full = train_windows // config.batch_size
  return min(full, config.steps_per_epoch) if config.steps_per_epoch > 0 else full


class Trainer:
  """Everything one run needs on the devices: data, mapped steps, and the state."""

  def __init__(self, config, train, test, validation=None, scheduled=True):
    """`scheduled`: the evaluators run on their schedules (training); False, every one runs
    whenever asked (--mode=eval)."""
    self.config = config
    self.par = parallel.Parallel(config.parallelism)
    self.train_split = train
    self.n_train, self.n_test = input_pipeline.size(train), input_pipeline.size(test)
    n_dev, n_proc = jax.device_count(), jax.process_count()
    check_batch_divides(config.batch_size, n_dev)
    self.global_batch = config.batch_size
    self.eval_batch = -(-config.eval_batch_size // n_dev) * n_dev
    self.steps_per_epoch = epoch_steps(config, self.n_train)
    if self.steps_per_epoch == 0:
      raise ValueError(f"The train split has {self.n_train} windows, fewer than one batch of "
                       f"{self.global_batch}. Lower config.batch_size.")
    self.total_steps = config.num_epochs * self.steps_per_epoch
    try:
      self.evaluators = evaluators_lib.scheduled(config.evaluators)
    except ValueError as e:
      raise ValueError(f"config.evaluators={tuple(config.evaluators)!r}: {e}.") from None
    self.scheduled = scheduled
    self.model = models.create_model(config, bn_axis_name=AXIS)
    precision = config.get("matmul_precision", "default")
    self.steps_per_call = resolve_steps_per_call(config.get("steps_per_call", 0),
                                                 jax.default_backend())
    self.class_weights = metrics_lib.resolve_class_weights(
        config.get("class_weights", "none"),
        labels(train) if config.get("class_weights") == "balanced" else None, config.num_classes)
    if self.class_weights is not None:
      logging.info("Class weights in the loss (config.class_weights=%r): %s",
                   config.class_weights, ", ".join(f"{w:.4g}" for w in self.class_weights))
    self.resolved = {"conv_impl": self.model.conv_impl, "backend": jax.default_backend(),
                     "matmul_precision": precision, "steps_per_call": self.steps_per_call,
                     "class_weights": self.class_weights}
    logging.info("Model: %s/%s, %s, conv_impl %s (config: %s), matmul precision %s; up to %d "
                 "train steps per device call (config.steps_per_call: %s).",
                 config.model.backbone, config.model.attention, config.model.dtype,
                 self.model.conv_impl, config.model.conv_impl, precision, self.steps_per_call,
                 config.get("steps_per_call", 0))
    logging.info("Devices: %d (%d per process, %d processes, %s); global batch %d, per-device "
                 "batch %d; %d steps/epoch over %d train windows (%d sit out each epoch, a "
                 "different random set each time); %d test windows.",
                 n_dev, jax.local_device_count(), n_proc, jax.devices()[0].platform,
                 self.global_batch, self.global_batch // n_dev, self.steps_per_epoch,
                 self.n_train, self.n_train - self.steps_per_epoch * self.global_batch,
                 self.n_test)

    self.rows = input_pipeline.ProcessRows(
        seed=config.seed, n_train=self.n_train, n_test=self.n_test,
        global_batch=self.global_batch, eval_batch=self.eval_batch,
        steps_per_epoch=self.steps_per_epoch, num_processes=n_proc,
        process_index=jax.process_index())
    self.held_epoch = None
    self.test_rows = self.rows.test()
    test = input_pipeline.take(test, self.test_rows)
    own = self.rows.own_test()
    if n_proc > 1:
      logging.info("Process %d/%d holds its shard of the test split: %d of %d windows.",
                   jax.process_index(), n_proc, len(own), self.n_test)
    self.own_test = {k: v[np.isin(self.test_rows, own)] for k, v in test.items()}
    test_data = input_pipeline.pad_rows({k: test[k] for k in ("signal", "label")},
                                        self.rows.held_test_size())
    # Per-subject accuracy needs every process to agree on the subject list: one process only.
    self.subjects = None
    if "subject" in test and n_proc == 1:
      self.subjects, index = np.unique(test["subject"], return_inverse=True)
      test_data["subject_onehot"] = np.eye(len(self.subjects), dtype=np.float32)[index]
    test_data, test_shapes = flat_windows(test_data)
    self.test_data = self.par.replicate(test_data)
    one = input_pipeline.take(train, np.arange(1))
    _, train_shapes = flat_windows({k: one[k] for k in ("signal", "label")})
    step = functools.partial(train_step, class_weights=self.class_weights)
    self.p_train_steps = self.par.map(
        functools.partial(train_steps, with_matmul_precision(step, precision),
                          shapes=train_shapes),
        in_replicated=(True, True, True, False, True), out_replicated=(True, True),
        donate_argnums=(0,))
    self.p_eval_steps = self.par.map(
        functools.partial(eval_steps, with_matmul_precision(eval_step, precision),
                          shapes=test_shapes),
        in_replicated=(True, True, False), out_replicated=True)
    # The eval batches never change: their positions and masks go to the devices once.
    positions, masks = zip(*[(input_pipeline.positions(self.test_rows, rows), mask)
                             for rows, mask in self.rows.eval_batches()])
    self.eval_batches = {"positions": self.per_device(np.stack(positions)),
                         "mask": self.per_device(np.stack(masks))}
    # The validation split, held and batched as the test split is (without subjects).
    self.validation = None if validation is None else self.hold_eval(validation)
    self.empty_tally = self.par.replicate(empty_tally())
    self.order_epoch, self.order, self.wheres = None, None, {}
    # Queued shard_map steps can deadlock XLA:CPU's collectives: block every step there.
    self.block_each_step = (config.parallelism == "shard_map"
                            and jax.devices()[0].platform == "cpu")

  def hold_eval(self, split) -> dict:
    """An evaluated split other than the test split on the devices, with its eval batches."""
    rows = dataclasses.replace(self.rows, n_test=input_pipeline.size(split))
    held = rows.test()
    data = input_pipeline.take(split, held)
    positions, masks = zip(*[(input_pipeline.positions(held, r), mask)
                             for r, mask in rows.eval_batches()])
    logging.info("Validation split: %d windows.", rows.n_test)
    flat, _ = flat_windows(input_pipeline.pad_rows({k: data[k] for k in ("signal", "label")},
                                                   rows.held_test_size()))
    return {"data": self.par.replicate(flat),
            "batches": {"positions": self.per_device(np.stack(positions)),
                        "mask": self.per_device(np.stack(masks))}}

  def hold_train(self, epoch: int) -> None:
    """Puts the train rows of `epoch` on the devices, unless they are there already."""
    n_proc = jax.process_count()
    if self.held_epoch is not None and (n_proc == 1 or self.held_epoch == epoch):
      return
    rows = self.rows.train(epoch)
    train = input_pipeline.take(self.train_split, rows)
    self.train_data = None  # frees the last epoch's shard before placing the next
    train, _ = flat_windows({k: train[k] for k in ("signal", "label")})
    self.train_data = self.par.replicate(train)
    self.train_rows, self.held_epoch = rows, epoch
    if n_proc > 1:
      logging.info("Process %d/%d holds its shard of epoch %d: %d of %d train windows.",
                   jax.process_index(), n_proc, epoch + 1, len(rows), self.n_train)

  def per_device(self, a: np.ndarray):
    """[steps, this process's batch] → each device's [steps, its part of the batch]."""
    n = jax.local_device_count()
    return self.par.place(np.ascontiguousarray(a.reshape(a.shape[0], n, -1).swapaxes(0, 1)))

  def epoch_order(self, epoch: int):
    """The positions of every batch of `epoch` in the held train split, on the devices: one
    transfer per epoch, from which each step gathers its own batch."""
    if self.order_epoch != epoch:
      self.hold_train(epoch)
      rows = self.rows.train_epoch(epoch)
      self.order = None  # the last epoch's order is freed before the next one is placed
      self.order = self.per_device(input_pipeline.positions(self.train_rows, rows))
      self.order_epoch = epoch
    return self.order

  def block_end(self, step: int, stops=()) -> int:
    """Where the block of train steps starting at `step` ends: after steps_per_call steps, or
    at the next log step, epoch end, checkpoint step or member of `stops`, whichever is first."""
    c = self.config
    ends = [step + self.steps_per_call, self.total_steps,
            (step // self.steps_per_epoch + 1) * self.steps_per_epoch,
            (step // c.log_every_steps + 1) * c.log_every_steps]
    if c.checkpoint_every_steps:
      ends.append((step // c.checkpoint_every_steps + 1) * c.checkpoint_every_steps)
    return min(ends + [s for s in stops if s > step])

  def train_steps(self, pstate, tally, step: int, end: int):
    """Runs steps [step, end) of the run, all within one epoch, in one device call."""
    epoch, s = divmod(step, self.steps_per_epoch)
    order = self.epoch_order(epoch)  # holds the epoch's train rows too
    if (s, end - step) not in self.wheres:  # the same few blocks recur every epoch
      self.wheres[s, end - step] = self.par.replicate(np.array([s, end - step], np.int32))
    return self.p_train_steps(pstate, tally, self.train_data, order, self.wheres[s, end - step])

  def host_tally(self, tally) -> dict:
    """The device tally on the host, in one read; the rest is numpy."""
    return self.par.unreplicate(jax.device_get(tally))

  def check_finite(self, tally, done: int) -> None:
    """Stops the run if a step of `tally` (host-side, steps of the epoch that `done` ends in)
    had a loss that was not finite, naming that step."""
    bad = int(tally["bad_step"])
    if bad >= 0:
      check_finite((done - 1) // self.steps_per_epoch * self.steps_per_epoch + bad,
                   tally["bad_loss"])

  def evaluate(self, pstate) -> dict:
    """The test split's evaluators (the loss is unweighted, whatever config.class_weights says)."""
    return self.evaluate_split(pstate, "test")

  def evaluate_validation(self, pstate) -> dict:
    """The validation split's evaluators, their fields validation_*; {} when the run has none."""
    return self.evaluate_split(pstate, "validation")

  def evaluate_split(self, pstate, split: str) -> dict:
    """The outputs of the evaluators on `split` that are due at the epoch `pstate` ends."""
    if split == "validation" and self.validation is None:
      return {}
    due = [e for e in self.evaluators if e.split == split]
    if self.scheduled and any(e.every > 1 for e in due):  # else every one is due: no read
      epoch = int(jax.device_get(self.par.unreplicate(pstate.step))) // self.steps_per_epoch
      due = [e for e in due if e.due(epoch, self.config.num_epochs)]
    test = split == "test"
    data, batches = ((self.test_data, self.eval_batches) if test else
                     (self.validation["data"], self.validation["batches"]))
    ctx = evaluators_lib.Context(
        self.config, split,
        run_pass=lambda: jax.device_get(self.par.unreplicate(
            self.p_eval_steps(pstate, data, batches)).compute()),
        state=lambda: self.par.unreplicate(pstate),
        windows=self.own_test if test else None, subjects=self.subjects if test else None)
    return evaluators_lib.run(due, ctx)

  def pipeline_position(self, step: int) -> dict:
    """What a checkpoint records of the input pipeline, and a resumed run must share."""
    epoch, s = divmod(step, self.steps_per_epoch)
    return {"seed": self.config.seed, "epoch": epoch, "step_in_epoch": s,
            "global_batch": self.global_batch, "steps_per_epoch": self.steps_per_epoch}


def labels(split) -> np.ndarray:
  """Every label of a split, without reading its windows."""
  if isinstance(split, input_pipeline.Split):
    return split.read(np.arange(len(split)), features=("label",))["label"]
  return np.asarray(split["label"])


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains `config`, evaluating every epoch; resumes from `workdir` if it holds a checkpoint."""
  check_workdir(workdir)
  splits = input_pipeline.open_split_set(config)
  selection.check(config, splits.validation is not None)
  select_on, patience = config.get("select_on", ""), config.get("early_stopping_patience", 0)
  t = Trainer(config, splits.train, splits.test, splits.validation)
  state = create_train_state(config, t.model, t.steps_per_epoch)
  # Selecting on validation keeps the selected epoch's checkpoint beside the latest ones.
  keep_best = bool(select_on)
  with checkpoints.managed(workdir, config.max_checkpoints_to_keep, keep_best) as mngr, \
      writers_lib.Writers(workdir, enabled=jax.process_index() == 0) as writers:
    # The stored config is compared before the state is read; a damaged newest step is set aside.
    state, start = checkpoints.restore(mngr, state, expected=t.pipeline_position(0),
                                       config=config.to_dict(), set_aside=True)
    writers.forget_after(start)
    if jax.process_index() == 0:  # what the split's audit found, beside the records
      writers_lib.write_split_audit(workdir, splits.audit)
    # The selected epoch so far over the whole run: a resumed run replays the records it keeps.
    selector = selection.from_records(
        select_on, patience,
        [r for r in writers_lib.read_eval_metrics(workdir) if r["step"] <= start])
    writers.hparams({**config.to_dict(), "resolved": {"class_weights": t.class_weights}})
    profiler = profiling.StepProfiler(workdir, config.get("profile_steps", 0), start)
    if start:
      logging.info("Resumed from the checkpoint at step %d (epoch %d).", start,
                   start // t.steps_per_epoch)
    if start >= t.total_steps:
      logging.info("Already trained for %d steps; nothing to do.", start)
    elif selector.stop:
      logging.info("Stopped early at step %d: nothing to do.", start)
    pstate = t.par.replicate(state)
    del state  # donated into the first step: only pstate is valid from here
    schedule = learning_rate_schedule(config, t.steps_per_epoch)
    progress = writers_lib.Progress(t.total_steps, start, t.global_batch)
    saves = SaveCadence(config, t.total_steps)

    def read_log(done, tally):
      """Writes the train metrics of the log window ending at `done`, after checking it."""
      tally = t.host_tally(tally)
      t.check_finite(tally, done)
      values = {f"train_{k}": float(v) for k, v in tally["metrics"].compute().items()}
      values["learning_rate"] = float(schedule(done - 1))
      writers.scalars(done, values)
      logging.info("[epoch %d, step %d/%d] loss %.4f, accuracy %.4f, lr %.2e | %s",
                   (done - 1) // t.steps_per_epoch + 1, done, t.total_steps,
                   values["train_loss"], values["train_accuracy"], values["learning_rate"],
                   progress.line(done))
      return values

    # The metrics are summed on the device and read once per log step, one block late, so
    # that the host queues the next block before it waits for them.
    tally, logged, last_train, step = t.empty_tally, None, None, start
    while step < t.total_steps and not selector.stop:
      done = t.block_end(step, profiler.stops)
      profiler.before(step)
      pstate, tally = t.train_steps(pstate, tally, step, done)
      profiler.after(done - 1, pstate)
      if t.block_each_step:
        parallel.block(tally)
      if logged is not None:
        last_train, logged = read_log(*logged), None
      epoch_done = done % t.steps_per_epoch == 0
      if done % config.log_every_steps == 0 or epoch_done:
        logged, tally = (done, tally), t.empty_tally
      step = done
      save = saves.due(done, epoch_done)
      if logged is not None and (epoch_done or save):
        last_train, logged = read_log(*logged), None
      if save and tally is not t.empty_tally:  # a checkpoint step inside a log window
        t.check_finite(t.host_tally(tally), done)
      if epoch_done:
        epoch = done // t.steps_per_epoch
        started = time.perf_counter()
        # Each due evaluator's fields, prefixed by its split (evaluators.py).
        result = t.evaluate(pstate)
        validated = t.evaluate_validation(pstate)
        selected = selector.update(epoch, done, {**result, **validated})
        # The selected epoch must be on disk, and so must the epoch a run stops at (an epoch
        # end's log window is already read and checked above).
        save = save or (keep_best and selected) or selector.stop
        record = {"epoch": epoch, "step": done, **result, **validated,
                  "best_accuracy": selector.test["accuracy"], "best_epoch": selector.epoch,
                  **last_train, "eval_seconds": round(time.perf_counter() - started, 3),
                  **selector.fields(), "class_weights": t.class_weights}
        if patience:
          record["stopped_early"] = selector.stop
        writers.eval_record(record)
        writers.scalars(done, {f"test_{k}": result[k] for k in (
            "accuracy", "macro_f1", "weighted_f1", "loss")} | validated)
        logging.info("[epoch %d] test accuracy %.4f, macro-F1 %.4f, weighted-F1 %.4f, loss %.4f"
                     "%s; selected on %s: epoch %d", epoch, result["accuracy"],
                     result["macro_f1"], result["weighted_f1"], result["loss"],
                     "".join(f", {k} {v:.4f}" for k, v in validated.items()),
                     record["selected_on"], selector.epoch)
        if selector.stop:
          logging.info("Stopping early after epoch %d: %s has not improved for %d epochs; "
                       "selected epoch %d.", epoch, select_on, patience, selector.epoch)
      if save:
        # With what 'auto' resolved to on this backend, so a run says how it was computed.
        pipeline = t.pipeline_position(done)
        if keep_best:
          pipeline["selected_step"] = selector.step
        checkpoints.save(mngr, done, jax.device_get(t.par.unreplicate(pstate)),
                         {**config.to_dict(), "resolved": t.resolved}, pipeline,
                         rank=selector.rank(validated[selector.key])
                         if keep_best and epoch_done else None)
        saves.saved()
    profiler.stop()
  return jax.device_get(t.par.unreplicate(pstate))


def check_finite(step: int, loss) -> None:
  if not np.isfinite(loss):
    raise NonFiniteLossError(
        f"The training loss became {float(loss)} at step {step}. Nothing after the last "
        "checkpoint was saved. Check the input windows for NaN/inf, or lower "
        "config.learning_rate.")


class SaveCadence:
  """When to checkpoint: every `checkpoint_every_steps` steps if set, always at the end, and at
  an epoch end once `checkpoint_every_seconds` have passed since the last save (0: every epoch).
  A kill loses at most that much training; with several processes, process 0's clock decides."""

  def __init__(self, config, total_steps: int):
    self.every_steps = config.checkpoint_every_steps
    self.every_s = config.get("checkpoint_every_seconds", 0)
    self.total, self.last = total_steps, time.monotonic()

  def due(self, done: int, epoch_done: bool) -> bool:
    if done == self.total or (self.every_steps and done % self.every_steps == 0):
      return True
    if not epoch_done:
      return False
    late = time.monotonic() - self.last >= self.every_s
    if jax.process_count() > 1:
      late = bool(multihost_utils.broadcast_one_to_all(np.bool_(late)))
    return late

  def saved(self) -> None:
    self.last = time.monotonic()


CHECKPOINTS = ("", "selected", "latest")


def restore_state(config, workdir: str, checkpoint: str = "latest"):
  """A checkpoint of `workdir` as an unreplicated TrainState, and its step, for evaluation:
  `config` must be the stored one where it shapes the model or the test data. `checkpoint`:
  'latest', 'selected' (the epoch a run selected on validation), or '' (selected if the run
  selected on validation, else latest)."""
  if checkpoint not in CHECKPOINTS:
    raise ValueError(f"--checkpoint={checkpoint} is not one of selected, latest.")
  mngr = checkpoints.manager(workdir)
  try:
    if mngr.latest_step() is None:
      raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints.")
    step = None
    if checkpoint != "latest":
      step = checkpoints.selected_step(mngr)
      if step is None and checkpoint == "selected":
        raise ValueError(f"--checkpoint=selected: {workdir} selected its best epoch on the test "
                         "split (config.select_on=''), so no checkpoint was kept for it; use "
                         "--checkpoint=latest.")
      if step is not None and step not in mngr.all_steps():
        raise FileNotFoundError(f"--checkpoint=selected: the selected step {step} is no longer in "
                                f"{workdir}/checkpoints; use --checkpoint=latest.")
    # steps_per_epoch only shapes the LR schedule, not the optimiser state's structure.
    state = create_train_state(config, models.create_model(config), steps_per_epoch=1)
    return checkpoints.restore(mngr, state, config=config.to_dict(),
                               may_differ=checkpoints.EVAL_MAY_DIFFER, step=step)
  finally:
    mngr.close()


def evaluate(config, workdir: str, checkpoint: str = "") -> dict:
  """Evaluates a checkpoint of `workdir` (see `restore_state`) on the test split, and on the
  validation split when the run has one."""
  splits = input_pipeline.open_split_set(config)
  t = Trainer(config, splits.train, splits.test, splits.validation, scheduled=False)
  state, step = restore_state(config, workdir, checkpoint)
  pstate = t.par.replicate(state)
  return {"step": step, **t.evaluate(pstate), **t.evaluate_validation(pstate),
          "class_names": splits.class_names}


def evaluate_variables(config, variables) -> dict:
  """Evaluates `{'params', 'batch_stats'}` from elsewhere (the authors' checkpoints) on the test
  split, as `evaluate` does a run's latest checkpoint."""
  splits = input_pipeline.open_split_set(config)
  t = Trainer(config, splits.train, splits.test, scheduled=False)
  state = create_train_state(config, t.model, t.steps_per_epoch).replace(
      params=variables["params"], batch_stats=variables["batch_stats"])
  return {**t.evaluate(t.par.replicate(state)), "class_names": splits.class_names}
