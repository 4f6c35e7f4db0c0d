"""Writes dummy_data/: SYNTHETIC PAMAP2 Protocol files in the real 54-column .dat format.

Not real recordings. The bytes follow readme.pdf §II.1 (whitespace-separated, no header, `NaN`
for missing, 100 Hz) and every value is a formula of the row, so that tests can predict each
window exactly:

  column 0 (timestamp): 5 + row / 100 s
  column 1 (activityID): from LAYOUT
  column 2 (heart rate): 70 + (row // 11) % 60 on rows with row % 11 == 0, else NaN (~9 Hz)
  columns 3-53 (IMUs): column + row / 1000, orientation columns 1 0 0 0, all NaN on transient
  rows, plus the NaN gaps of GAPS.

Run from the repository root: python -m tfds_builders.pamap2.make_dummy_data
"""

from __future__ import annotations

import pathlib

import numpy as np

OUT = pathlib.Path(__file__).parent / "dummy_data" / "PAMAP2_Dataset" / "Protocol"

# Per subject: the (activityID, rows) runs in file order.
LAYOUT = {
    101: [(0, 12), (1, 520), (0, 9), (1, 200), (0, 5), (4, 630)],
    102: [(5, 520), (0, 6), (24, 515)],
    103: [(0, 3)],
    104: [(0, 3)],
    105: [(0, 4), (17, 700)],
    106: [(0, 3), (2, 511)],
    107: [(0, 3)],
    108: [(0, 3)],
    109: [(0, 3)],
}
# Per subject: (0-based .dat column, first row, end row) NaN gaps inside activity runs.
GAPS = {
    101: [
        (38, 846, 866), (39, 846, 866), (40, 846, 866),  # ankle acc16 xyz: interior gap
        (10, 746, 751),  # hand gyro_x: the first 5 rows of the walking run
        (15, 1372, 1376),  # hand mag_z: the last 4 rows of the file
    ],
    102: [(20, 0, 520)],  # chest temperature: never a value in the running run
}
ORIENTATION = ("1", "0", "0", "0")  # the last 4 of each 17-column IMU block


def imu_value(row, column):
  return column + row / 1000


def heart_rate(row):
  return 70 + (row // 11) % 60


def rows(subject: int) -> np.ndarray:
  """The activityID of every row of the subject's file."""
  return np.concatenate([np.full(n, a, np.int64) for a, n in LAYOUT[subject]])


def table_text(subject: int) -> str:
  activity = rows(subject)
  gaps = GAPS.get(subject, [])
  lines = []
  for row, a in enumerate(activity.tolist()):
    fields = [f"{5 + row / 100:.2f}", str(a),
              str(heart_rate(row)) if row % 11 == 0 else "NaN"]
    for column in range(3, 54):
      offset = (column - 3) % 17  # within the IMU block
      if a == 0 or any(c == column and lo <= row < hi for c, lo, hi in gaps):
        fields.append("NaN")
      elif offset >= 13:
        fields.append(ORIENTATION[offset - 13])
      else:
        fields.append(f"{imu_value(row, column):.3f}")
    lines.append(" ".join(fields))
  return "\n".join(lines) + "\n"


def main():
  OUT.mkdir(parents=True, exist_ok=True)
  for subject in LAYOUT:
    (OUT / f"subject{subject}.dat").write_text(table_text(subject))
  (OUT.parent / "SYNTHETIC_README.txt").write_text(
      "SYNTHETIC test data, not PAMAP2 recordings: written by "
      "tfds_builders/pamap2/make_dummy_data.py in the format of the real Protocol/*.dat files.\n")


if __name__ == "__main__":
  main()
