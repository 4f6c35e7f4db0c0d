"""DatasetBuilderTestCase over dummy_data/ (SYNTHETIC raw files, see make_dummy_data.py).

tfds.testing needs TensorFlow, which only the optional `tfds-cli` extra installs, so without it
this module is skipped; tests/test_weakly.py covers the same builds TF-free.
"""

import pytest

pytest.importorskip("tensorflow")

# pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow_datasets as tfds

from tfds_builders import _testing
from tfds_builders.weakly import weakly_dataset_builder
# pylint: enable=g-import-not-at-top,wrong-import-position


class _WeaklyTest(_testing.BuilderTestCase):
  DATASET_CLASS = weakly_dataset_builder.Builder
  SKIP_CHECKSUMS = True  # the raw files come from manual_dir; nothing is downloaded


class WeaklyWisdm2019Test(_WeaklyTest):
  # One train subject (1600) and one test subject (1610), 64 windows of each of 4 classes.
  # The dummy walking runs (1100 samples) are too short for wisdm2019_2048.
  BUILDER_CONFIG_NAMES_TO_TEST = ["wisdm2019"]
  SPLITS = {"train": 256, "test": 256}


class WeaklyWisdmTest(_WeaklyTest):
  # One train user (7) and one test user (31), 64 windows of each of 3 classes.
  BUILDER_CONFIG_NAMES_TO_TEST = ["wisdm"]
  SPLITS = {"train": 192, "test": 192}


del _WeaklyTest  # not a test on its own

if __name__ == "__main__":
  tfds.testing.test_main()
