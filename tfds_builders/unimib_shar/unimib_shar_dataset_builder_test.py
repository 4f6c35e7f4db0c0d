"""unimib_shar builder on dummy_data/ with TFDS's own test case (needs TensorFlow).

CI has no TensorFlow, so this skips there; tests/test_unimib_builder.py covers the same
build without it.
"""

import pytest

pytest.importorskip("tensorflow")
# The imports below run only with TensorFlow installed.

import tensorflow_datasets as tfds

from tfds_builders import _testing
from tfds_builders.unimib_shar import unimib_shar_dataset_builder


class UnimibSharTest(_testing.BuilderTestCase):
  """Builds dummy_data/ (SYNTHETIC raw files, see make_dummy_data.py) as the manual_dir."""

  DATASET_CLASS = unimib_shar_dataset_builder.Builder
  SPLITS = {"train": 14, "test": 6}
  SKIP_CHECKSUMS = True  # the raw files come from manual_dir; nothing is downloaded


if __name__ == "__main__":
  tfds.testing.test_main()
