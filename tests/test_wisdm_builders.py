"""TF-free tests of the WISDM builders: the parsers on real bytes, and whole builds read back.

The real data lives beside the repository in shared/data (CI puts shared/ next to its clone);
tests that need it are skipped, with the reason, when it is absent.
"""

import io
import math
import pathlib
import tarfile
import time
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.conftest import SHARED_DATA
from tfds_builders import _common
from tfds_builders import downloads
from tfds_builders.wisdm import wisdm_dataset_builder as wisdm
from tfds_builders.wisdm2019 import wisdm2019_dataset_builder as wisdm2019

WISDM_REAL = SHARED_DATA / "wisdm_ar_v1.1"
WISDM_REAL_FILE = WISDM_REAL / "WISDM_ar_v1.1" / wisdm.RAW_FILE
WISDM2019_REAL = SHARED_DATA / "wisdm_2019"
WISDM_DUMMY = pathlib.Path(wisdm.__file__).parent / "dummy_data"
WISDM_DUMMY_FILE = WISDM_DUMMY / "WISDM_ar_v1.1" / wisdm.RAW_FILE
WISDM2019_DUMMY = pathlib.Path(wisdm2019.__file__).parent / "dummy_data"

needs_wisdm_real = pytest.mark.skipif(
    not WISDM_REAL_FILE.exists(), reason=f"real WISDM sample not staged at {WISDM_REAL_FILE}")
needs_wisdm2019_real = pytest.mark.skipif(
    not (WISDM2019_REAL / "wisdm-dataset").exists(),
    reason=f"real WISDM-2019 data not staged at {WISDM2019_REAL}")


def build(module, data_dir, manual_dir, config=None):
  """Builds TF-free, as the trainer does (the builder defaults to array_record)."""
  builder = module.Builder(data_dir=data_dir, config=config)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def read(name, data_dir) -> dict[str, dict[str, np.ndarray]]:
  """Every split of a prepared dataset as numpy arrays, through tfds.data_source."""
  out = {}
  for split, source in tfds.data_source(name, data_dir=data_dir, download=False).items():
    records = source.__getitems__(list(range(len(source))))
    out[split] = {k: np.stack([np.asarray(r[k]) for r in records]) for k in records[0]}
  return out


def check_windows(splits, shape, num_classes):
  for split in splits.values():
    assert split["signal"].dtype == np.float32 and split["signal"].shape[1:] == shape
    assert np.isfinite(split["signal"]).all()
    assert ((split["label"] >= 0) & (split["label"] < num_classes)).all()


# ---------------------------------------------------------------------------------------------
# WISDM v1.1: parsing.


@needs_wisdm_real
def test_wisdm_real_sample_parses_to_14353_records():
  data = WISDM_REAL_FILE.read_bytes()
  records = wisdm.parse_raw(WISDM_REAL_FILE)
  assert len(records) == 14_353  # the staged head of the file (users 33 and 17), CRLF
  assert set(records.user.tolist()) == {17, 33}
  # The first line: 33,Jogging,49105962326000,-0.6946377,12.680544,0.50395286;
  assert (records.user[0], wisdm.ACTIVITIES[records.activity[0]]) == (33, "Jogging")
  assert records.timestamp[0] == 49105962326000
  np.testing.assert_array_equal(records.xyz[0], np.float32([-0.6946377, 12.680544, 0.50395286]))
  # The fast path accepts the real bytes and agrees with the reference line-by-line grammar.
  fast, slow = wisdm._parse_fast(data), wisdm.parse_raw_slow(data, WISDM_REAL_FILE)
  assert fast is not None
  for field in ("user", "activity", "timestamp", "xyz"):
    np.testing.assert_array_equal(getattr(fast, field), getattr(slow, field))


