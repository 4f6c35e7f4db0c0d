"""OPPORTUNITY builder: column selection and labels on the real description files, and builds.

Runs without TensorFlow. The real column_names.txt and label_legend.txt come from shared/data;
the .dat files are the SYNTHETIC fixtures of tfds_builders/opportunity/dummy_data (written by
its make_dummy_data.py), whose every value is a formula of (row, column).
"""

import os
import pathlib
import shutil
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders import _common
from tfds_builders import downloads
from tfds_builders.opportunity import make_dummy_data as fixture
from tfds_builders.opportunity import opportunity_dataset_builder as opp

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_DATASET = SHARED_DATA / "opportunity" / "OpportunityUCIDataset" / "dataset"
DUMMY = ROOT / "tfds_builders" / "opportunity" / "dummy_data"

# The 113 channels of the challenge protocol, in file order.
EXPECTED_CHANNELS = [
    "Accelerometer RKN^ accX", "Accelerometer RKN^ accY", "Accelerometer RKN^ accZ",
    "Accelerometer HIP accX", "Accelerometer HIP accY", "Accelerometer HIP accZ",
    "Accelerometer LUA^ accX", "Accelerometer LUA^ accY", "Accelerometer LUA^ accZ",
    "Accelerometer RUA_ accX", "Accelerometer RUA_ accY", "Accelerometer RUA_ accZ",
    "Accelerometer LH accX", "Accelerometer LH accY", "Accelerometer LH accZ",
    "Accelerometer BACK accX", "Accelerometer BACK accY", "Accelerometer BACK accZ",
    "Accelerometer RKN_ accX", "Accelerometer RKN_ accY", "Accelerometer RKN_ accZ",
    "Accelerometer RWR accX", "Accelerometer RWR accY", "Accelerometer RWR accZ",
    "Accelerometer RUA^ accX", "Accelerometer RUA^ accY", "Accelerometer RUA^ accZ",
    "Accelerometer LUA_ accX", "Accelerometer LUA_ accY", "Accelerometer LUA_ accZ",
    "Accelerometer LWR accX", "Accelerometer LWR accY", "Accelerometer LWR accZ",
    "Accelerometer RH accX", "Accelerometer RH accY", "Accelerometer RH accZ",
    "InertialMeasurementUnit BACK accX", "InertialMeasurementUnit BACK accY",
    "InertialMeasurementUnit BACK accZ", "InertialMeasurementUnit BACK gyroX",
    "InertialMeasurementUnit BACK gyroY", "InertialMeasurementUnit BACK gyroZ",
    "InertialMeasurementUnit BACK magneticX", "InertialMeasurementUnit BACK magneticY",
    "InertialMeasurementUnit BACK magneticZ",
    "InertialMeasurementUnit RUA accX", "InertialMeasurementUnit RUA accY",
    "InertialMeasurementUnit RUA accZ", "InertialMeasurementUnit RUA gyroX",
    "InertialMeasurementUnit RUA gyroY", "InertialMeasurementUnit RUA gyroZ",
    "InertialMeasurementUnit RUA magneticX", "InertialMeasurementUnit RUA magneticY",
    "InertialMeasurementUnit RUA magneticZ",
    "InertialMeasurementUnit RLA accX", "InertialMeasurementUnit RLA accY",
    "InertialMeasurementUnit RLA accZ", "InertialMeasurementUnit RLA gyroX",
    "InertialMeasurementUnit RLA gyroY", "InertialMeasurementUnit RLA gyroZ",
    "InertialMeasurementUnit RLA magneticX", "InertialMeasurementUnit RLA magneticY",
    "InertialMeasurementUnit RLA magneticZ",
    "InertialMeasurementUnit LUA accX", "InertialMeasurementUnit LUA accY",
    "InertialMeasurementUnit LUA accZ", "InertialMeasurementUnit LUA gyroX",
    "InertialMeasurementUnit LUA gyroY", "InertialMeasurementUnit LUA gyroZ",
    "InertialMeasurementUnit LUA magneticX", "InertialMeasurementUnit LUA magneticY",
    "InertialMeasurementUnit LUA magneticZ",
    "InertialMeasurementUnit LLA accX", "InertialMeasurementUnit LLA accY",
    "InertialMeasurementUnit LLA accZ", "InertialMeasurementUnit LLA gyroX",
    "InertialMeasurementUnit LLA gyroY", "InertialMeasurementUnit LLA gyroZ",
    "InertialMeasurementUnit LLA magneticX", "InertialMeasurementUnit LLA magneticY",
    "InertialMeasurementUnit LLA magneticZ",
    "InertialMeasurementUnit L-SHOE EuX", "InertialMeasurementUnit L-SHOE EuY",
    "InertialMeasurementUnit L-SHOE EuZ", "InertialMeasurementUnit L-SHOE Nav_Ax",
    "InertialMeasurementUnit L-SHOE Nav_Ay", "InertialMeasurementUnit L-SHOE Nav_Az",
    "InertialMeasurementUnit L-SHOE Body_Ax", "InertialMeasurementUnit L-SHOE Body_Ay",
    "InertialMeasurementUnit L-SHOE Body_Az", "InertialMeasurementUnit L-SHOE AngVelBodyFrameX",
    "InertialMeasurementUnit L-SHOE AngVelBodyFrameY",
    "InertialMeasurementUnit L-SHOE AngVelBodyFrameZ",
    "InertialMeasurementUnit L-SHOE AngVelNavFrameX",
    "InertialMeasurementUnit L-SHOE AngVelNavFrameY",
    "InertialMeasurementUnit L-SHOE AngVelNavFrameZ", "InertialMeasurementUnit L-SHOE Compass",
    "InertialMeasurementUnit R-SHOE EuX", "InertialMeasurementUnit R-SHOE EuY",
    "InertialMeasurementUnit R-SHOE EuZ", "InertialMeasurementUnit R-SHOE Nav_Ax",
    "InertialMeasurementUnit R-SHOE Nav_Ay", "InertialMeasurementUnit R-SHOE Nav_Az",
    "InertialMeasurementUnit R-SHOE Body_Ax", "InertialMeasurementUnit R-SHOE Body_Ay",
    "InertialMeasurementUnit R-SHOE Body_Az", "InertialMeasurementUnit R-SHOE AngVelBodyFrameX",
    "InertialMeasurementUnit R-SHOE AngVelBodyFrameY",
    "InertialMeasurementUnit R-SHOE AngVelBodyFrameZ",
    "InertialMeasurementUnit R-SHOE AngVelNavFrameX",
    "InertialMeasurementUnit R-SHOE AngVelNavFrameY",
    "InertialMeasurementUnit R-SHOE AngVelNavFrameZ", "InertialMeasurementUnit R-SHOE Compass",
]
# datasets.md A.4: the 0-based keep-list of DeepConvLSTM's 113 channels (inclusive ranges).
KEEP_RANGES = [(1, 45), (50, 58), (63, 71), (76, 84), (89, 97), (102, 133)]
# DeepConvLSTM's NORM_MAX_THRESHOLDS / NORM_MIN_THRESHOLDS (STRCWearlab/DeepConvLSTM_py3
# preprocess_data.py @ 0a0f5d7f, the same numbers in godwenbin/DanHAR
# HAR_Dataset/opportunity/preprocess_data.py), flattened.
_ARM_IMU_MAX = [3000] * 3 + [10000] * 3 + [1500] * 3
_ARM_IMU_MIN = [-3000] * 3 + [-10000] * 3 + [-1000] * 3
_SHOE_MAX = [250, 25, 200] + [5000] * 6 + [10000] * 6 + [250]
_SHOE_MIN = [-250, -100, -200] + [-5000] * 6 + [-10000] * 6 + [-250]
NORM_MAX = [3000] * 36 + _ARM_IMU_MAX * 5 + _SHOE_MAX * 2
NORM_MIN = [-3000] * 36 + _ARM_IMU_MIN * 5 + _SHOE_MIN * 2

