"""Builds the OPPORTUNITY TFDS dataset at full size from SYNTHETIC raw files; reports time and RAM.

The real run files are not available here, so this writes format-faithful SYNTHETIC ones: the 24
`S{1..4}-{ADL1..5,Drill}.dat` files of the UCI archive, 250 whitespace-separated columns, `NaN`
for missing values, integer sensor values, the real file's byte size within a few percent and,
as far as it can be known, its row count. Row counts are not published per file, so they are
derived from the byte sizes in datasets.md A.4: DeepConvLSTM's preprocess_data.py says its 14
training runs (568,301,892 bytes) hold 557,963 samples, i.e. 1,018.5 bytes per row, and every
file is assumed to have that density (S1-ADL1: 51,803,164 B -> 50,861 rows; all 24: 869,328 rows,
885 MB). The real column_names.txt and label_legend.txt are copied beside them.

The build runs in a child process (the builder's normal path: the 18 run files of the challenge
protocol are parsed; S4 is written but not read), and its wall time and peak RSS
(getrusage RUSAGE_CHILDREN) are reported. The target on the 2-core, 24 GB development machine is
under 2 minutes and under 4 GB.

  python benchmarks/opportunity_build_scale.py [--workdir /tmp/opportunity_scale] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL_DATASET = ROOT.parent / "shared" / "data" / "opportunity" / "OpportunityUCIDataset" / "dataset"

# datasets.md A.4: bytes of each real run file.
REAL_BYTES = {
    "S1-ADL1": 51_803_164, "S1-ADL2": 32_761_206, "S1-ADL3": 33_899_243,
    "S1-ADL4": 34_242_592, "S1-ADL5": 30_729_238, "S1-Drill": 56_321_443,
    "S2-ADL1": 43_165_447, "S2-ADL2": 30_710_584, "S2-ADL3": 34_808_274,
    "S2-ADL4": 33_124_185, "S2-ADL5": 32_398_053, "S2-Drill": 54_381_079,
    "S3-ADL1": 37_810_795, "S3-ADL2": 28_329_759, "S3-ADL3": 27_222_179,
    "S3-ADL4": 27_972_830, "S3-ADL5": 27_048_082, "S3-Drill": 72_116_889,
    "S4-ADL1": 42_129_019, "S4-ADL2": 28_272_896, "S4-ADL3": 26_254_876,
    "S4-ADL4": 22_661_204, "S4-ADL5": 31_116_303, "S4-Drill": 46_154_259,
}
TRAIN_FILES = ([f"S1-{r}" for r in ("ADL1", "ADL2", "ADL3", "ADL4", "ADL5", "Drill")] +
               [f"S{s}-{r}" for s in (2, 3) for r in ("Drill", "ADL1", "ADL2", "ADL3")])
TRAIN_ROWS = 557_963  # DeepConvLSTM preprocess_data.py: nb_training_samples
BYTES_PER_ROW = sum(REAL_BYTES[f] for f in TRAIN_FILES) / TRAIN_ROWS  # 1018.53

GESTURES = (406516, 406517, 404516, 404517, 406520, 404520, 406505, 404505, 406519, 404519,
            406511, 404511, 406508, 404508, 408512, 407521, 405506)
POOL = 4096  # distinct sensor rows; row i uses POOL[(7 * i) % POOL]


def sensor_pool(rng: np.random.Generator) -> list[str]:
  """POOL pre-formatted texts of columns 2-243 (1-based): 133 body-worn, 109 object/ambient."""
  body = rng.integers(-3500, 3500, size=(POOL, 133)).astype(str).astype(object)
  body[rng.random(body.shape) < 0.01] = "NaN"  # dropouts, to exercise the gap filling
  # Objects and ambient sensors: mostly 0 or NaN, which brings a row to ~1018 bytes.
  objects = np.where(rng.random((POOL, 109)) < 0.6, "0", "NaN").astype(object)
  return [" ".join(b) + " " + " ".join(o) for b, o in zip(body.tolist(), objects.tolist())]


def label_texts(rows: int, rng: np.random.Generator) -> list[str]:
  """Columns 244-250: Locomotion, HL_Activity, four LL tracks (0 here), ML_Both_Arms."""
  locomotion = np.repeat(rng.choice([1, 2, 4, 5], size=rows // 100 + 1), 100)[:rows]
  gesture = np.zeros(rows, np.int64)
  row = 0
  while row < rows:  # Null for 50-300 samples, then a gesture for 30-150 samples
    row += int(rng.integers(50, 300))
    length = int(rng.integers(30, 150))
    gesture[row:row + length] = rng.choice(GESTURES)
    row += length
  return [f"{l} 101 0 0 0 0 {g}" for l, g in zip(locomotion.tolist(), gesture.tolist())]


def write_run_file(path: pathlib.Path, rows: int, pool: list[str], seed: int) -> None:
  rng = np.random.default_rng(seed)
  labels = label_texts(rows, rng)
  with open(path, "w") as f:
    for start in range(0, rows, 10_000):
      f.write("".join(f"{33 * i} {pool[(7 * i) % POOL]} {labels[i]}\n"
                      for i in range(start, min(rows, start + 10_000))))


def generate(manual: pathlib.Path) -> dict[str, int]:
  """Writes the SYNTHETIC tree under `manual` (reused when its manifest matches)."""
  dataset = manual / "OpportunityUCIDataset" / "dataset"
  manifest = manual / "SYNTHETIC_manifest.json"
  rows = {name: round(size / BYTES_PER_ROW) for name, size in REAL_BYTES.items()}
  if manifest.exists() and json.loads(manifest.read_text()) == rows:
    print(f"reusing the SYNTHETIC raw files in {dataset}", flush=True)
    return rows
  dataset.mkdir(parents=True, exist_ok=True)
  for name in ("column_names.txt", "label_legend.txt"):
    shutil.copyfile(REAL_DATASET / name, dataset / name)
  pool = sensor_pool(np.random.default_rng(0))
  start = time.perf_counter()
  for i, (name, n) in enumerate(rows.items()):
    path = dataset / f"{name}.dat"
    write_run_file(path, n, pool, seed=i)
    print(f"  SYNTHETIC {path.name}: {n} rows, {path.stat().st_size:,} B "
          f"(real {REAL_BYTES[name]:,} B)", flush=True)
  (manual / "SYNTHETIC_README.txt").write_text(
      "SYNTHETIC OPPORTUNITY run files written by benchmarks/opportunity_build_scale.py; not "
      "real recordings. column_names.txt and label_legend.txt are copies of the real files.\n")
  manifest.write_text(json.dumps(rows))
  print(f"wrote 24 SYNTHETIC run files in {time.perf_counter() - start:.0f} s", flush=True)
  return rows


BUILD = textwrap.dedent("""
    import json, logging, sys
    logging.basicConfig(level=logging.INFO, format="  [build] %(message)s", stream=sys.stdout)
    logging.getLogger("absl").setLevel(logging.WARNING)
    import tensorflow_datasets as tfds
    tfds.disable_progress_bar()
    from tfds_builders.opportunity import opportunity_dataset_builder
    manual_dir, data_dir = sys.argv[1:3]
    builder = opportunity_dataset_builder.Builder(data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    print(json.dumps({s: i.num_examples for s, i in builder.info.splits.items()}))
""")


def check_read_back(data_dir: pathlib.Path, splits: dict[str, int]) -> None:
  """Reads the dataset back without TensorFlow and checks a sample of windows."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  source = tfds.data_source("opportunity", data_dir=os.fspath(data_dir))
  for split, n in splits.items():
    assert len(source[split]) == n, (split, len(source[split]), n)
    for i in np.linspace(0, n - 1, 50).astype(int).tolist():
      signal = source[split][i]["signal"]
      assert signal.shape == (64, 113) and signal.dtype == np.float32
      assert np.isfinite(signal).all() and signal.min() >= 0 and signal.max() <= 1
  print(f"read back with tfds.data_source: {splits} examples, 100 windows checked")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="/tmp/opportunity_scale", type=pathlib.Path)
  parser.add_argument("--keep", action="store_true", help="keep the built dataset")
  args = parser.parse_args()
  manual, data_dir = args.workdir / "manual_SYNTHETIC", args.workdir / "tfds"
  rows = generate(manual)
  shutil.rmtree(data_dir, ignore_errors=True)
  total_mb = sum((manual / "OpportunityUCIDataset" / "dataset" / f"{n}.dat").stat().st_size
                 for n in rows) / 1e6
  print(f"building opportunity from {len(rows)} SYNTHETIC files ({sum(rows.values()):,} rows, "
        f"{total_mb:.0f} MB; the builder reads the 18 challenge runs) ...", flush=True)

  start = time.perf_counter()
  child = subprocess.Popen([sys.executable, "-c", BUILD, str(manual), str(data_dir)], cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                           text=True)
  last = ""
  for line in child.stdout:  # the builder's progress, as it comes
    if last:
      print(last, end="", flush=True)
    last = line
  returncode = child.wait()
  wall = time.perf_counter() - start
  peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
  if returncode:
    print(last, end="")
    sys.exit(f"build failed (exit {returncode})")
  splits = json.loads(last)
  built = data_dir / "opportunity" / "challenge" / "1.0.0"  # the default builder config
  disk_gb = sum(p.stat().st_size for p in built.iterdir()) / 2**30
  check_read_back(data_dir, splits)

  print(f"\nOPPORTUNITY scale build (SYNTHETIC raw data): {wall:.1f} s wall, "
        f"peak RSS {peak_gb:.2f} GiB, splits {splits}, {disk_gb:.2f} GiB on disk")
  print(f"target: < 120 s and < 4 GiB -> {'OK' if wall < 120 and peak_gb < 4 else 'MISSED'}")
  if not args.keep:
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
  main()