def test_wisdm_dummy_data_has_every_quirk_and_parses():
  data = WISDM_DUMMY_FILE.read_bytes()
  assert b"\r\n" in data and b"\n\n" in data  # CRLF lines, blank lines
  assert b",;" in data  # stray comma before the ';'
  assert any(line.count(b";") > 1 for line in data.split(b"\n"))  # several records on a line
  assert b",Walking,0,0,0,0.0;" in data  # zero-timestamp rows
  records = wisdm.parse_raw(WISDM_DUMMY_FILE)
  assert len(records) == 1150  # 1152 records, less the 2 zero-timestamp rows
  assert (records.timestamp != 0).all() and (np.diff(records.timestamp) == 50_000_000).all()
  fast, slow = wisdm._parse_fast(data), wisdm.parse_raw_slow(data, WISDM_DUMMY_FILE)
  assert fast is not None  # the quirks do not push the parser off its fast path
  for field in ("user", "activity", "timestamp", "xyz"):
    np.testing.assert_array_equal(getattr(fast, field), getattr(slow, field))


def _corrupt(data: bytes, line: int, new: bytes) -> bytes:
  lines = data.split(b"\n")
  lines[line - 1] = new
  return b"\n".join(lines)


@pytest.mark.parametrize("new, message", [
    (b"33,Jogging,49106062271000,5.01", "not terminated by ';'"),  # truncated line
    (b"33,Jogging,49106062271000,5.01,abc,0.9;", "non-numeric"),
    (b"33,Jogging,49106062271000,5.01,11.2;", "got 5"),
    (b"33,Jogging,49106062271000,5.01,11.2,0.9,1.0;", "got 7"),
    (b"33,Running,49106062271000,5.01,11.2,0.9;", "unknown activity"),
    (b"33,Jogging,49106062271000,5.01,,0.9;", "non-numeric"),
    (b"33,Jogging,49106062271000,nan,11.2,0.9;", "non-finite"),
])
def test_wisdm_bad_record_names_file_and_line(tmp_path, new, message):
  # The real bytes where they are staged, else the dummy file: the error must point at line 40.
  source = WISDM_REAL_FILE if WISDM_REAL_FILE.exists() else WISDM_DUMMY_FILE
  path = tmp_path / wisdm.RAW_FILE
  path.write_bytes(_corrupt(source.read_bytes(), 40, new + b"\r"))
  with pytest.raises(_common.RawFormatError, match=message) as error:
    wisdm.parse_raw(path)
  assert error.value.line == 40 and f"{path}:40:" in str(error.value)


def test_wisdm_truncated_last_line(tmp_path):
  data = WISDM_DUMMY_FILE.read_bytes().rstrip()
  path = tmp_path / wisdm.RAW_FILE
  path.write_bytes(data[:-12])  # the file cut in the middle of its last record
  with pytest.raises(_common.RawFormatError, match="truncated") as error:
    wisdm.parse_raw(path)
  assert error.value.line == data.count(b"\n") + 1


def test_wisdm_empty_and_missing_files(tmp_path):
  path = tmp_path / wisdm.RAW_FILE
  path.write_bytes(b"\r\n\n")
  with pytest.raises(_common.RawFormatError, match="no records") as error:
    wisdm.parse_raw(path)
  assert str(path) in str(error.value)
  with pytest.raises(_common.MissingRawFilesError, match="nowhere.txt"):
    wisdm.parse_raw(tmp_path / "nowhere.txt")


# ---------------------------------------------------------------------------------------------
# WISDM v1.1: protocols and builds.


def test_wisdm_authors_window_loop_and_split():
  # range(0, len(data) - 200, 100): one window fewer than every full window when
  # (n - 200) % 100 == 0.
  np.testing.assert_array_equal(wisdm.authors_window_starts(400), [0, 100])
  assert len(_common.window_starts(400, 200, 100)) == 3
  np.testing.assert_array_equal(wisdm.authors_window_starts(401), [0, 100, 200])
  assert len(wisdm.authors_window_starts(200)) == 0
  mask = wisdm.sklearn_test_mask(142, 0.3, 10)
  assert mask.sum() == math.ceil(0.3 * 142) == 43


def test_wisdm_split_matches_sklearn():
  model_selection = pytest.importorskip("sklearn.model_selection")
  n = 10_981
  _, test = model_selection.train_test_split(np.arange(n), test_size=0.3, random_state=10)
  np.testing.assert_array_equal(np.flatnonzero(wisdm.sklearn_test_mask(n, 0.3, 10)),
                                np.sort(test))


