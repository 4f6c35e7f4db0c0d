r"""Shared defaults, and the `:arg` grammar every dataset config accepts.

Not meant to be run on its own: use a dataset config (`configs/wisdm.py`, ...). Each of those
carries the authors' settings for the three model files they published per dataset, chosen by the
config argument:

  --config=configs/<dataset>.py              DanHAR: Att-based ResNet (channel → temporal)
  --config=configs/<dataset>.py:resnet       Residual Network, the authors' ResNet settings
  --config=configs/<dataset>.py:cnn          Standard CNN, the authors' baseline settings
  --config=configs/<dataset>.py:att_cnn      Att-based CNN (CNN + DanHAR attention per block)
  --config=configs/<dataset>.py:channel      ResNet + channel attention only      (Table VII)
  --config=configs/<dataset>.py:temporal     ResNet + temporal attention only     (Table VII)
  --config=configs/<dataset>.py:temporal_channel   ResNet + temporal → channel    (Table VII)
  --config=configs/<dataset>.py:quick        any of the above, shrunk to a CPU smoke run (< 1 min)
  --config=configs/opportunity.py:challenge  a dataset's own options (OPPORTUNITY: 18 classes
                                             with Null, the challenge protocol)

Each variant trains with its file's objective: the authors' logit LayerNorm
(`config.model.logit_standardization`) is on for every variant but the CNN, whose files lack it
except on OPPORTUNITY. `--config.model.logit_standardization=False` turns it off.

Arguments combine with commas (`:cnn,quick`). Every field can be overridden on the command line,
e.g. `--config.model.dtype=bfloat16 --config.batch_size=256`; a misspelt field is an error.
"""

import ml_collections

# The authors' model files per variant; the ablation variants use the DanHAR file's settings.
VARIANTS = {
    "danhar": dict(backbone="resnet", attention="channel_temporal"),
    "resnet": dict(backbone="resnet", attention="none"),
    "cnn": dict(backbone="cnn", attention="none"),
    "att_cnn": dict(backbone="cnn", attention="channel_temporal"),
    "channel": dict(backbone="resnet", attention="channel"),
    "temporal": dict(backbone="resnet", attention="temporal"),
    "temporal_channel": dict(backbone="resnet", attention="temporal_channel"),
}


# The training settings of the authors' WISDM model files, shared by configs/wisdm.py and
# configs/wisdm2019.py. `logit_standardization`: whether that file ends with the logit LayerNorm
# (their baseline_wisdm.py does not; the ResNet, DanHAR and Att-CNN files do).
WISDM_SETTINGS = {
    "cnn": dict(batch_size=210, learning_rate=1e-3, weight_decay=1e-3,
                lr_schedule="constant", lr_decay_rate=1.0, lr_step_epochs=1,
                logit_standardization=False),
    "resnet": dict(batch_size=210, learning_rate=1e-3, weight_decay=1e-6,
                   lr_schedule="exponential", lr_decay_rate=0.9, lr_step_epochs=1,
                   logit_standardization=True),
    "danhar": dict(batch_size=210, learning_rate=1e-3, weight_decay=1e-3,
                   lr_schedule="exponential", lr_decay_rate=0.9, lr_step_epochs=1,
                   logit_standardization=True),
}


