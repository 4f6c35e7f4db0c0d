"""A workdir holding a checkpoint as training writes it, made without training (seconds, no data).

The variables are the model's initial ones: predict and export only need a checkpoint to load.
"""

import json
import os


from configs import wisdm


def tiny_config(dataset_config=wisdm, arg="quick"):
  config = dataset_config.get_config(arg)
  config.model.widths = (16, 16, 16)
  return config


def make(workdir, config=None, step=3, metrics=None):
  from danhar_jax import checkpoints, models, train
  config = config or tiny_config()
  model = models.create_model(config)
  state = train.create_train_state(config, model, steps_per_epoch=1)
  os.makedirs(workdir, exist_ok=True)
  mngr = checkpoints.manager(str(workdir), config.max_checkpoints_to_keep)
  checkpoints.save(mngr, step, state, {**config.to_dict(), "resolved": {"conv_impl": "im2col"}},
                   {"seed": 0, "epoch": 1, "step_in_epoch": 0,
                    "global_batch": config.batch_size, "steps_per_epoch": step})
  mngr.wait_until_finished()
  mngr.close()
  record = {"epoch": 1, "step": step, "accuracy": 0.5, "macro_f1": 0.25, "confusion": [[1]],
            **(metrics or {})}
  with open(os.path.join(workdir, "eval_metrics.jsonl"), "w") as f:
    f.write(json.dumps(record) + "\n")
  return workdir
