"""opportunity builder on dummy_data/ with TFDS's own test case (needs TensorFlow).

CI has no TensorFlow, so this skips there; tests/test_opportunity_builder.py covers the same
build without it.
"""

import pytest

pytest.importorskip("tensorflow")
# The imports below run only with TensorFlow installed.

import tensorflow_datasets as tfds

from tfds_builders import _testing
from tfds_builders.opportunity import opportunity_dataset_builder


class _TestCase(_testing.BuilderTestCase):
  """Builds dummy_data/ (SYNTHETIC raw files, see make_dummy_data.py) as the manual_dir."""

  DATASET_CLASS = opportunity_dataset_builder.Builder
  SKIP_CHECKSUMS = True  # the raw files come from manual_dir; nothing is downloaded


class ChallengeTest(_TestCase):
  BUILDER_CONFIG_NAMES_TO_TEST = ["challenge"]
  SPLITS = {"train": 7, "test": 3}


class Gestures17Test(_TestCase):
  # The same windows without the Null ones: one train and two test windows end on Null.
  BUILDER_CONFIG_NAMES_TO_TEST = ["gestures17"]
  SPLITS = {"train": 6, "test": 1}


del _TestCase  # not a test on its own


if __name__ == "__main__":
  tfds.testing.test_main()
