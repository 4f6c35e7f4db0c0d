"""The split protocols through `input_pipeline.open_split_set`, on the real WISDM-2019 watch data.

WISDM-2019's builder splits by subject, so its own split shares no samples between train and
test; the paper's protocol (random 70/30 of 50%-overlapping windows) makes most test windows
share samples with a training window, and the gap protocol none. Each count is checked against
a brute-force comparison of every (train, test) pair.
"""

import hashlib
import logging
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import wisdm2019 as wisdm2019_config
from danhar_jax import input_pipeline
from tests.conftest import SHARED_DATA
from tfds_builders.wisdm2019 import wisdm2019_dataset_builder as wisdm2019

REAL = SHARED_DATA / "wisdm_2019"
DUMMY = pathlib.Path(wisdm2019.__file__).parent / "dummy_data"
needs_real = pytest.mark.skipif(not (REAL / "wisdm-dataset").exists(),
                                reason=f"real WISDM-2019 data not staged at {REAL}")
# sha256 of every record's signal, label, subject and start, train then test in record order,
# as builder 1.0.0 wrote them from the 12 staged subjects: 1.1.0 only adds `recording`.
FINGERPRINT_1_0_0 = "8eb3a3c93fe419782d449448d8f425d423b08794524cb0d1e62058b0e10022d7"
TEST_SUBJECTS = "1608,1609,1610,1611"


def config_for(data_dir, manual_dir, **fields):
  config = wisdm2019_config.get_config()
  config.data_dir, config.manual_dir = str(data_dir), str(manual_dir)
  config.update(fields)
  return config


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory):
  if not (REAL / "wisdm-dataset").exists():
    pytest.skip(f"real WISDM-2019 data not staged at {REAL}")
  data_dir = tmp_path_factory.mktemp("wisdm2019_real")
  input_pipeline.prepare(config_for(data_dir, REAL))  # about 5 s
  return data_dir


def positions(split):
  return split.read(np.arange(len(split)), features=input_pipeline.POSITION_FEATURES)


def brute_force_overlap(train, test, length=wisdm2019.WINDOW) -> int:
  """Test windows sharing samples with a training window, every pair compared."""
  count = 0
  for recording in np.unique(test["recording"]):
    t = test["start"][test["recording"] == recording]
    r = train["start"][train["recording"] == recording]
    count += int((np.abs(t[:, None] - r[None, :]) < length).any(axis=1).sum()) if len(r) else 0
  return count


def fingerprint(splits) -> str:
  h = hashlib.sha256()
  for split in splits:
    r = split.read(np.arange(len(split)), features=("signal", "label", "subject", "start"))
    for k in ("signal", "label", "subject", "start"):
      h.update(np.ascontiguousarray(r[k]).astype(r[k].dtype.newbyteorder("<")).tobytes())
  return h.hexdigest()


@needs_real
def test_default_is_the_previous_versions_split_in_the_same_order(real_dir):
  for test_subjects in ("", "1600,1611"):
    config = config_for(real_dir, REAL, test_subjects=test_subjects)
    split_set = input_pipeline.open_split_set(config)
    train, test, names = input_pipeline.open_splits(config)
    assert split_set.validation is None and split_set.class_names == names
    for got, want in ((split_set.train, train), (split_set.test, test)):
      assert [len(r) for _, r in got.parts] == [len(r) for _, r in want.parts]
      for (_, rg), (_, rw) in zip(got.parts, want.parts):
        np.testing.assert_array_equal(rg, rw)
  split_set = input_pipeline.open_split_set(config_for(real_dir, REAL))
  assert (len(split_set.train), len(split_set.test)) == (4893, 2417)
  assert fingerprint((split_set.train, split_set.test)) == FINGERPRINT_1_0_0
  # The model's arrays hold no positions.
  assert set(split_set.train.read([0])) == {"signal", "label", "subject"}
  assert split_set.audit["test_windows_overlapping_train"] == 0  # a subject split