# DeepConvLSTM's order of the ML_Both_Arms codes (adjust_idx_labels) and label_legend.txt's names.
EXPECTED_GESTURES = [
    (406516, "Open Door 1"), (406517, "Open Door 2"), (404516, "Close Door 1"),
    (404517, "Close Door 2"), (406520, "Open Fridge"), (404520, "Close Fridge"),
    (406505, "Open Dishwasher"), (404505, "Close Dishwasher"), (406519, "Open Drawer 1"),
    (404519, "Close Drawer 1"), (406511, "Open Drawer 2"), (404511, "Close Drawer 2"),
    (406508, "Open Drawer 3"), (404508, "Close Drawer 3"), (408512, "Clean Table"),
    (407521, "Drink from Cup"), (405506, "Toggle Switch"),
]


@pytest.fixture
def real_dataset():
  if not (REAL_DATASET / "column_names.txt").exists():
    pytest.skip(f"real OPPORTUNITY description files not found in {REAL_DATASET}")
  return REAL_DATASET


# ---------------------------------------------------------------------------------------------
# The real description files.


def test_channels_are_selected_by_name_from_the_real_column_names(real_dataset):
  names = opp.parse_column_names(real_dataset / "column_names.txt")
  assert len(names) == 250
  assert names[0] == "MILLISEC" and names[249] == "ML_Both_Arms"
  keep = opp.select_channels(names)
  assert [names[c] for c in keep] == EXPECTED_CHANNELS
  assert keep == [c for lo, hi in KEEP_RANGES for c in range(lo, hi + 1)]
  # And as DeepConvLSTM derives it: delete quaternions, objects, ambient and labels but the last
  # two, then take columns 1..113.
  delete = np.concatenate([np.arange(46, 50), np.arange(59, 63), np.arange(72, 76),
                           np.arange(85, 89), np.arange(98, 102), np.arange(134, 243),
                           np.arange(244, 249)])
  assert keep == np.delete(np.arange(250), delete)[1:114].tolist()
  protocol = opp.Protocol(real_dataset)
  assert protocol.channels == EXPECTED_CHANNELS and protocol.label_column == 249


