"""Writes dummy_data/: a SYNTHETIC acc_data.mat and acc_labels.mat in the real MATLAB v5 layout.

Not real recordings. acc_data is ROWS x 453 float64 (151 x, then 151 y, then 151 z samples per
row) with value(row, axis, t) = 10 * (axis + 1) + row + t / 1000, so that tests can check the
reshape; acc_labels is ROWS x 3 uint8 [class, subject, trial]. acc_names.mat is a copy of the
real file. Run from the repository root: python -m tfds_builders.unimib_shar.make_dummy_data
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np
import scipy.io

OUT = pathlib.Path(__file__).parent / "dummy_data" / "UniMiB-SHAR" / "data"
REAL = (pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "unimib_shar" /
        "UniMiB-SHAR" / "data")
ROWS = 20


def acc_data(rows: int) -> np.ndarray:
  row, axis, t = np.meshgrid(np.arange(rows), np.arange(3), np.arange(151), indexing="ij")
  return (10.0 * (axis + 1) + row + t / 1000).reshape(rows, 453)


def acc_labels(rows: int) -> np.ndarray:
  row = np.arange(rows)
  return np.stack([row % 17 + 1, row % 5 + 1, row % 2 + 1], axis=1).astype(np.uint8)


def main():
  OUT.mkdir(parents=True, exist_ok=True)
  shutil.copyfile(REAL / "acc_names.mat", OUT / "acc_names.mat")
  scipy.io.savemat(OUT / "acc_data.mat", {"acc_data": acc_data(ROWS)}, do_compression=True)
  scipy.io.savemat(OUT / "acc_labels.mat", {"acc_labels": acc_labels(ROWS)},
                   do_compression=True)
  (OUT.parent / "SYNTHETIC_README.txt").write_text(
      "data/acc_data.mat and data/acc_labels.mat here are SYNTHETIC test data, not UniMiB SHAR "
      "recordings: written by tfds_builders/unimib_shar/make_dummy_data.py in the layout of the "
      "real files. data/acc_names.mat is a copy of the real file.\n")


if __name__ == "__main__":
  main()