@needs_real
def test_random_windows_leaks_and_the_gap_and_subjects_do_not(real_dir, caplog):
  audits = {}
  with caplog.at_level(logging.INFO):
    for split, subjects in (("random_windows", ""), ("random_windows_gap", ""),
                            ("subjects", TEST_SUBJECTS)):
      split_set = input_pipeline.open_split_set(
          config_for(real_dir, REAL, split=split, test_subjects=subjects))
      train, test = positions(split_set.train), positions(split_set.test)
      audit = audits[split] = split_set.audit
      assert audit["test_windows"] == len(split_set.test)
      assert audit["test_windows_overlapping_train"] == brute_force_overlap(train, test)
      print(split, {k: v for k, v in audit.items() if k != "split"})
  leaky, gap = audits["random_windows"], audits["random_windows_gap"]
  # ceil(0.3 * 7,310) test windows, most of them next to a training window.
  assert leaky["test_windows"] == gap["test_windows"] == 2193
  assert leaky["test_windows_overlapping_train"] > 0.8 * leaky["test_windows"]
  assert gap["test_windows_overlapping_train"] == 0
  assert gap["removed_from_train"] > 0
  assert gap["train_windows"] + gap["removed_from_train"] == leaky["train_windows"]
  assert audits["subjects"]["test_windows_overlapping_train"] == 0
  assert audits["subjects"]["test_windows"] == 2417
  logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Split ")]
  assert len(logged) == 3 and "random_windows_gap" in logged[1]


@needs_real
def test_validation_splits_on_real_subjects(real_dir):
  config = config_for(real_dir, REAL, split="subjects", test_subjects=TEST_SUBJECTS,
                      validation_fraction=0.25)
  split_set = input_pipeline.open_split_set(config)
  subjects = {name: set(positions(getattr(split_set, name))["subject"].tolist())
              for name in ("train", "validation", "test")}
  assert len(subjects["validation"]) == 2  # round(0.25 * 8 training subjects)
  assert not subjects["validation"] & (subjects["train"] | subjects["test"])
  config = config_for(real_dir, REAL, split="random_windows", validation_fraction=0.1)
  split_set = input_pipeline.open_split_set(config)
  assert split_set.audit["test_windows_overlapping_validation"] == 0
  assert brute_force_overlap(positions(split_set.validation), positions(split_set.test)) == 0


@needs_real
@pytest.mark.parametrize("fields, message", [
    (dict(validation_subjects="1608"), r"validation_subjects \[1608\] are also test subjects"),
    (dict(validation_subjects="1700"), r"validation_subjects \[1700\] are not in the dataset; "
     r"its subjects are \[1600, 1601"),
    (dict(validation_subjects=",".join(map(str, range(1600, 1608)))), r"leaves 0 training"),
    (dict(validation_fraction=0.2, batch_size=5000), r"fewer than one batch"),
    (dict(split="subjects"), r"split='subjects' needs config.test_subjects"),
])
def test_bad_protocols_name_the_field(real_dir, fields, message):
  with pytest.raises(ValueError, match=message) as error:
    input_pipeline.open_split_set(config_for(real_dir, REAL, **fields))
  assert "\n" not in str(error.value)


class Wisdm2019Before(wisdm2019.Builder, skip_registration=True):
  """wisdm2019 as builder 1.0.0 wrote it: the same windows, without `recording`."""

  name = "wisdm2019"
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def _info(self):
    features = dict(super()._info().features)
    del features["recording"]
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(features),
                                          supervised_keys=("signal", "label"))

  def _generate_examples(self, *args):
    for key, example in super()._generate_examples(*args):
      del example["recording"]
      yield key, example


def test_a_dataset_prepared_by_the_previous_version_loads_until_a_protocol_needs_positions(
    tmp_path):
  Wisdm2019Before(data_dir=str(tmp_path), file_format="array_record").download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(DUMMY)))
  config = config_for(tmp_path, "")
  split_set = input_pipeline.open_split_set(config)  # read, not rebuilt
  assert (len(split_set.train), len(split_set.test)) == (7, 3)
  assert split_set.audit["test_windows_overlapping_train"] == "unknown"
  assert not (tmp_path / "wisdm2019" / str(wisdm2019.Builder.VERSION)).exists()
  config.split = "random_windows"  # the paper's protocol runs; only its audit is unknown
  assert input_pipeline.open_split_set(config).audit["test_windows_overlapping_train"] == (
      "unknown")
  config.split = "random_windows_gap"
  with pytest.raises(ValueError, match=r"random_windows_gap' needs each window's recording "
                     r"and start, which wisdm2019 1.0.0 .* lacks: rebuild it with "
                     r"`python -m tfds_builders build wisdm2019 --data_dir=") as error:
    input_pipeline.open_split_set(config)
  assert "\n" not in str(error.value)