def get_config():
  """Fields common to every dataset. Dataset configs override the dataset-specific ones."""
  config = ml_collections.ConfigDict()

  # Data. `dataset` is a TFDS name from tfds_builders/ (optionally `name/builder_config`).
  config.dataset = "wisdm"
  config.data_dir = "~/tensorflow_datasets"   # where prepared datasets live (TFDS data_dir)
  config.manual_dir = ""                       # where you placed the raw archive, if no network
  config.input_shape = (200, 3)                # model-facing window: (time, sensors)
  config.num_classes = 6
  # Comma-separated subject ids. When set, train = every other subject, test = these, over the
  # union of the builder's splits: subject-wise or leave-one-subject-out evaluation.
  config.test_subjects = ""
  # The evaluation protocol. Off (the defaults) is the authors': the builder's split, no
  # validation split, the best epoch read off the test split and named so in every record.
  # 'default' (the builder's) | 'subjects' | 'random_windows' | 'random_windows_gap'
  config.split = "default"
  config.validation_subjects = ""              # comma-separated ids held out of training
  config.validation_fraction = 0.0             # or this share of the training subjects, by seed
  # What picks the best epoch: '' (the test split, as the authors) or 'validation_accuracy',
  # 'validation_macro_f1', 'validation_loss'.
  config.select_on = ""
  config.early_stopping_patience = 0           # epochs without a better validation score; 0: off
  config.class_weights = "none"                # 'none' | 'balanced' | one weight per class, "1,2,..."

  config.model = ml_collections.ConfigDict()
  config.model.backbone = "resnet"             # 'cnn' | 'resnet'
  config.model.attention = "channel_temporal"  # 'none'|'channel'|'temporal'|'channel_temporal'|'temporal_channel'
  config.model.widths = (128, 256, 384)
  config.model.kernel = 6                      # first conv of each block: (kernel, 1)
  config.model.strides = (2, 2, 2)
  config.model.padding = 0
  config.model.kernel2 = 3                     # second conv of each block: (kernel2, 1), stride 1
  config.model.temporal_kernel = (7, 7)        # temporal-attention conv (time, sensor)
  config.model.time_as_channels = False        # OPPORTUNITY's layout, see configs/opportunity.py
  # The authors' `nn.LayerNorm(x.size())` on the logits: standardises the whole batch's logit
  # matrix with one mean and variance. Argmax is unchanged; the loss scale is not. `finalize`
  # sets it per variant from the dataset's SETTINGS, as each of the authors' files has it.
  config.model.logit_standardization = False
  config.model.dtype = "float32"               # compute dtype; 'bfloat16' keeps float32 params
  # How the (k,1) convs are computed; all share parameters and checkpoints. 'auto' picks once,
  # when the model is created: 'xla' (lax.conv) on GPU and TPU, 'winograd' on CPU, where it is
  # the fastest (benchmarks/README.md). 'im2col' is one matmul per conv. Winograd is float32
  # only; in bfloat16 it computes as im2col.
  config.model.conv_impl = "auto"

  # Optimisation: PyTorch Adam with coupled L2 `weight_decay` (not AdamW), per-epoch LR schedule.
  config.batch_size = 210                      # global batch; per device = batch_size / devices
  config.eval_batch_size = 1024                # padded and masked: no test window is dropped
  config.learning_rate = 1e-3
  config.weight_decay = 1e-3
  config.lr_schedule = "exponential"           # 'constant' | 'exponential' (ExponentialLR) | 'step' (StepLR)
  config.lr_decay_rate = 0.9                   # gamma
  config.lr_step_epochs = 1                    # StepLR step_size, in epochs
  config.num_epochs = 500
  config.steps_per_epoch = -1                  # -1: every full batch of the train split
  config.seed = 0
  # Matmul and conv precision of the steps: 'highest' is full float32; 'high' and 'default'
  # let GPUs use TF32 (TPUs: 3 or 1 bfloat16 passes). 'default' leaves JAX's own setting.
  config.matmul_precision = "default"

  # Running.
  config.parallelism = "pmap"                  # 'pmap' | 'shard_map' (the same per-device step)
  config.log_every_steps = 20
  # Train steps per device call (one lax loop gathers and runs them); 0: auto, per backend
  # (train.STEPS_PER_CALL). Any value computes the same steps, bit for bit.
  config.steps_per_call = 0
  config.checkpoint_every_steps = 0            # N > 0: also checkpoint every N steps
  # Epoch ends checkpoint once this many seconds have passed since the last save (0: every
  # epoch); the last step always does. A kill loses at most about this much training.
  config.checkpoint_every_seconds = 60.0
  config.max_checkpoints_to_keep = 2
  # N > 0: a jax.profiler trace of N train steps (after the first, which compiles) in
  # <workdir>/tensorboard/plugins/profile, for TensorBoard's profile tab or Perfetto.
  config.profile_steps = 0
  # Evaluators added to the protocol's (danhar_jax/evaluators.py: classification on the test and
  # validation splits, per_subject on the test split, every epoch), each a name (on the test
  # split, every epoch) or (name, split, every N epochs), e.g. ('localization', 'test', 5).
  # 'localization' needs each window's target segment, as the `weakly` dataset has.
  config.evaluators = ()
  return config


def finalize(config, arg, settings, options=None):
  """Applies the variant named in `arg` with its `settings[variant]`, its `options`, then `quick`.

  `settings` maps 'cnn' | 'resnet' | 'danhar' to the training fields of that model file
  (batch_size, learning_rate, weight_decay, lr_schedule, lr_decay_rate, lr_step_epochs) and
  `logit_standardization`, which goes to `config.model`. Att-CNN and the Table VII ablation
  variants train as the DanHAR file. `options` maps a dataset's own argument names (e.g.
  OPPORTUNITY's `challenge`) to the top-level fields they set; they combine with any variant.
  """
  tokens = [t.strip() for t in (arg or "").split(",") if t.strip()]
  options = options or {}
  valid = [*VARIANTS, *options, "quick"]
  unknown = [t for t in tokens if t not in valid]
  if unknown:
    raise ValueError(f"Unknown config argument(s) {unknown}; valid: {', '.join(valid)}.")
  variants = [t for t in tokens if t in VARIANTS] or ["danhar"]
  if len(variants) > 1:
    raise ValueError(f"Choose one model variant, not {variants}.")
  variant = variants[0]
  config.model.update(VARIANTS[variant])
  trained_as = variant if variant in ("cnn", "resnet") else "danhar"
  trained = dict(settings[trained_as])
  config.model.logit_standardization = trained.pop("logit_standardization")
  config.update(trained)
  for token in tokens:
    config.update(options.get(token, {}))
  if "quick" in tokens:
    config.batch_size = 32
    config.eval_batch_size = 256
    config.num_epochs = 2
    config.steps_per_epoch = 3
    config.log_every_steps = 1
    config.checkpoint_every_seconds = 0.0
  return config