def test_thresholds_by_name_are_deepconvlstms():
  assert [opp.norm_range(n) for n in EXPECTED_CHANNELS] == list(zip(NORM_MIN, NORM_MAX))


def test_label_map_from_the_real_label_legend(real_dataset):
  path = real_dataset / "label_legend.txt"
  assert b"\r\n" in path.read_bytes()  # distributed with CRLF line ends
  tracks = opp.parse_label_legend(path)
  assert tracks["ML_Both_Arms"] == EXPECTED_GESTURES
  assert tracks["Locomotion"] == [(1, "Stand"), (2, "Walk"), (4, "Sit"), (5, "Lie")]
  assert [len(tracks[t]) for t in ("HL_Activity", "LL_Left_Arm", "LL_Left_Arm_Object",
                                   "LL_Right_Arm", "LL_Right_Arm_Object")] == [5, 13, 23, 13, 23]
  opp.check_gestures(path)
  assert list(opp.CLASS_NAMES) == ["Null"] + [name for _, name in EXPECTED_GESTURES]
  assert opp.GESTURE_CODES == tuple(code for code, _ in EXPECTED_GESTURES)


def test_fixture_description_files_are_the_real_ones(real_dataset):
  for name in ("column_names.txt", "label_legend.txt"):
    fixture_file = DUMMY / "OpportunityUCIDataset" / "dataset" / name
    assert fixture_file.read_bytes() == (real_dataset / name).read_bytes()


def test_gesture_classes():
  codes = np.array([0, 406516, 405506, 408512, 0], np.float64)
  assert opp.gesture_classes(codes, "f.dat").tolist() == [0, 1, 17, 15, 0]
  with pytest.raises(_common.RawFormatError, match=r"f\.dat:3: ML_Both_Arms value 406599"):
    opp.gesture_classes(np.array([0, 406516, 406599.0]), "f.dat")
  with pytest.raises(_common.RawFormatError, match=r"f\.dat:2: .* nan"):
    opp.gesture_classes(np.array([0, np.nan]), "f.dat")


# ---------------------------------------------------------------------------------------------
# Building the SYNTHETIC fixture.


def build(manual_dir, data_dir, config=None):
  builder = opp.Builder(data_dir=os.fspath(data_dir), config=config)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
  return tfds.data_source("opportunity" + (f"/{config}" if config else ""),
                          data_dir=os.fspath(data_dir))


def expected_run(run_file: str) -> tuple[np.ndarray, np.ndarray]:
  """The fixture run as the authors' preprocessing leaves it, computed independently."""
  rows = fixture.ROWS.get(run_file, fixture.SHORT)
  keep = [c for lo, hi in KEEP_RANGES for c in range(lo, hi + 1)]
  raw = np.array([[fixture.value(r, c) for c in keep] for r in range(rows)], np.float64)
  for column, lo, hi in fixture.GAPS.get(run_file, []):
    j = keep.index(column)
    if lo == 0:  # no reading before: pandas leaves NaN, the authors set it to 0
      raw[lo:hi, j] = 0
    elif hi == rows:  # no reading after: pandas repeats the last one
      raw[lo:hi, j] = raw[lo - 1, j]
    else:
      raw[lo:hi, j] = np.interp(np.arange(lo, hi), [lo - 1, hi], raw[[lo - 1, hi], j])
  lo, hi = np.array(NORM_MIN, np.float64), np.array(NORM_MAX, np.float64)
  x = (raw - lo) / (hi - lo)
  x = np.where(x > 1, 0.99, np.where(x < 0, 0, x))
  labels = np.zeros(rows, np.int64)
  for first, end, code in fixture.GESTURES.get(run_file, []):
    labels[first:end] = opp.GESTURE_CODES.index(code) + 1
  return x, labels


