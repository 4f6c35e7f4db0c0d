r"""OPPORTUNITY (Roggen et al. 2010): gestures from 113 body-worn channels, 64-sample windows.

Run (DanHAR, the authors' settings, 500 epochs):

  python main.py --config=configs/opportunity.py --workdir=runs/opp_danhar \
      --config.manual_dir=/path/holding/OpportunityUCIDataset.zip/or/its/tree

Layout, faithful to the authors: they feed each window as 64 time steps in the *channel* position
(`(N, 64, 107, 1)`, `Conv2d(in_channels=64, ...)`), so the (3,1) convs slide along the feature axis
and "temporal" attention in fact attends over features. `model.time_as_channels=True` reproduces
that, and it is the default here. Set it to False for the conventional time-major layout.

Data: the builder (tfds_builders/opportunity) follows the OPPORTUNITY challenge protocol used by
DeepConvLSTM: 113 channels, ML_Both_Arms gestures, test runs S2/S3-ADL4,5, 64-sample windows with
step 8. By default the task is the paper's Table IV: its 17 gestures without Null (builder config
`gestures17`, which drops windows labelled Null, 72% of the samples). `:challenge` is the 18-class
task with Null that DeepConvLSTM and most of the literature report (`opportunity/challenge`):

  --config=configs/opportunity.py:challenge        (combines: `:cnn,challenge`)

The authors' own 107-channel files were made by an unpublished script, so `input_shape` here is
(64, 113). The paper's parameter counts use (64, 107):
`--mode=summary --config.input_shape="(64,107)"` prints them (1,650,999 for DanHAR).

The paper's Table IV (17 classes on the authors' 107 features; test accuracy %): Standard CNN
77.53, Att-based CNN 80.42, Residual Network 82.05, DanHAR 82.75. DanHAR gains +5.22 points over
the CNN and +0.70 over the ResNet; the Att-CNN +2.89 over the CNN. Here every file, the CNN's
too, has the logit LayerNorm. Our 113 channels are not their 107: expect close, not equal, numbers.
The paper does not say whether it reports the best or the last epoch: eval_metrics.jsonl carries
both (`accuracy`, and `best_accuracy` at `best_epoch`).
Expected run time: 61 MFLOP per window forward; ~70k training windows with Null (`:challenge`),
about a quarter of that without: about 13 or 3–4 TFLOP per epoch.

Settings per model file: CNN batch 300, Adam 1e-3, L2 1e-3, constant LR; ResNet L2 1e-5,
StepLR(30, 0.1); DanHAR L2 1e-4, ExponentialLR 0.9. The paper says lr 1e-4, ×0.1 every 50 epochs.
"""

from configs import default

SETTINGS = {
    "cnn": dict(batch_size=300, learning_rate=1e-3, weight_decay=1e-3,
                lr_schedule="constant", lr_decay_rate=1.0, lr_step_epochs=1,
                logit_standardization=True),
    "resnet": dict(batch_size=300, learning_rate=1e-3, weight_decay=1e-5,
                   lr_schedule="step", lr_decay_rate=0.1, lr_step_epochs=30,
                   logit_standardization=True),
    "danhar": dict(batch_size=300, learning_rate=1e-3, weight_decay=1e-4,
                   lr_schedule="exponential", lr_decay_rate=0.9, lr_step_epochs=1,
                   logit_standardization=True),
}

# `:challenge`: the OPPORTUNITY challenge's gesture task, Null kept as an 18th class.
OPTIONS = {"challenge": dict(dataset="opportunity/challenge", num_classes=18)}


def get_config(arg=None):
  config = default.get_config()
  config.dataset = "opportunity/gestures17"
  config.input_shape = (64, 113)
  config.num_classes = 17
  config.model.kernel, config.model.kernel2 = 3, 3
  config.model.strides, config.model.padding = (2, 2, 2), 1
  config.model.temporal_kernel = (7, 7)
  config.model.time_as_channels = True
  return default.finalize(config, arg, SETTINGS, OPTIONS)
