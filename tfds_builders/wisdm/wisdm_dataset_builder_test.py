"""DatasetBuilderTestCase over dummy_data/ (the raw format, with every quirk of the real file).

tfds.testing needs TensorFlow, which only the optional `tfds-cli` extra installs, so without it
this module is skipped; tests/test_wisdm_builders.py covers the same builds TF-free.
"""

import pytest

pytest.importorskip("tensorflow")

# pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow_datasets as tfds

from tfds_builders import _testing
from tfds_builders.wisdm import wisdm_dataset_builder
# pylint: enable=g-import-not-at-top,wrong-import-position


class _TestCase(_testing.BuilderTestCase):
  DATASET_CLASS = wisdm_dataset_builder.Builder


class RandomSplitTest(_TestCase):
  # 1,150 records -> the authors' range(0, 950, 100): 10 windows, ceil(0.3 * 10) = 3 test.
  BUILDER_CONFIG_NAMES_TO_TEST = ["random_split"]
  SPLITS = {"train": 7, "test": 3}


class SubjectRunsTest(_TestCase):
  # Runs of 350, 250 (user 7) and 300, 250 (user 31) records: 2 + 1 train, 2 + 1 test windows.
  BUILDER_CONFIG_NAMES_TO_TEST = ["subject_runs"]
  SPLITS = {"train": 3, "test": 3}


del _TestCase  # not a test on its own

if __name__ == "__main__":
  tfds.testing.test_main()
