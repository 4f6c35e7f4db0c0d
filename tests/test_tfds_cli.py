"""The TF-free `tfds` CLI (`python -m tfds_builders`), run as a user would: in a subprocess."""

import os
import pathlib
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from tfds_builders import __main__ as cli
from tfds_builders import downloads
from tfds_builders.wisdm import wisdm_dataset_builder as wisdm

REPO = pathlib.Path(__file__).resolve().parents[1]
WISDM_REAL = REPO.parent / "shared" / "data" / "wisdm_ar_v1.1"
WISDM_DUMMY = REPO / "tfds_builders" / "wisdm" / "dummy_data"
# The real sample where it is staged, else the dummy data: the CLI is tested either way.
WISDM_MANUAL = WISDM_REAL if WISDM_REAL.exists() else WISDM_DUMMY
COUNTS = ({"random_split": {"train": 99, "test": 43}, "subject_runs": {"train": 55, "test": 66}}
          if WISDM_REAL.exists() else
          {"random_split": {"train": 7, "test": 3}, "subject_runs": {"train": 3, "test": 3}})


def tfds_cli(*args: str, env=None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "tfds_builders", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300, check=False)


def test_build_folder_builds_every_config_as_array_record(tmp_path):
  result = tfds_cli("build", "tfds_builders/wisdm", f"--manual_dir={WISDM_MANUAL}",
                    f"--data_dir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  for config, counts in COUNTS.items():  # no --config: stock `tfds build` builds them all
    version_dir = tmp_path / "wisdm" / config / str(wisdm.Builder.VERSION)
    for split in counts:
      assert (version_dir / f"wisdm-{split}.array_record-00000-of-00001").exists()
    sources = tfds.data_source(f"wisdm/{config}", data_dir=tmp_path, download=False)
    assert {split: len(source) for split, source in sources.items()} == counts
    example = sources["train"][0]
    assert example["signal"].shape == (200, 3) and example["signal"].dtype == "float32"


def test_build_bare_name_with_config(tmp_path):
  result = tfds_cli("build", "wisdm/subject_runs", f"--manual_dir={WISDM_MANUAL}",
                    f"--data_dir={tmp_path}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(p.name for p in (tmp_path / "wisdm").iterdir() if not p.name.startswith(".")) == (
      ["subject_runs"])
  sources = tfds.data_source("wisdm/subject_runs", data_dir=tmp_path, download=False)
  assert {split: len(source) for split, source in sources.items()} == COUNTS["subject_runs"]


def test_build_without_raw_files_says_what_to_do(tmp_path):
  (tmp_path / "empty").mkdir()
  env = {**os.environ, downloads.OFFLINE_ENV: "1"}
  result = tfds_cli("build", "wisdm", "--config=subject_runs", f"--manual_dir={tmp_path}/empty",
                    f"--data_dir={tmp_path}/data", env=env)
  assert result.returncode != 0
  assert "MissingRawFilesError" in result.stderr and "WISDM_ar_latest.tar.gz" in result.stderr
  assert not (tmp_path / "data" / "wisdm" / "subject_runs" / str(wisdm.Builder.VERSION)).exists()


def test_build_argv():
  folder = str(REPO / "tfds_builders" / "wisdm")
  assert cli.build_argv(["build", "wisdm", "--data_dir=/d"]) == [
      "build", folder, "--data_dir=/d", "--file_format=array_record"]
  assert cli.build_argv(["build", "wisdm/subject_runs", "--file_format", "tfrecord"]) == [
      "build", folder, "--config=subject_runs", "--file_format", "tfrecord"]
  assert cli.build_argv(["build", "tfds_builders/wisdm", "--file_format=parquet"]) == [
      "build", "tfds_builders/wisdm", "--file_format=parquet"]
  assert cli.build_argv(["new", "wisdm"]) == ["new", "wisdm"]
  with pytest.raises(SystemExit, match="names a config"):
    cli.build_argv(["build", "wisdm/subject_runs", "--config=random_split"])
