"""Writes dummy_data/: SYNTHETIC raw files in both source formats, for the weakly builder's tests.

Not real recordings. Every value is a formula of (activity, sample), so a test can predict each
composed window, and each activity oscillates at its own rate, so figures look like motion:

  wisdm-dataset/         WISDM-2019 watch format: subjects 1600 (train) and 1610 (test), accel
                         and gyro on the same 50 ms clock; walking 1100 samples, then jogging,
                         stairs, kicking and dribbling 300 each (enough for the 1024-sample
                         configs, not for wisdm2019_2048).
  WISDM_ar_v1.1/         WISDM v1.1 format: users 7 (train) and 31 (test); Walking 600 records,
                         then Upstairs, Downstairs and Jogging 150 each.

Run from the repository root: python -m tfds_builders.weakly.make_dummy_data
"""

from __future__ import annotations

import pathlib

import numpy as np

OUT = pathlib.Path(__file__).parent / "dummy_data"

WISDM2019_LAYOUT = (("A", 1100), ("B", 300), ("C", 300), ("M", 300), ("P", 300))
WISDM2019_SUBJECTS = (1600, 1610)
WISDM_LAYOUT = (("Walking", 600), ("Upstairs", 150), ("Downstairs", 150), ("Jogging", 150))
WISDM_USERS = (7, 31)
ACTIVITY_KEY = """walking = A
jogging = B
stairs = C
sitting = D
standing = E
typing = F
teeth = G
soup = H
chips = I
pasta = J
drinking = K
sandwich = L
kicking = M
catch = O
dribbling = P
writing = Q
clapping = R
folding = S
"""


def value(activity_index: int, sample: np.ndarray, axis: int, offset: float = 0.0) -> np.ndarray:
  """x, y, z of one activity: a sine at (1 + activity) / 20 cycles per sample, two decimals."""
  phase = 2 * np.pi * (1 + activity_index) * sample / 20 + axis
  return np.round(offset + (2 + activity_index) * np.sin(phase), 2)


def wisdm2019_lines(subject: int, sensor: str) -> list[str]:
  lines, t0 = [], 90_000_000_000_000 + subject
  offset = 9.81 if sensor == "accel" else 0.0
  row = 0
  for index, (letter, n) in enumerate(WISDM2019_LAYOUT):
    sample = np.arange(n)
    xyz = [value(index, sample, axis, offset if axis == 2 else 0.0) for axis in range(3)]
    for i in range(n):
      lines.append(f"{subject},{letter},{t0 + 50_000_000 * row},"
                   f"{xyz[0][i]:g},{xyz[1][i]:g},{xyz[2][i]:g};")
      row += 1
  return lines


def wisdm_lines(user: int) -> list[str]:
  lines, row = [], 0
  for index, (activity, n) in enumerate(WISDM_LAYOUT):
    sample = np.arange(n)
    xyz = [value(index, sample, axis) for axis in range(3)]
    for i in range(n):
      lines.append(f"{user},{activity},{1_000_000_000 + 50_000_000 * row},"
                   f"{xyz[0][i]:g},{xyz[1][i]:g},{xyz[2][i]:g};")
      row += 1
  return lines


def main():
  root = OUT / "wisdm-dataset"
  (root / "activity_key.txt").parent.mkdir(parents=True, exist_ok=True)
  (root / "activity_key.txt").write_text(ACTIVITY_KEY)
  for sensor in ("accel", "gyro"):
    folder = root / "raw" / "watch" / sensor
    folder.mkdir(parents=True, exist_ok=True)
    for subject in WISDM2019_SUBJECTS:
      (folder / f"data_{subject}_{sensor}_watch.txt").write_text(
          "\n".join(wisdm2019_lines(subject, sensor)) + "\n")
  v11 = OUT / "WISDM_ar_v1.1"
  v11.mkdir(parents=True, exist_ok=True)
  (v11 / "WISDM_ar_v1.1_raw.txt").write_text(
      "\n".join(line for user in WISDM_USERS for line in wisdm_lines(user)) + "\n")
  (OUT / "SYNTHETIC_README.txt").write_text(__doc__)


if __name__ == "__main__":
  main()
