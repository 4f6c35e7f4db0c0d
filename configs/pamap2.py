r"""PAMAP2 (Reiss & Stricker 2012): 3 IMUs + heart rate, 40 channels at 33.3 Hz, 171×40 windows.

Run (DanHAR, the authors' settings, 500 epochs):

  python main.py --config=configs/pamap2.py --workdir=runs/pamap2_danhar \
      --config.manual_dir=/path/holding/the/PAMAP2/zip/or/PAMAP2_Dataset

The builder (tfds_builders/pamap2): heart rate plus, per IMU, temperature, acc ±16 g, acc ±6 g,
gyroscope and magnetometer (orientation dropped); 100 → 33.3 Hz; 171-sample windows with 78%
overlap; subjects 105 and 106 are the test split, as the paper says (after Hammerla et al.).
The authors' output layer is 18 wide; we map the 18 non-transient activity ids to 18 classes.

The paper's Table III (test accuracy %): Standard CNN 91.21, Att-based CNN 92.45, Residual Network
92.72, DanHAR 93.16. DanHAR gains +1.95 points over the CNN and +0.44 over the ResNet; the Att-CNN
+1.24 over the CNN. The paper's Fig. 13 error counts (93 for the ResNet, 75 for DanHAR) do not fit
these accuracies on the authors' 2,048 test windows. The CNN file lacks the logit LayerNorm that
the others have.
The paper does not say whether it reports the best or the last epoch: eval_metrics.jsonl carries
both (`accuracy`, and `best_accuracy` at `best_epoch`).
Expected run time: the largest model here, 1,728 MFLOP per window forward; ~5.6k training windows
(the authors' file) → about 29 TFLOP per epoch. Minutes per epoch on a small CPU; seconds on a GPU.

Settings per model file: CNN batch 300, Adam 5e-4, no L2, constant LR; ResNet and DanHAR L2 1e-3,
ExponentialLR 0.85.
"""

from configs import default

SETTINGS = {
    "cnn": dict(batch_size=300, learning_rate=5e-4, weight_decay=0.0,
                lr_schedule="constant", lr_decay_rate=1.0, lr_step_epochs=1,
                logit_standardization=False),
    "resnet": dict(batch_size=300, learning_rate=5e-4, weight_decay=1e-3,
                   lr_schedule="exponential", lr_decay_rate=0.85, lr_step_epochs=1,
                   logit_standardization=True),
    "danhar": dict(batch_size=300, learning_rate=5e-4, weight_decay=1e-3,
                   lr_schedule="exponential", lr_decay_rate=0.85, lr_step_epochs=1,
                   logit_standardization=True),
}


def get_config(arg=None):
  config = default.get_config()
  config.dataset = "pamap2"
  config.input_shape = (171, 40)
  config.num_classes = 18
  config.model.kernel, config.model.strides, config.model.padding = 6, (3, 3, 3), 1
  config.model.temporal_kernel = (7, 1)   # the only dataset where the code matches the paper's 7×1
  return default.finalize(config, arg, SETTINGS)
