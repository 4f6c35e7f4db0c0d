"""UniMiB SHAR builder: the real label files, the reshape, the split and errors, without TensorFlow.

The real acc_labels.mat and acc_names.mat come from shared/data; acc_data.mat is not available,
so the data is SYNTHETIC: the 20-row fixture of tfds_builders/unimib_shar/dummy_data (written by
its make_dummy_data.py) and, for the full-size build, an 11,771-row acc_data.mat written here.
"""

import os
import pathlib
import shutil
import time

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from tfds_builders import _common
from tfds_builders import downloads
from tfds_builders.unimib_shar import make_dummy_data as fixture
from tfds_builders.unimib_shar import unimib_shar_dataset_builder as unimib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_DATA = SHARED_DATA / "unimib_shar" / "UniMiB-SHAR" / "data"
DUMMY = ROOT / "tfds_builders" / "unimib_shar" / "dummy_data"
DUMMY_DATA = DUMMY / "UniMiB-SHAR" / "data"

ROWS = 11771
CLASS_COUNTS = [153, 216, 1738, 1985, 921, 746, 1324, 296, 200,  # 9 ADLs: 7579
                529, 511, 526, 661, 484, 434, 513, 534]  # 8 falls: 4192
SHORT_NAMES = ["StandingUpFS", "StandingUpFL", "Walking", "Running", "GoingUpS", "Jumping",
               "GoingDownS", "LyingDownFS", "SittingDown", "FallingForw", "FallingRight",
               "FallingBack", "HittingObstacle", "FallingWithPS", "FallingBackSC", "Syncope",
               "FallingLeft"]


@pytest.fixture
def real_data():
  if not (REAL_DATA / "acc_labels.mat").exists():
    pytest.skip(f"real UniMiB SHAR label files not found in {REAL_DATA}")
  return REAL_DATA


