r"""Localisation scores of an *untrained* DanHAR on the weakly test split: a third baseline.

Uniform attention and a randomly placed box say what chance gives. This says what the
architecture gives before any training: the temporal-attention maps at initialisation (seeds 0-2,
the trainer's own init) scored by the same rules as eval_metrics.jsonl.

  python -m experiments.untrained_localization --manual_dir=/path/to/wisdm_2019
"""

import argparse
import json
import pathlib
import sys

if not __package__:  # run as a file, the packages are not importable
  sys.exit("run it from the repository root as: python -m experiments.untrained_localization")

from configs import weakly  # pylint: disable=g-import-not-at-top,wrong-import-position
from danhar_jax import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from danhar_jax import localization  # pylint: disable=g-import-not-at-top,wrong-import-position
from danhar_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from danhar_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parents[1]

KEYS = ("loc_pointing", "loc_iou", "loc_pointing_block1", "loc_iou_block1", "loc_pointing_blocks",
        "loc_iou_blocks")


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--manual_dir", default=str(ROOT.parent / "shared" / "data" / "wisdm_2019"))
  p.add_argument("--test_subjects", default="1608,1609,1610,1611")
  p.add_argument("--seeds", default="0,1,2")
  args = p.parse_args()
  config = weakly.get_config("danhar")
  config.manual_dir, config.test_subjects = args.manual_dir, args.test_subjects
  test, _ = input_pipeline.load_test(config)
  for seed in (int(s) for s in args.seeds.split(",")):
    config.seed = seed
    state = train.create_train_state(config, models.create_model(config), steps_per_epoch=1)
    scores = localization.evaluate(state, test["signal"], *localization.test_segments(test),
                                   config)
    print(json.dumps({"seed": seed, **{k: round(scores[k], 3) for k in KEYS}}), flush=True)


if __name__ == "__main__":
  main()
