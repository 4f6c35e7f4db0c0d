"""TFDS's own `DatasetBuilderTestCase`, set up for these builders. Needs TensorFlow.

Import it only after `pytest.importorskip("tensorflow")`, and subclass it as
`_testing.BuilderTestCase` so that pytest does not collect the base class itself.
"""

import tensorflow_datasets as tfds


class BuilderTestCase(tfds.testing.DatasetBuilderTestCase):
  SKIP_TF1_GRAPH_MODE = True

  def _make_builder(self, config=None):
    # The test reads back with as_dataset (tf.data), which reads tfrecord; the builders' own
    # default is array_record, which only tfds.data_source reads.
    return self.dataset_class(data_dir=self.tmp_dir, config=config, version=self.VERSION,
                              file_format="tfrecord")