def test_wisdm_default_file_format_is_array_record(tmp_path):
  assert wisdm.Builder(data_dir=tmp_path).info.file_format.value == "array_record"
  assert wisdm.Builder(data_dir=tmp_path, file_format="tfrecord").info.file_format.value == (
      "tfrecord")


def test_wisdm_dummy_builds_both_configs(tmp_path):
  build(wisdm, tmp_path, WISDM_DUMMY)
  build(wisdm, tmp_path, WISDM_DUMMY, config="subject_runs")
  # random_split: 1150 records -> range(0, 950, 100) = 10 windows; ceil(0.3 * 10) = 3 test.
  random_split = read("wisdm", tmp_path)
  assert {k: len(v["label"]) for k, v in random_split.items()} == {"train": 7, "test": 3}
  # subject_runs: runs of 350, 250, 300, 250 records -> 2 + 1 + 2 + 1 windows; user 7's three
  # train, user 31's three test.
  runs = read("wisdm/subject_runs", tmp_path)
  assert {k: len(v["label"]) for k, v in runs.items()} == {"train": 3, "test": 3}
  assert set(runs["train"]["subject"].tolist()) == {7}
  assert set(runs["test"]["subject"].tolist()) == {31}
  for splits in (random_split, runs):
    check_windows(splits, (200, 3), 6)
  records = wisdm.parse_raw(WISDM_DUMMY_FILE)
  everything = {k: np.concatenate([s[k] for s in runs.values()]) for k in runs["train"]}
  for start, signal, label in zip(everything["start"], everything["signal"], everything["label"]):
    np.testing.assert_array_equal(signal, records.xyz[start:start + 200])
    assert (records.activity[start:start + 200] == label).all()
  # recording: the whole file under random_split (its windows cross runs), else the run's
  # ordinal; start stays the record index in the file.
  assert all((s["recording"] == 0).all() for s in random_split.values())
  order = np.argsort(everything["start"])
  np.testing.assert_array_equal(everything["recording"][order], [0, 0, 1, 2, 2, 3])
  np.testing.assert_array_equal(everything["start"][order], [0, 100, 350, 600, 700, 900])
  info = tfds.builder("wisdm", data_dir=tmp_path).info
  assert info.features["label"].names == list(wisdm.ACTIVITIES)
  assert info.file_format.value == "array_record"


@needs_wisdm_real
def test_wisdm_real_sample_builds(tmp_path):
  build(wisdm, tmp_path, WISDM_REAL)
  build(wisdm, tmp_path, WISDM_REAL, config="subject_runs")
  # random_split: range(0, 14353 - 200, 100) gives 142 windows; ceil(0.3 * 142) = 43 test.
  random_split = read("wisdm", tmp_path)
  assert {k: len(v["label"]) for k, v in random_split.items()} == {"train": 99, "test": 43}
  # subject_runs: user 33's 13 runs of 597, 564, 608, 608, 533, 523, 546, 547, 527, 508, 557,
  # 579 and 1792 records give 4+4+5+5+4+4+4+4+4+4+4+4+16 = 66 windows (floor((n - 200) / 100)
  # + 1 each), all test (users 29-36); user 17's runs of 2977 and 2887 give 28 + 27 = 55 train.
  runs = read("wisdm/subject_runs", tmp_path)
  assert {k: len(v["label"]) for k, v in runs.items()} == {"train": 55, "test": 66}
  assert set(runs["test"]["subject"].tolist()) == {33}
  for splits in (random_split, runs):
    check_windows(splits, (200, 3), 6)
  records = wisdm.parse_raw(WISDM_REAL_FILE)
  first = np.flatnonzero(np.concatenate([s["start"] for s in random_split.values()]) == 0)
  assert len(first) == 1
  signals = np.concatenate([s["signal"] for s in random_split.values()])
  np.testing.assert_array_equal(signals[first[0]], records.xyz[:200])


