"""--mode=predict: the builders' own windows from raw files and CSV, the output, and bad input."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from danhar_jax import predict
from danhar_jax import trained as trained_lib
from tests import trained_workdir
from tests.conftest import ROOT
from tests.conftest import one_error_line

WISDM_RAW = "wisdm_ar_v1.1/WISDM_ar_v1.1/WISDM_ar_v1.1_raw.txt"


def env(**extra):
  return dict(os.environ, DANHAR_OFFLINE="1", JAX_PLATFORMS="cpu", **extra,
              PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def main_py(*flags):
  return subprocess.run([sys.executable, "main.py", *flags], cwd=ROOT, env=env(),
                        capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  # The logit LayerNorm off: the batch-size check below needs batch-independent probabilities.
  config = trained_workdir.tiny_config()
  config.model.logit_standardization = False
  return trained_workdir.make(tmp_path_factory.mktemp("trained") / "run", config)


def builder_windows(module, manual_dir, data_dir, config=None):
  """Every window of both splits of a freshly built dataset, with its label, subject, start."""
  import tensorflow_datasets as tfds
  from danhar_jax import input_pipeline
  b = module.Builder(data_dir=str(data_dir), config=config, file_format="array_record")
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  parts = []
  for split in ("train", "test"):
    source = b.as_data_source(split=split)
    parts.append(input_pipeline.read_records(source, np.arange(len(source)),
                                             features=("signal", "label", "subject", "start")))
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_wisdm_raw_file_gives_the_builders_windows(tmp_path, shared_data):
  from tfds_builders.wisdm import wisdm_dataset_builder as wisdm
  for config in ("random_split", "subject_runs"):
    built = builder_windows(wisdm, shared_data / "wisdm_ar_v1.1", tmp_path / config, config)
    order = np.argsort(built["start"])
    got = predict.read_windows(f"wisdm/{config}", [str(shared_data / WISDM_RAW)])
    assert len(got) == len(order) > 100
    np.testing.assert_array_equal(got.signal, built["signal"][order])
    np.testing.assert_array_equal(got.true_class, built["label"][order])


def test_wisdm2019_accel_gyro_pair_gives_the_builders_windows(tmp_path, shared_data):
  from tfds_builders.wisdm2019 import wisdm2019_dataset_builder as wisdm2019
  src = shared_data / "wisdm_2019" / "wisdm-dataset"
  manual = tmp_path / "manual" / "wisdm-dataset"
  for sensor in ("accel", "gyro"):
    (manual / "raw" / "watch" / sensor).mkdir(parents=True)
    for s in (1600, 1608):  # one subject per split: the builder writes both
      name = f"data_{s}_{sensor}_watch.txt"
      os.symlink(src / "raw/watch" / sensor / name, manual / "raw/watch" / sensor / name)
  built = builder_windows(wisdm2019, manual.parent, tmp_path / "data")
  mine = built["subject"] == 1600
  order = np.lexsort((built["start"][mine], built["label"][mine]))
  paths = [str(src / f"raw/watch/{s}/data_1600_{s}_watch.txt") for s in ("accel", "gyro")]
  got = predict.read_windows("wisdm2019", paths)
  assert len(got) == mine.sum() > 500
  np.testing.assert_array_equal(got.signal, built["signal"][mine][order])
  np.testing.assert_array_equal(got.true_class, built["label"][mine][order])
  # 50 ms grid: a window spans 199 periods.
  np.testing.assert_allclose(got.end_s - got.start_s, 199 * 0.05, atol=1e-6)


def write_csv(path, t, x, names, time_column="timestamp"):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow([time_column, *names])
    for ti, xi in zip(t, x):
      w.writerow([repr(float(ti)), *("" if np.isnan(v) else repr(float(v)) for v in xi)])
  return str(path)


def test_csv_at_the_model_rate_is_windowed_like_the_raw_file(tmp_path, shared_data):
  raw = predict.read_windows("wisdm", [str(shared_data / WISDM_RAW)])
  from tfds_builders.wisdm import wisdm_dataset_builder as wisdm
  records = wisdm.parse_raw(shared_data / WISDM_RAW)
  t = np.arange(len(records)) / 20.0
  # Columns in another order than the model's, plus one it ignores: chosen by name.
  path = write_csv(tmp_path / "r.csv", t, np.c_[records.xyz[:, ::-1], np.zeros(len(t))],
                   ["z", "y", "x", "battery"], "time")
  got = predict.read_windows("wisdm", [path])
  np.testing.assert_array_equal(got.signal, raw.signal)
  np.testing.assert_allclose(got.start_s, np.arange(len(got)) * 5.0)
  assert got.true_class is None


def test_csv_at_another_rate_is_resampled_with_a_warning(tmp_path, caplog):
  t = np.arange(0, 30, 1 / 40)  # 40 Hz for a 20 Hz model
  x = np.c_[np.sin(t), np.cos(t), t]
  path = write_csv(tmp_path / "fast.csv", t, x, ["x", "y", "z"])
  got = predict.read_windows("wisdm/subject_runs", [path])
  assert "resampled linearly to 20 Hz" in caplog.text and "fast.csv" in caplog.text
  np.testing.assert_allclose(got.signal[0, :, 2], np.arange(200) / 20, atol=1e-5)


@pytest.mark.parametrize("case, message", [
    ("missing", "missing columns y, z"),
    ("backwards", "bad.csv:5: timestamp"),
    ("short", "no complete window of 200 samples"),
    ("nan", "every value is NaN"),
    ("slow2019", "bad.csv:3: sample rate"),
])
def test_bad_csv_names_the_problem(tmp_path, case, message):
  t = np.arange(400) / 20.0
  x = np.ones((400, 3))
  names, dataset = ["x", "y", "z"], "wisdm"
  if case == "missing":
    names = ["x", "q", "r"]
  elif case == "backwards":
    t[3] = t[1]
  elif case == "short":
    t, x = t[:150], x[:150]
  elif case == "nan":
    x[:] = np.nan
  elif case == "slow2019":
    dataset, names = "wisdm2019", list(predict.SPECS["wisdm2019"].channels)
    t, x = np.arange(400) / 5.0, np.ones((400, 6))
  path = write_csv(tmp_path / "bad.csv", t, x, names)
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    predict.read_windows(dataset, [path])


@pytest.mark.slow
def test_main_predicts_a_raw_file_into_csv_and_segments(workdir, tmp_path, shared_data):
  out = tmp_path / "pred.csv"
  proc = main_py("--mode=predict", f"--workdir={workdir}", f"--input={shared_data / WISDM_RAW}",
                 f"--output={out}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(out) as f:
    rows = list(csv.DictReader(f))
  t = trained_lib.from_workdir(str(workdir))
  windows = predict.read_windows("wisdm", [str(shared_data / WISDM_RAW)])
  assert len(rows) == len(windows)
  probs = np.array([[float(r[f"p_{c}"]) for c in t.class_names] for r in rows])
  np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
  assert [r["label"] for r in rows] == [t.class_names[i] for i in probs.argmax(1)]
  # The same windows through the model in this process (batches of 256, padded) agree.
  np.testing.assert_allclose(probs, predict.probabilities(t, windows.signal, 64), atol=2e-6)
  assert {r["true_label"] for r in rows} <= set(t.class_names)
  assert float(rows[1]["start_s"]) > float(rows[0]["start_s"])
  with open(tmp_path / "pred.segments.csv") as f:
    segs = list(csv.DictReader(f))
  assert sum(int(s["windows"]) for s in segs) == len(rows)
  assert all(a["label"] != b["label"] for a, b in zip(segs, segs[1:]))
  assert "segment: " in proc.stderr


@pytest.mark.slow
def test_main_writes_nothing_on_bad_input(workdir, tmp_path):
  path = write_csv(tmp_path / "short.csv", np.arange(100) / 20, np.ones((100, 3)), "xyz")
  out = tmp_path / "pred.csv"
  proc = main_py("--mode=predict", f"--workdir={workdir}", f"--input={path}", f"--output={out}")
  assert proc.returncode == 1
  assert "no complete window" in one_error_line(proc.stderr)
  assert not out.exists() and not (tmp_path / "pred.segments.csv").exists()


def test_unknown_pretrained_name_lists_the_available_ones(tmp_path, workdir, monkeypatch):
  from danhar_jax import pretrained
  monkeypatch.setenv("DANHAR_PRETRAINED_DIR", str(tmp_path / "pretrained"))
  with pytest.raises(ValueError, match="none are available yet"):
    pretrained.load("wisdm2019")
  t = trained_lib.from_workdir(str(workdir))
  pretrained.save(t, "tiny")
  with pytest.raises(ValueError, match="available: tiny"):
    pretrained.load("wisdm2019")
  loaded = pretrained.load("tiny")
  assert loaded.class_names == t.class_names and loaded.metrics["accuracy"] == 0.5
  x = np.random.default_rng(0).normal(size=(3, 200, 3)).astype(np.float32)
  np.testing.assert_array_equal(predict.probabilities(loaded, x), predict.probabilities(t, x))


def test_unimib_acc_data_with_the_real_labels_gives_the_builders_windows(tmp_path, shared_data):
  import scipy.io
  from tfds_builders.unimib_shar import unimib_shar_dataset_builder as unimib
  real = shared_data / "unimib_shar" / "UniMiB-SHAR" / "data"
  for name in ("acc_labels.mat", "acc_names.mat"):
    os.symlink(real / name, tmp_path / name)
  n = len(scipy.io.loadmat(real / "acc_labels.mat")["acc_labels"])
  # acc_data.mat is not among the real bytes: any values, one row per real label row.
  data = np.random.default_rng(0).normal(size=(n, 453)) * 9.8
  scipy.io.savemat(tmp_path / "acc_data.mat", {"acc_data": data})
  signal, labels = unimib.load(tmp_path)
  got = predict.read_windows("unimib_shar", [str(tmp_path / "acc_data.mat"),
                                             str(tmp_path / "acc_labels.mat")])
  assert len(got) == n == 11771
  np.testing.assert_array_equal(got.signal, signal)
  np.testing.assert_array_equal(got.true_class, labels[:, 0])
  np.testing.assert_allclose(got.signal[0, :, 1], data[0, 151:302].astype(np.float32))


def test_opportunity_and_pamap2_dat_files_are_read_by_their_builders(tmp_path):
  from tfds_builders import _common
  from tfds_builders.opportunity import opportunity_dataset_builder as opportunity
  from tfds_builders.pamap2 import pamap2_dataset_builder as pamap2
  fixtures = ROOT / "tfds_builders"
  run = fixtures / "opportunity/dummy_data/OpportunityUCIDataset/dataset/S1-ADL1.dat"
  got = predict.read_windows("opportunity", [str(run)])
  signal, classes = opportunity.Protocol(run.parent).load_run(run)
  starts = _common.window_starts(len(signal), 64, 8)
  assert got.signal.shape == (len(starts), 64, 113)
  np.testing.assert_array_equal(got.signal[-1], signal[starts[-1]:starts[-1] + 64])
  np.testing.assert_array_equal(got.true_class, classes[starts + 63])
  dat = fixtures / "pamap2/dummy_data/PAMAP2_Dataset/Protocol/subject101.dat"
  got = predict.read_windows("pamap2", [str(dat)])
  expected = list(pamap2.subject_windows(pamap2.load_subject(dat), dat))
  np.testing.assert_array_equal(got.signal, np.stack([w[2] for w in expected]))
  table = pamap2.load_subject(dat)
  np.testing.assert_array_equal(got.start_s, table[[w[0] for w in expected], 0])
  with pytest.raises(ValueError, match="CSV cannot be read for an opportunity model"):
    predict.read_windows("opportunity", [write_csv(tmp_path / "o.csv", [0], [[0]], ["a"])])


@pytest.mark.slow
def test_the_shipped_pretrained_model_predicts_a_real_test_subject(tmp_path, shared_data):
  """`--pretrained=wisdm2019` right after installation: no training, no dataset build. Subject
  1609 is one of the test subjects the model never saw; 596 windows, most labelled right."""
  watch = shared_data / "wisdm_2019" / "wisdm-dataset" / "raw" / "watch"
  out = tmp_path / "pred.csv"
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "main.py"), "--mode=predict", "--pretrained=wisdm2019",
       f"--input={watch / 'accel' / 'data_1609_accel_watch.txt'},"
       f"{watch / 'gyro' / 'data_1609_gyro_watch.txt'}", f"--output={out}"],
      cwd=tmp_path, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, PYTHONPATH=str(ROOT), TFDS_DATA_DIR=str(tmp_path / "no_data")))
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = list(csv.DictReader(open(out)))
  assert len(rows) == 596
  accuracy = sum(r["label"] == r["true_label"] for r in rows) / len(rows)
  assert accuracy > 0.55, accuracy
  assert not (tmp_path / "no_data").exists()  # nothing was built
