"""PAMAP2 builder: channels, gap filling, windows and errors, without TensorFlow.

No real .dat file is available, so the builds run on the SYNTHETIC fixture of
tfds_builders/pamap2/dummy_data (written by its make_dummy_data.py): 54-column Protocol files
whose every value is a formula of the row, with transient rows, ~9 Hz heart rate and IMU gaps.
"""

import logging
import os
import pathlib
import shutil
import time
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders import _common
from tfds_builders import downloads
from tfds_builders.pamap2 import make_dummy_data as fixture
from tfds_builders.pamap2 import pamap2_dataset_builder as pamap2

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
DUMMY = ROOT / "tfds_builders" / "pamap2" / "dummy_data"
PROTOCOL = DUMMY / "PAMAP2_Dataset" / "Protocol"


def test_channels_and_classes():
  assert len(pamap2.CHANNELS) == 40
  assert pamap2.CHANNELS[:3] == ("heart_rate", "hand_temperature", "hand_acc16_x")
  assert pamap2.CHANNELS[-1] == "ankle_mag_z"
  # readme.pdf, 1-based: 3 heart rate; IMU blocks at 4-20, 21-37, 38-54, each temperature, acc
  # 16 g xyz, acc 6 g xyz, gyro xyz, magnetometer xyz (13), then 4 orientation columns.
  assert list(pamap2.CHANNEL_COLUMNS) == ([2] + list(range(3, 16)) + list(range(20, 33)) +
                                          list(range(37, 50)))
  assert pamap2.ACTIVITY_IDS == (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 24)
  assert list(pamap2.ACTIVITIES.values())[:3] == ["lying", "sitting", "standing"]
  assert pamap2.ACTIVITIES[24] == "rope jumping" and len(pamap2.ACTIVITIES) == 18
  assert pamap2.STEP == 38


def test_fill_run():
  nan = np.nan
  run = np.array([[nan, nan], [70, 1.0], [nan, nan], [nan, 4.0], [72, nan]])
  run = np.concatenate([run, np.zeros((5, 38))], axis=1)
  filled = pamap2.fill_run(run)
  # Heart rate: held forward, and backward before its first reading.
  assert filled[:, 0].tolist() == [70, 70, 70, 70, 72]
  # IMU: linear inside, held at both edges.
  assert filled[:, 1].tolist() == [1, 1, 2.5, 4, 4]