def test_build_fixture(tmp_path):
  source = build(DUMMY, tmp_path / "data")
  # Windows of 64 every 8 per run file: floor((rows - 64) / 8) + 1 when rows >= 64.
  #   train: S1-Drill 80 rows -> 3, S1-ADL1 72 -> 2, S2-Drill 64 -> 1, S3-ADL1 71 -> 1, the
  #          other 10 train runs have 10 rows -> 0; total 7.
  #   test:  S2-ADL4 72 -> 2, S3-ADL5 64 -> 1, S2-ADL5 and S3-ADL4 10 rows -> 0; total 3.
  # The label is the window's last sample's (rows 63, 71, 79), from fixture.GESTURES.
  expected = {
      "train": [(1, 0, 0, 1), (1, 0, 8, 17), (1, 0, 16, 17), (1, 1, 0, 16), (1, 1, 8, 16),
                (2, 0, 0, 14), (3, 1, 0, 0)],
      "test": [(2, 4, 0, 15), (2, 4, 8, 0), (3, 5, 0, 0)],
  }
  for split, windows in expected.items():
    examples = [source[split][i] for i in range(len(source[split]))]
    assert sorted((int(e["subject"]), int(e["run"]), int(e["start"]), int(e["label"]))
                  for e in examples) == windows
    for e in examples:
      run_file = f"S{e['subject']}-{opp.RUNS[e['run']]}"
      x, labels = expected_run(run_file)
      start = int(e["start"])
      assert e["signal"].dtype == np.float32 and e["signal"].shape == (64, 113)
      np.testing.assert_allclose(e["signal"], x[start:start + 64], rtol=0, atol=1e-6)
      assert e["label"] == labels[start + 63]
  info = tfds.builder("opportunity", data_dir=os.fspath(tmp_path / "data")).info
  assert info.features["label"].names == list(opp.CLASS_NAMES)


def test_the_default_builder_config_is_the_18_class_challenge():
  builder = opp.Builder(data_dir="/nonexistent")
  assert builder.builder_config.name == "challenge"
  assert builder.info.features["label"].names == list(opp.CLASS_NAMES)


def test_gestures17_drops_null_windows_on_fixture(tmp_path):
  source = build(DUMMY, tmp_path / "data", "gestures17")
  # test_build_fixture's windows without the Null ones (label 0), every label one lower.
  expected = {
      "train": [(1, 0, 0, 0), (1, 0, 8, 16), (1, 0, 16, 16), (1, 1, 0, 15), (1, 1, 8, 15),
                (2, 0, 0, 13)],
      "test": [(2, 4, 0, 14)],
  }
  for split, windows in expected.items():
    examples = [source[split][i] for i in range(len(source[split]))]
    assert sorted((int(e["subject"]), int(e["run"]), int(e["start"]), int(e["label"]))
                  for e in examples) == windows
    for e in examples:
      x, _ = expected_run(f"S{e['subject']}-{opp.RUNS[e['run']]}")
      np.testing.assert_allclose(e["signal"], x[int(e["start"]):int(e["start"]) + 64], atol=1e-6)
  info = tfds.builder("opportunity/gestures17", data_dir=os.fspath(tmp_path / "data")).info
  assert info.features["label"].names == list(opp.CLASS_NAMES[1:])
  assert info.features["signal"].shape == (64, 113)