def build(manual_dir, data_dir):
  builder = unimib.Builder(data_dir=os.fspath(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
  return tfds.data_source("unimib_shar", data_dir=os.fspath(data_dir))


def all_examples(source, split):
  return [source[split][i] for i in range(len(source[split]))]


# ---------------------------------------------------------------------------------------------
# The real label files.


def test_real_labels(real_data):
  labels = unimib.load_mat(real_data / "acc_labels.mat", "acc_labels")
  assert labels.shape == (ROWS, 3) and labels.dtype == np.uint8
  assert np.bincount(labels[:, 0], minlength=18)[1:].tolist() == CLASS_COUNTS
  assert sum(CLASS_COUNTS[:9]) == 7579 and sum(CLASS_COUNTS[9:]) == 4192
  assert (labels[:, 1].min(), labels[:, 1].max()) == (1, 30)
  assert len(np.unique(labels[:, 1])) == 30
  assert np.unique(labels[:, 2]).tolist() == [1, 2, 3, 4, 5, 6]


def test_real_names(real_data):
  names = unimib.load_mat(real_data / "acc_names.mat", "acc_names")
  assert names.shape == (2, 17)
  assert tuple(unimib._cell_text(c) for c in names[0]) == unimib.CLASS_NAMES
  assert [unimib._cell_text(c) for c in names[1]] == SHORT_NAMES
  assert (DUMMY_DATA / "acc_names.mat").read_bytes() == (real_data / "acc_names.mat").read_bytes()


def test_full_size_build_on_real_labels(tmp_path, real_data):
  data = tmp_path / "manual" / "UniMiB-SHAR" / "data"
  data.mkdir(parents=True)
  for name in ("acc_labels.mat", "acc_names.mat"):
    shutil.copyfile(real_data / name, data / name)
  # SYNTHETIC acc_data.mat with the real row count (42.7 MB of float64).
  scipy.io.savemat(data / "acc_data.mat", {"acc_data": fixture.acc_data(ROWS)})
  source = build(tmp_path / "manual", tmp_path / "data")
  # 70/30 at random: test = ceil(0.3 * 11771) = ceil(3531.3) = 3532, train = 8239.
  assert (len(source["train"]), len(source["test"])) == (8239, 3532)
  rows = {split: np.array([e["row"] for e in all_examples(source, split)])
          for split in ("train", "test")}
  assert sorted(np.concatenate(list(rows.values())).tolist()) == list(range(ROWS))
  test_rows = np.flatnonzero(_common.random_test_mask(ROWS, 0.3, unimib.SPLIT_SEED))
  assert sorted(rows["test"].tolist()) == test_rows.tolist()
  labels = scipy.io.loadmat(real_data / "acc_labels.mat")["acc_labels"].astype(np.int64)
  counts = np.zeros(17, np.int64)
  for split in ("train", "test"):
    for e in all_examples(source, split)[:50]:
      row = int(e["row"])
      assert (e["label"] + 1, e["subject"], e["trial"]) == tuple(labels[row])
      np.testing.assert_allclose(e["signal"][5], [10 + row + 0.005, 20 + row + 0.005,
                                                  30 + row + 0.005], rtol=1e-6)
  for split in ("train", "test"):
    counts += np.bincount([labels[r, 0] - 1 for r in rows[split]], minlength=17)
  assert counts.tolist() == CLASS_COUNTS


# ---------------------------------------------------------------------------------------------
# The SYNTHETIC fixture.


def test_build_fixture(tmp_path):
  source = build(DUMMY, tmp_path / "data")
  # 20 rows: test = ceil(0.3 * 20) = 6, train = 14.
  assert (len(source["train"]), len(source["test"])) == (14, 6)
  for split in ("train", "test"):
    for e in all_examples(source, split):
      row = int(e["row"])
      assert e["signal"].dtype == np.float32 and e["signal"].shape == (151, 3)
      # Row = 151 x, 151 y, 151 z: sample t of axis a is 10 (a + 1) + row + t / 1000.
      t = np.arange(151)[:, None] / 1000
      np.testing.assert_allclose(e["signal"], 10.0 * np.arange(1, 4) + row + t, rtol=1e-6)
      assert (e["label"], e["subject"], e["trial"]) == (row % 17, row % 5 + 1, row % 2 + 1)
      # Where a pre-cut window lay in its recording is unknown, and said so.
      assert (e["recording"], e["start"]) == (-1, -1)
  info = tfds.builder("unimib_shar", data_dir=os.fspath(tmp_path / "data")).info
  assert info.features["label"].names == list(unimib.CLASS_NAMES)


def test_missing_raw_files_fail_fast_with_instructions(tmp_path, monkeypatch):
  monkeypatch.setenv(downloads.OFFLINE_ENV, "1")
  (tmp_path / "manual").mkdir()
  start = time.perf_counter()
  with pytest.raises(_common.MissingRawFilesError, match="acc_data.mat") as e:
    build(tmp_path / "manual", tmp_path / "data")
  assert time.perf_counter() - start < 10 and unimib.URL in str(e.value)


def test_real_tree_without_acc_data_names_it(tmp_path, real_data):
  with pytest.raises(_common.MissingRawFilesError) as e:
    build(real_data.parents[1], tmp_path / "data")
  assert "acc_data.mat" in str(e.value) and "acc_labels.mat" not in str(e.value)


# ---------------------------------------------------------------------------------------------
# Broken raw files.


@pytest.fixture
def data_dir(tmp_path):
  shutil.copytree(DUMMY_DATA, tmp_path / "data")
  return tmp_path / "data"


def test_row_count_mismatch_names_both_files(data_dir):
  scipy.io.savemat(data_dir / "acc_data.mat", {"acc_data": fixture.acc_data(19)})
  with pytest.raises(_common.RawFormatError) as e:
    unimib.load(data_dir)
  message = str(e.value)
  assert message.startswith(f"{data_dir / 'acc_data.mat'}: acc_data has 19 rows")
  assert f"{data_dir / 'acc_labels.mat'} has 20" in message


@pytest.mark.parametrize("damage", [
    lambda b: b[:len(b) // 2],  # truncated
    lambda b: b"\x00" * 300,  # garbage
    lambda b: b"",  # empty
    lambda b: b[:128] + bytes(x ^ 0x5A for x in b[128:]),  # damaged compressed stream
])
def test_corrupt_mat_names_the_file(data_dir, damage):
  path = data_dir / "acc_data.mat"
  path.write_bytes(damage(path.read_bytes()))
  with pytest.raises(_common.RawFormatError, match=f"{path}: not a readable MATLAB v5"):
    unimib.load(data_dir)


def test_matlab_73_file_names_the_file(data_dir):
  path = data_dir / "acc_labels.mat"
  header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5"
  path.write_bytes(header.ljust(116) + b"\x00" * 8 + b"\x00\x02IM" + b"\x00" * 400)
  with pytest.raises(_common.RawFormatError, match=f"{path}: not a readable MATLAB v5"):
    unimib.load(data_dir)


def test_bad_contents(data_dir):
  scipy.io.savemat(data_dir / "acc_data.mat", {"x": fixture.acc_data(20)})
  with pytest.raises(_common.RawFormatError, match=r"acc_data.mat: no variable 'acc_data' \(found"):
    unimib.load(data_dir)
  scipy.io.savemat(data_dir / "acc_data.mat", {"acc_data": fixture.acc_data(20)[:, :452]})
  with pytest.raises(_common.RawFormatError, match=r"acc_data is \(20, 452\), expected"):
    unimib.load(data_dir)
  data = fixture.acc_data(20)
  data[7, 3] = np.nan
  scipy.io.savemat(data_dir / "acc_data.mat", {"acc_data": data})
  with pytest.raises(_common.RawFormatError, match=r"acc_data.mat:8: non-finite"):
    unimib.load(data_dir)
  scipy.io.savemat(data_dir / "acc_data.mat", {"acc_data": fixture.acc_data(20)})
  labels = fixture.acc_labels(20)
  labels[4, 0] = 18
  scipy.io.savemat(data_dir / "acc_labels.mat", {"acc_labels": labels})
  with pytest.raises(_common.RawFormatError, match="acc_labels row 5: class 18 is outside 1..17"):
    unimib.load(data_dir)
  shutil.copyfile(DUMMY_DATA / "acc_labels.mat", data_dir / "acc_labels.mat")
  names = np.empty((2, 17), object)
  names[:] = "x"
  scipy.io.savemat(data_dir / "acc_names.mat", {"acc_names": names})
  with pytest.raises(_common.RawFormatError, match="acc_names.mat: acc_names"):
    unimib.load(data_dir)
  (data_dir / "acc_names.mat").unlink()
  with pytest.raises(_common.MissingRawFilesError, match="acc_names.mat"):
    unimib.load(data_dir)