def test_wisdm_archive_in_manual_dir(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  with tarfile.open(manual / "WISDM_ar_latest.tar.gz", "w:gz") as tar:
    tar.add(WISDM_DUMMY / "WISDM_ar_v1.1", arcname="WISDM_ar_v1.1")
  build(wisdm, tmp_path / "data", manual, config="subject_runs")
  assert len(read("wisdm/subject_runs", tmp_path / "data")["test"]["label"]) == 3


def test_wisdm_missing_raw_files_fail_fast_with_instructions(tmp_path, monkeypatch):
  monkeypatch.setenv(downloads.OFFLINE_ENV, "1")
  (tmp_path / "empty").mkdir()
  start = time.perf_counter()
  with pytest.raises(_common.MissingRawFilesError) as error:
    build(wisdm, tmp_path / "data", tmp_path / "empty")
  assert time.perf_counter() - start < 10
  assert wisdm.URL in str(error.value) and "manual_dir" in str(error.value)
  assert wisdm.RAW_FILE in str(error.value)


def test_download_probe_fails_fast_when_unreachable(monkeypatch):
  monkeypatch.delenv(downloads.OFFLINE_ENV, raising=False)
  manager = downloads.Downloads(dl_manager=None, marker="x", timeout=2)
  start = time.perf_counter()
  with pytest.raises(ConnectionError, match="did not answer"):
    manager.download_and_extract("http://127.0.0.1:9/archive.tar.gz")  # discard port: closed
  assert time.perf_counter() - start < 5


def test_wisdm_failed_build_leaves_no_dataset(tmp_path):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / wisdm.RAW_FILE).write_bytes(
      _corrupt(WISDM_DUMMY_FILE.read_bytes(), 300, b"7,Walking,123,1.0,2.0;"))
  with pytest.raises(_common.RawFormatError, match=":300:"):
    build(wisdm, tmp_path / "data", manual)
  assert not wisdm.Builder(data_dir=tmp_path / "data").is_prepared()
  assert not (tmp_path / "data" / "wisdm" / "random_split" / str(wisdm.Builder.VERSION)).exists()
  try:  # TFDS 4.9.10 answers {} for an unprepared dataset; others may raise.
    sources = tfds.data_source("wisdm", data_dir=tmp_path / "data", download=False)
  except Exception:  # noqa: BLE001
    sources = {}
  assert not sources
  # TFDS cleaned up its temporary folder; a later good build is unaffected.
  build(wisdm, tmp_path / "data", WISDM_DUMMY)
  assert len(read("wisdm", tmp_path / "data")["train"]["label"]) == 7


# ---------------------------------------------------------------------------------------------
# WISDM-2019 smartwatch.


def _stream(t, values):
  return np.asarray(t, np.int64), np.asarray(values, np.float64).reshape(len(t), -1)


def test_wisdm2019_align_never_bridges_a_gap():
  p = wisdm2019.PERIOD_NS
  t = np.arange(600) * p
  gyro_t = t[(t < 300 * p) | (t > 304 * p)]  # a 300 ms gap in the gyroscope
  accel = _stream(t + 7, np.arange(1800.).reshape(600, 3))  # 7 ns late: interpolated
  gyro = _stream(gyro_t, np.ones((len(gyro_t), 3)))
  signal, valid = wisdm2019.align(accel, gyro)
  assert signal.shape == (599, 6) and signal.dtype == np.float32  # origin = accel's first sample
  # Grid points 299..304 fall between gyro samples 299 and 305, 300 ms apart.
  np.testing.assert_array_equal(np.flatnonzero(~valid), np.arange(299, 305))
  np.testing.assert_array_equal(wisdm2019.segment_window_starts(valid), [0, 305])
  # Points 10 ms apart (a burst) or one 100 ms gap are not breaks.
  burst = np.sort(np.concatenate([t, 100 * p + np.arange(1, 5) * 10_000_000]))
  _, valid = wisdm2019.align(_stream(t, np.zeros((600, 3))), _stream(burst, np.zeros((604, 3))))
  assert valid.all()
  one_missing = np.delete(t, 50)
  _, valid = wisdm2019.align(_stream(t, np.zeros((600, 3))),
                             _stream(one_missing, np.zeros((599, 3))))
  assert valid.all()