@pytest.mark.parametrize("config, first_class", [("challenge", 1), ("gestures17", 0)])
def test_label_map_of_each_config_on_the_real_label_legend(shared_data, config, first_class):
  """Every ML_Both_Arms code of the real legend → its class → the legend's own name for it."""
  builder_config = opp.Builder.builder_configs[config]
  dataset = shared_data / "opportunity" / "OpportunityUCIDataset" / "dataset"
  legend = opp.parse_label_legend(dataset / "label_legend.txt")["ML_Both_Arms"]
  codes = np.array([code for code, _ in legend], np.float64)
  labels = [builder_config.label(c) for c in opp.gesture_classes(codes, "label_legend.txt")]
  assert labels == list(range(first_class, first_class + 17))
  assert [builder_config.class_names[i] for i in labels] == [name for _, name in legend]
  assert len(builder_config.class_names) == (18 if config == "challenge" else 17)
  null = builder_config.label(int(opp.gesture_classes(np.zeros(1), "f")[0]))
  assert (null, builder_config.class_names[0]) == (
      (0, "Null") if config == "challenge" else (None, "Open Door 1"))


def test_gap_filling_and_clipping_on_fixture_values(tmp_path):
  """The four NaN cases and the authors' clipping, spelled out on S1-Drill and S1-ADL1."""
  protocol = opp.Protocol(DUMMY / "OpportunityUCIDataset" / "dataset")
  x, _ = protocol.load_run(DUMMY / "OpportunityUCIDataset" / "dataset" / "S1-Drill.dat")
  rkn = [(fixture.value(r, 1) + 3000) / 6000 for r in (9, 15)]  # channel 0, gap rows 10-14
  np.testing.assert_allclose(x[10:15, 0], np.interp(np.arange(10, 15), [9, 15], rkn), atol=1e-6)
  assert (x[0:5, 36] == 0.5).all()  # IMU BACK accX before its first reading: 0 -> 0.5
  held = (fixture.value(74, 102) + 250) / 500  # L-SHOE EuX after its last reading (row 74)
  assert 0 < held < 1 and held != (fixture.value(79, 102) + 250) / 500
  np.testing.assert_allclose(x[74:80, 81], held, atol=1e-6)
  x, _ = protocol.load_run(DUMMY / "OpportunityUCIDataset" / "dataset" / "S1-ADL1.dat")
  assert (x[:, 112] == 0.5).all()  # R-SHOE Compass never read: 0 -> (0 + 250) / 500
  # Beyond the thresholds: above max -> 0.99, below min -> 0; exactly max stays 1 (as theirs).
  assert (x == np.float32(0.99)).sum() > 100 and (x == 0).sum() > 100 and x.max() <= 1


def test_missing_raw_files_fail_fast_with_instructions(tmp_path, monkeypatch):
  monkeypatch.setenv(downloads.OFFLINE_ENV, "1")
  (tmp_path / "manual").mkdir()
  start = time.perf_counter()
  with pytest.raises(_common.MissingRawFilesError, match="S2-ADL4.dat") as e:
    build(tmp_path / "manual", tmp_path / "data")
  assert time.perf_counter() - start < 10
  assert "column_names.txt" in str(e.value) and opp.URL in str(e.value)


def test_partial_tree_names_the_missing_run_files(tmp_path, real_dataset):
  # shared/data holds the description files but no .dat: the error lists the 18 missing runs.
  with pytest.raises(_common.MissingRawFilesError) as e:
    build(real_dataset.parents[1], tmp_path / "data")
  assert str(e.value).count(".dat") == 18 and "S4-" not in str(e.value)


# ---------------------------------------------------------------------------------------------
# Broken raw files.


def write_run(tmp_path, text: str, name="S1-ADL1.dat") -> pathlib.Path:
  path = tmp_path / name
  path.write_text(text)
  return path


@pytest.fixture
def protocol():
  return opp.Protocol(DUMMY / "OpportunityUCIDataset" / "dataset")


def good_lines(n=5):
  return fixture.table_text("S3-ADL2").splitlines()[:n]


