r"""UniMiB SHAR (Micucci et al. 2017): 17 ADL and fall classes, 151×3 windows of phone acceleration.

Run (DanHAR, the authors' settings, 500 epochs):

  python main.py --config=configs/unimib_shar.py --workdir=runs/unimib_danhar \
      --config.manual_dir=/path/holding/UniMiB-SHAR.zip/or/its/tree

The builder (tfds_builders/unimib_shar) reads `acc_data.mat` (11,771 rows of 151 x ‖ 151 y ‖ 151 z)
and makes a fixed-seed 70/30 random split. Subjects (1–30) are kept, so
`--config.test_subjects=...` gives a subject-wise protocol.

The paper's Table II (test accuracy %): Standard CNN 74.83, Att-based CNN 76.07, Residual Network
77.12, DanHAR 79.03. DanHAR gains +4.20 points over the CNN and +1.91 over the ResNet; the Att-CNN
+1.24 over the CNN. (Its ResNet's "2.38 M" parameters are 2.37 M at 2^20.) The CNN file lacks the
logit LayerNorm that the others have. The paper's batch is 128; the code's is 200, which we follow.
The paper does not say whether it reports the best or the last epoch: eval_metrics.jsonl carries
both (`accuracy`, and `best_accuracy` at `best_epoch`).
Expected run time: 215 MFLOP per window forward, ~8.2k training windows: a few TFLOP per epoch.

Settings per model file: CNN batch 200, Adam 1e-3, no L2, constant LR; ResNet L2 1e-5,
StepLR(30, 0.1); DanHAR L2 1e-4, StepLR(50, 0.1). Strides are 2, 3, 2.
"""

from configs import default

SETTINGS = {
    "cnn": dict(batch_size=200, learning_rate=1e-3, weight_decay=0.0,
                lr_schedule="constant", lr_decay_rate=1.0, lr_step_epochs=1,
                logit_standardization=False),
    "resnet": dict(batch_size=200, learning_rate=1e-3, weight_decay=1e-5,
                   lr_schedule="step", lr_decay_rate=0.1, lr_step_epochs=30,
                   logit_standardization=True),
    "danhar": dict(batch_size=200, learning_rate=1e-3, weight_decay=1e-4,
                   lr_schedule="step", lr_decay_rate=0.1, lr_step_epochs=50,
                   logit_standardization=True),
}


def get_config(arg=None):
  config = default.get_config()
  config.dataset = "unimib_shar"
  config.input_shape = (151, 3)
  config.num_classes = 17
  config.model.kernel, config.model.strides, config.model.padding = 6, (2, 3, 2), 1
  config.model.temporal_kernel = (9, 9)
  return default.finalize(config, arg, SETTINGS)