def test_wisdm2019_run_samples_drops_duplicates_and_refuses_backward_time(tmp_path):
  path = tmp_path / "data_1600_accel_watch.txt"
  path.write_text("1600,A,100,1,2,3;\n1600,A,100,9,9,9;\n1600,A,150,4,5,6;\n"
                  "1600,B,50,1,1,1;\n\n1600,B,40,1,1,1;\n")
  stream = wisdm2019.parse_stream(path, 1600)
  t, values = wisdm2019.run_samples(stream, "A", path)
  np.testing.assert_array_equal(t, [100, 150])
  np.testing.assert_array_equal(values, [[1, 2, 3], [4, 5, 6]])
  with pytest.raises(_common.RawFormatError, match="backwards") as error:
    wisdm2019.run_samples(stream, "B", path)
  assert error.value.line == 6  # the blank line 5 counts


@needs_wisdm2019_real
def test_wisdm2019_real_file_parses():
  path = WISDM2019_REAL / "wisdm-dataset/raw/watch/accel/data_1600_accel_watch.txt"
  stream = wisdm2019.parse_stream(path, 1600)
  assert len(stream.timestamp) == 65_462
  # 1600,A,90426708196641,7.091625,-0.5916671,8.195502;
  assert (chr(stream.activity[0]), stream.timestamp[0]) == ("A", 90426708196641)
  np.testing.assert_array_equal(stream.values[0], [7.091625, -0.5916671, 8.195502])
  assert wisdm2019._parse_fast(path.read_bytes(), 1600) is not None
  slow = wisdm2019._parse_slow(path.read_bytes().split(b"\n"), path, 1600)
  for field in ("activity", "timestamp", "values", "line"):
    np.testing.assert_array_equal(getattr(slow, field), getattr(stream, field))


@pytest.mark.parametrize("new, message", [
    (b"1600,A,90426757696641,0.31,-1.02", "expected one record"),  # truncated
    (b"1600,A,90426757696641,0.31,x,-0.30;", "non-numeric"),
    (b"1600,A,90426757696641,0.31,-1.02;", "got 5"),
    (b"1600,N,90426757696641,0.31,-1.02,-0.30;", "unknown activity"),
    (b"1601,A,90426757696641,0.31,-1.02,-0.30;", "subject"),
])
def test_wisdm2019_bad_record_names_file_and_line(tmp_path, new, message):
  source = (WISDM2019_REAL if (WISDM2019_REAL / "wisdm-dataset").exists() else WISDM2019_DUMMY)
  data = (source / "wisdm-dataset/raw/watch/gyro/data_1600_gyro_watch.txt").read_bytes()
  path = tmp_path / "data_1600_gyro_watch.txt"
  path.write_bytes(_corrupt(data, 25, new))
  with pytest.raises(_common.RawFormatError, match=message) as error:
    wisdm2019.parse_stream(path, 1600)
  assert f"{path}:25:" in str(error.value)


def test_wisdm2019_empty_file(tmp_path):
  path = tmp_path / "data_1600_accel_watch.txt"
  path.write_bytes(b"\n\r\n")
  with pytest.raises(_common.RawFormatError, match="no records") as error:
    wisdm2019.parse_stream(path, 1600)
  assert str(path) in str(error.value)