def build(manual_dir, data_dir):
  builder = pamap2.Builder(data_dir=os.fspath(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
  return tfds.data_source("pamap2", data_dir=os.fspath(data_dir))


# Windows of the fixture. A run of n rows at 100 Hz keeps ceil(n / 3) samples and holds
# floor((ceil(n / 3) - 171) / 38) + 1 windows when ceil(n / 3) >= 171:
#   101: lying 520 rows -> 174 -> 1 (start row 12); transient; lying 200 -> 67 -> 0 (joined
#        across the transient the two would give 720 -> 240 -> 2); walking 630 -> 210 -> 2
#        (rows 746 and 746 + 3 * 38 = 860)
#   102: running 520 -> 1, dropped: chest temperature never has a value; rope jumping 515 ->
#        172 -> 1 (row 526)
#   105: ironing 700 -> 234 -> 2 (rows 4, 118);  106: sitting 511 -> 171 -> 1 (row 3)
#   103, 104, 107-109: three transient rows each -> 0
# train = 1 + 2 + 1 = 4 windows, test (105, 106) = 2 + 1 = 3.
EXPECTED = {
    "train": [(101, 12, "lying"), (101, 746, "walking"), (101, 860, "walking"),
              (102, 526, "rope jumping")],
    "test": [(105, 4, "ironing"), (105, 118, "ironing"), (106, 3, "sitting")],
}


def expected_signal(subject: int, start: int) -> np.ndarray:
  """The window from the fixture's formulas, filled as the protocol says (independent code)."""
  activity = fixture.rows(subject)
  run_start = start
  while run_start > 0 and activity[run_start - 1] == activity[start]:
    run_start -= 1
  rows = start + 3 * np.arange(171)
  columns = np.array(pamap2.CHANNEL_COLUMNS[1:])
  imu = columns[None, :] + rows[:, None] / 1000
  for column, lo, hi in fixture.GAPS.get(subject, []):
    if lo == run_start:  # a gap at the start of the run: held from its first reading
      j = list(columns).index(column)
      imu[rows < hi, j] = column + hi / 1000
  heart = []
  for row in rows:
    readings = [r for r in range(run_start, row + 1) if r % 11 == 0]
    first = next(r for r in range(run_start, run_start + 11) if r % 11 == 0)
    heart.append(fixture.heart_rate(readings[-1] if readings else first))
  return np.concatenate([np.array(heart, np.float64)[:, None], imu], axis=1)


def test_build_fixture(tmp_path, caplog):
  caplog.set_level(logging.WARNING)
  source = build(DUMMY, tmp_path / "data")
  names = list(pamap2.ACTIVITIES.values())
  for split, windows in EXPECTED.items():
    examples = [source[split][i] for i in range(len(source[split]))]
    assert sorted((int(e["subject"]), int(e["start"]), names[e["label"]])
                  for e in examples) == windows
    for e in examples:
      assert e["signal"].dtype == np.float32 and e["signal"].shape == (171, 40)
      assert not np.isnan(e["signal"]).any()
      np.testing.assert_allclose(e["signal"], expected_signal(int(e["subject"]), int(e["start"])),
                                 rtol=0, atol=1e-4)
  assert any("chest_temperature" in r.message and "lines 1-520" in r.message
             for r in caplog.records)
  info = tfds.builder("pamap2", data_dir=os.fspath(tmp_path / "data")).info
  assert info.features["label"].names == names


def test_fixture_gaps_are_where_the_expectations_say():
  # The walking window at row 746 covers the interior ankle gap (rows 846-865, interpolated) and
  # starts inside the hand gyro_x gap (rows 746-750, held from row 751).
  table = pamap2.load_subject(PROTOCOL / "subject101.dat")
  assert np.isnan(table[846:866, 38:41]).all() and np.isnan(table[746:751, 10]).all()
  assert np.isnan(table[:, 2]).mean() > 0.9  # heart rate at ~9 Hz
  assert (table[:12, 1] == 0).all()


def test_nested_uci_zip_in_manual_dir(tmp_path):
  # UCI's download wraps PAMAP2_Dataset.zip in pamap2+physical+activity+monitoring.zip.
  inner = tmp_path / "PAMAP2_Dataset.zip"
  with zipfile.ZipFile(inner, "w") as z:
    for path in sorted(PROTOCOL.iterdir()):
      z.write(path, f"PAMAP2_Dataset/Protocol/{path.name}")
  (tmp_path / "manual").mkdir()
  with zipfile.ZipFile(tmp_path / "manual" / "pamap2+physical+activity+monitoring.zip", "w") as z:
    z.write(inner, "PAMAP2_Dataset.zip")
  source = build(tmp_path / "manual", tmp_path / "data")
  assert (len(source["train"]), len(source["test"])) == (4, 3)


def test_missing_raw_files_fail_fast_with_instructions(tmp_path, monkeypatch):
  monkeypatch.setenv(downloads.OFFLINE_ENV, "1")
  (tmp_path / "manual").mkdir()
  start = time.perf_counter()
  with pytest.raises(_common.MissingRawFilesError, match="subject101.dat") as e:
    build(tmp_path / "manual", tmp_path / "data")
  assert time.perf_counter() - start < 10
  assert pamap2.URL in str(e.value) and "PAMAP2_Dataset.zip" in str(e.value)


def test_partial_tree_names_the_missing_files(tmp_path):
  manual = tmp_path / "manual"
  shutil.copytree(DUMMY, manual)
  (manual / "PAMAP2_Dataset" / "Protocol" / "subject107.dat").unlink()
  with pytest.raises(_common.MissingRawFilesError, match="subject107.dat"):
    build(manual, tmp_path / "data")


def test_real_readme_is_where_the_layout_says():
  readme = SHARED_DATA / "pamap2" / "PAMAP2_Dataset" / "readme.pdf"
  if not readme.exists():
    pytest.skip(f"real PAMAP2 readme not found at {readme}")
  assert readme.read_bytes().startswith(b"%PDF")


# ---------------------------------------------------------------------------------------------
# Broken raw files.


def good_lines():
  return fixture.table_text(106).splitlines()[:8]


@pytest.mark.parametrize("damage, line, message", [
    (lambda ls: ls[:7] + [ls[7][:40]], 8, "fields, expected 54"),  # truncated last line
    (lambda ls: ls[:4] + [ls[4].replace(" 2 ", " two ", 1)] + ls[5:], 5, "'two' is not a number"),
    (lambda ls: ls[:2] + [ls[2] + " 1.0"] + ls[3:], 3, "55 fields, expected 54"),
    (lambda ls: ls[:3] + [""] + ls[3:], 4, "blank line"),
    (lambda ls: ls[:5] + [ls[5].replace(" 2 ", " 8 ", 1)] + ls[6:], 6, "activityID 8 is not"),
    (lambda ls: ls[:6] + [ls[6].replace(" 2 ", " NaN ", 1)] + ls[7:], 7, "activityID nan"),
])
def test_broken_subject_file_names_file_and_line(tmp_path, damage, line, message):
  path = tmp_path / "subject106.dat"
  path.write_text("\n".join(damage(good_lines())) + "\n")
  with pytest.raises(_common.RawFormatError) as e:
    pamap2.load_subject(path)
  assert str(e.value).startswith(f"{path}:{line}: ") and message in str(e.value)


def test_inf_in_a_kept_channel_names_the_line(tmp_path):
  lines = fixture.table_text(106).splitlines()
  fields = lines[100].split()
  fields[5] = "inf"
  lines[100] = " ".join(fields)
  path = tmp_path / "subject106.dat"
  path.write_text("\n".join(lines) + "\n")
  table = pamap2.load_subject(path)
  with pytest.raises(_common.RawFormatError, match=f"{path}:101: non-finite"):
    list(pamap2.subject_windows(table, path))


def test_empty_and_missing_subject_files(tmp_path):
  path = tmp_path / "subject106.dat"
  path.write_text("")
  with pytest.raises(_common.RawFormatError, match=f"{path}: empty file"):
    pamap2.load_subject(path)
  with pytest.raises(_common.MissingRawFilesError, match="subject199.dat"):
    pamap2.load_subject(tmp_path / "subject199.dat")


def test_failed_build_leaves_no_finished_dataset(tmp_path):
  manual = tmp_path / "manual"
  shutil.copytree(DUMMY, manual)
  bad = manual / "PAMAP2_Dataset" / "Protocol" / "subject106.dat"  # test split: written last
  good = bad.read_text()
  bad.write_text(good[:len(good) // 2])  # cut mid-line, as an interrupted copy leaves it
  data_dir = tmp_path / "data"
  with pytest.raises(_common.RawFormatError, match=f"{bad}:"):
    build(manual, data_dir)
  leftovers = [p.name for p in (data_dir / "pamap2").iterdir()]
  assert "1.0.0" not in leftovers and all("incomplete" in p for p in leftovers), leftovers
  assert not pamap2.Builder(data_dir=os.fspath(data_dir)).is_prepared()
  with pytest.raises(Exception):  # noqa: B017 -- whatever TFDS raises, it is not a dataset
    tfds.data_source("pamap2", data_dir=os.fspath(data_dir))
  bad.write_text(good)
  source = build(manual, data_dir)
  assert (len(source["train"]), len(source["test"])) == (4, 3)