@pytest.mark.parametrize("damage, line, message", [
    (lambda ls: ls[:3] + [ls[3][:len(ls[3]) // 2]], 4, "fields, expected 250"),  # truncated
    (lambda ls: ls[:2] + [ls[2].replace(" 0 ", " 0x ", 1)] + ls[3:], 3, "'0x' is not a number"),
    (lambda ls: ls[:1] + [ls[1] + " 7"] + ls[2:], 2, "251 fields, expected 250"),
    (lambda ls: ls[:1] + [" ".join(ls[1].split()[:-1])] + ls[2:], 2, "249 fields"),
    (lambda ls: ls[:2] + [""] + ls[2:], 3, "blank line"),
    (lambda ls: ls[:4] + [ls[4].rsplit(" ", 1)[0] + " 123"], 5, "ML_Both_Arms value 123"),
    (lambda ls: ls[:1] + [ls[1].rsplit(" ", 1)[0] + " NaN"], 2, "ML_Both_Arms value nan"),
])
def test_broken_run_file_names_file_and_line(tmp_path, protocol, damage, line, message):
  path = write_run(tmp_path, "\n".join(damage(good_lines())) + "\n")
  with pytest.raises(_common.RawFormatError) as e:
    protocol.load_run(path)
  assert str(e.value).startswith(f"{path}:{line}: ") and message in str(e.value)
  assert e.value.line == line


def test_empty_and_missing_run_files(tmp_path, protocol):
  path = write_run(tmp_path, "\r\n")
  with pytest.raises(_common.RawFormatError, match=f"{path}: empty file"):
    protocol.load_run(path)
  with pytest.raises(_common.MissingRawFilesError, match="S9-ADL1.dat"):
    protocol.load_run(tmp_path / "S9-ADL1.dat")


def test_crlf_run_file_parses_like_lf(tmp_path, protocol):
  lf = protocol.load_run(write_run(tmp_path, "\n".join(good_lines()) + "\n", "a.dat"))
  crlf = protocol.load_run(write_run(tmp_path, "\r\n".join(good_lines()) + "\r\n", "b.dat"))
  np.testing.assert_array_equal(lf[0], crlf[0])


def test_broken_description_files(tmp_path, real_dataset):
  dataset = tmp_path / "dataset"
  shutil.copytree(DUMMY / "OpportunityUCIDataset" / "dataset", dataset,
                  ignore=shutil.ignore_patterns("*.dat"))
  names = (dataset / "column_names.txt").read_bytes()
  (dataset / "column_names.txt").write_bytes(names.replace(b"Column: 7 ", b"Column: 8 "))
  with pytest.raises(_common.RawFormatError, match=r"column_names.txt:9: column 8 follows"):
    opp.Protocol(dataset)
  (dataset / "column_names.txt").write_bytes(names.replace(b"Quaternion1", b"Quat1"))
  with pytest.raises(_common.RawFormatError, match="118 body-worn channels, expected 113"):
    opp.Protocol(dataset)
  (dataset / "column_names.txt").write_bytes(names)
  legend = (dataset / "label_legend.txt").read_bytes()
  (dataset / "label_legend.txt").write_bytes(legend.replace(b"406517   -", b"406518   -"))
  with pytest.raises(_common.RawFormatError, match="label_legend.txt: ML_Both_Arms labels"):
    opp.Protocol(dataset)


# ---------------------------------------------------------------------------------------------
# A failed build leaves nothing that looks finished; large splits work without TensorFlow.


def test_failed_build_leaves_no_finished_dataset(tmp_path):
  manual = tmp_path / "manual"
  shutil.copytree(DUMMY, manual)
  bad = manual / "OpportunityUCIDataset" / "dataset" / "S3-ADL5.dat"  # test split, written last
  good = bad.read_text()
  bad.write_text(good.replace(" 1 0 0 0 0 0 0\n", " 1 0 0 0 0 0 x\n", 1))
  data_dir = tmp_path / "data"
  with pytest.raises(_common.RawFormatError, match=f"{bad}:1: column 250: 'x'"):
    build(manual, data_dir)
  leftovers = [p.name for p in (data_dir / "opportunity" / "challenge").iterdir()]
  assert "1.0.0" not in leftovers and all("incomplete" in p for p in leftovers), leftovers
  assert not opp.Builder(data_dir=os.fspath(data_dir)).is_prepared()
  with pytest.raises(Exception):  # noqa: B017 -- whatever TFDS raises, it is not a dataset
    tfds.data_source("opportunity", data_dir=os.fspath(data_dir))
  bad.write_text(good)
  source = build(manual, data_dir)
  assert (len(source["train"]), len(source["test"])) == (7, 3)


def test_split_past_the_memory_buffer_spills_without_tensorflow(tmp_path, monkeypatch):
  # The real train split (~2 GB) passes TFDS's 1 GiB in-memory shuffle buffer, after which TFDS
  # writes temporary buckets with tf.io.gfile. Force that path on the fixture.
  from tensorflow_datasets.core import shuffle  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 0)
  source = build(DUMMY, tmp_path / "data")
  assert (len(source["train"]), len(source["test"])) == (7, 3)
  assert not list((tmp_path / "data").rglob("bucket_*.tmp"))