def test_wisdm2019_dummy_builds(tmp_path):
  build(wisdm2019, tmp_path, WISDM2019_DUMMY)
  splits = read("wisdm2019", tmp_path)
  # 1600 A: 517 grid points (gyro starts 150 ms late) -> 4 windows; 1600 B: a 300 ms accel gap
  # leaves segments of 299 and 395 points -> 1 + 2 windows; 1610 A: 400 points -> 3 (test).
  assert {k: len(v["label"]) for k, v in splits.items()} == {"train": 7, "test": 3}
  check_windows(splits, (200, 6), 18)
  train = splits["train"]
  order = np.lexsort((train["start"], train["label"]))
  np.testing.assert_array_equal(train["start"][order], [0, 100, 200, 300, 0, 305, 405])
  # recording: subject * 100 + activity index (A walking 0, B jogging 1).
  np.testing.assert_array_equal(train["recording"][order], [160000] * 4 + [160001] * 3)
  np.testing.assert_array_equal(splits["test"]["recording"], [161000] * 3)
  assert set(splits["test"]["subject"].tolist()) == {1610}
  # The grid sits on real samples here, so the first window starts with accel sample 3 (the
  # first one the gyroscope also covers), exactly.
  accel = wisdm2019.parse_stream(
      WISDM2019_DUMMY / "wisdm-dataset/raw/watch/accel/data_1600_accel_watch.txt", 1600)
  first = np.flatnonzero((train["label"] == 0) & (train["start"] == 0))[0]
  np.testing.assert_array_equal(train["signal"][first][0, :3], np.float32(accel.values[3]))
  info = tfds.builder("wisdm2019", data_dir=tmp_path).info
  assert info.features["label"].names == list(wisdm2019.ACTIVITIES.values())


def test_wisdm2019_nested_zip_in_manual_dir(tmp_path):
  inner = io.BytesIO()
  with zipfile.ZipFile(inner, "w") as z:
    for path in sorted((WISDM2019_DUMMY / "wisdm-dataset").rglob("*")):
      if path.is_file():
        z.write(path, path.relative_to(WISDM2019_DUMMY))
  manual = tmp_path / "manual"
  manual.mkdir()
  # UCI's zip holds wisdm-dataset.zip, which holds wisdm-dataset/.
  with zipfile.ZipFile(manual / "wisdm+smartphone+and+smartwatch.zip", "w") as z:
    z.writestr("wisdm-dataset.zip", inner.getvalue())
  build(wisdm2019, tmp_path / "data", manual)
  assert len(read("wisdm2019", tmp_path / "data")["test"]["label"]) == 3


def test_wisdm2019_missing_gyro_file(tmp_path, monkeypatch):
  monkeypatch.setenv(downloads.OFFLINE_ENV, "1")
  manual = tmp_path / "manual" / "wisdm-dataset"
  (manual / "raw/watch/accel").mkdir(parents=True)
  (manual / "raw/watch/gyro").mkdir(parents=True)
  accel = "raw/watch/accel/data_1600_accel_watch.txt"
  (manual / accel).write_bytes((WISDM2019_DUMMY / "wisdm-dataset" / accel).read_bytes())
  with pytest.raises(_common.MissingRawFilesError, match="data_1600_gyro_watch.txt"):
    build(wisdm2019, tmp_path / "data", tmp_path / "manual")


@pytest.mark.slow
@needs_wisdm2019_real
def test_wisdm2019_real_builds(tmp_path):
  start = time.perf_counter()
  build(wisdm2019, tmp_path, WISDM2019_REAL)
  print(f"wisdm2019 real build: {time.perf_counter() - start:.1f} s")
  splits = read("wisdm2019", tmp_path)
  # Each of the 216 (subject, activity) runs spans about 180 s: 3,595-3,601 grid points give
  # 34 windows (191 runs) or 35 (11 runs). 15 runs have gaps over 100 ms inside the aligned
  # span (433 grid points dropped in all), and 14 of them lose windows at those breaks (down to
  # 24), which leaves 7,310.
  per_subject = {1600: 611, 1601: 613, 1602: 611, 1603: 611, 1604: 608, 1605: 616, 1606: 612,
                 1607: 611, 1608: 601, 1609: 596, 1610: 608, 1611: 612}
  assert {k: len(v["label"]) for k, v in splits.items()} == {"train": 4893, "test": 2417}
  subjects = np.concatenate([s["subject"] for s in splits.values()])
  assert dict(zip(*map(np.ndarray.tolist, np.unique(subjects, return_counts=True)))) == (
      per_subject)
  assert set(splits["test"]["subject"].tolist()) == set(wisdm2019.TEST_SUBJECTS)
  check_windows(splits, (200, 6), 18)
  labels = np.concatenate([s["label"] for s in splits.values()])
  assert set(labels.tolist()) == set(range(18))
