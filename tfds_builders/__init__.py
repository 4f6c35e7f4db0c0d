"""TFDS builders for the DanHAR datasets.

Importing this package registers all six with TFDS, so that after `import tfds_builders`,
`tfds.builder('wisdm')` and `tfds.data_source('wisdm')` find them by name (TFDS registers a
builder class when its module is imported).
"""

from tfds_builders.opportunity import opportunity_dataset_builder  # noqa: F401
from tfds_builders.pamap2 import pamap2_dataset_builder  # noqa: F401
from tfds_builders.unimib_shar import unimib_shar_dataset_builder  # noqa: F401
from tfds_builders.weakly import weakly_dataset_builder  # noqa: F401
from tfds_builders.wisdm import wisdm_dataset_builder  # noqa: F401
from tfds_builders.wisdm2019 import wisdm2019_dataset_builder  # noqa: F401

NAMES = ("wisdm", "wisdm2019", "pamap2", "unimib_shar", "opportunity", "weakly")
