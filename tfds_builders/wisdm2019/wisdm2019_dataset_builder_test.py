"""DatasetBuilderTestCase over dummy_data/ (raw watch files with an offset, a gap and a burst).

tfds.testing needs TensorFlow, which only the optional `tfds-cli` extra installs, so without it
this module is skipped; tests/test_wisdm_builders.py covers the same build TF-free.
"""

import pytest

pytest.importorskip("tensorflow")

# pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow_datasets as tfds

from tfds_builders import _testing
from tfds_builders.wisdm2019 import wisdm2019_dataset_builder
# pylint: enable=g-import-not-at-top,wrong-import-position


class Wisdm2019Test(_testing.BuilderTestCase):
  DATASET_CLASS = wisdm2019_dataset_builder.Builder
  # Subject 1600: 4 windows of walking, 1 + 2 of jogging (split by a 300 ms accelerometer gap);
  # subject 1610 (a test subject): 3 windows of walking.
  SPLITS = {"train": 7, "test": 3}


if __name__ == "__main__":
  tfds.testing.test_main()
