r"""Weakly labeled HAR (the paper's §4.6): one target activity hidden in a long walking window.

Run (DanHAR, the authors' settings, 500 epochs), then look at where it attends:

  python main.py --config=configs/weakly.py --workdir=runs/weakly_danhar \
      --config.manual_dir=/path/to/wisdm_2019
  python main.py --config=configs/weakly.py --workdir=runs/weakly_danhar --mode=figures

The authors' weakly labeled data (50 Hz iPhone acceleration, 2048×3 windows, 4 classes) is private.
`tfds_builders/weakly` composes windows anyone can rebuild from real WISDM-2019 smartwatch data:
1024 samples (51 s at 20 Hz) of the subject's own walking with one 128–256-sample target segment
(jogging, stairs, kicking or dribbling) blended in at a seeded random position; train and test
subjects are disjoint. Its card says how this differs from the paper's data. Every evaluation also
scores localisation (pointing accuracy, IoU against the true segment, next to uniform and
random-position baselines) into eval_metrics.jsonl.

The model keeps the authors' widths (64/128/256) and kernels; the input is (1024, 6) here. Their
parameter counts use (2048, 3): `--mode=summary --config.input_shape='(2048,3)'` prints 995,818.

The paper's Table VI (its private data; test accuracy %): Standard CNN 89.86, Att-based CNN
93.62, Residual Network 90.93, DanHAR 94.86. DanHAR gains +5.00 points over the CNN and +3.93
over the ResNet; the Att-CNN +3.76 over the CNN. Its Table V counts (76,157 windows) do not match
the arrays the authors released (8,380 train, 713 test). Our windows are rebuilt from WISDM-2019,
so these numbers are a reference, not a target. The CNN file lacks the logit LayerNorm.
The paper does not say whether it reports the best or the last epoch: eval_metrics.jsonl carries
both (`accuracy`, and `best_accuracy` at `best_epoch`).
Expected run time: 521 MFLOP per window forward.

Settings per model file: CNN batch 200, Adam 1e-3, no L2, ExponentialLR 0.9; ResNet no L2,
StepLR(50, 0.1); DanHAR L2 1e-5 and a constant LR (its StepLR is created but never stepped).
"""

from configs import default

SETTINGS = {
    "cnn": dict(batch_size=200, learning_rate=1e-3, weight_decay=0.0,
                lr_schedule="exponential", lr_decay_rate=0.9, lr_step_epochs=1,
                logit_standardization=False),
    "resnet": dict(batch_size=200, learning_rate=1e-3, weight_decay=0.0,
                   lr_schedule="step", lr_decay_rate=0.1, lr_step_epochs=50,
                   logit_standardization=True),
    "danhar": dict(batch_size=200, learning_rate=1e-3, weight_decay=1e-5,
                   lr_schedule="constant", lr_decay_rate=1.0, lr_step_epochs=1,
                   logit_standardization=True),
}


def get_config(arg=None):
  config = default.get_config()
  config.dataset = "weakly/wisdm2019"
  config.input_shape = (1024, 6)
  config.num_classes = 4
  config.model.widths = (64, 128, 256)
  config.model.kernel, config.model.strides, config.model.padding = 6, (3, 3, 3), 1
  config.model.temporal_kernel = (7, 7)
  config.evaluators = ("localization",)
  return default.finalize(config, arg, SETTINGS)
