"""Writes dummy_data/: SYNTHETIC OPPORTUNITY run files in the real 250-column .dat format.

Not real recordings. The .dat bytes follow column_names.txt (whitespace-separated, no header,
`NaN` for missing, integer sensor values) and every value is a formula of (row, column), so that
tests can predict each window exactly:

  column 0 (MILLISEC): 33 * row
  columns 1-133 (body-worn sensors): value(row, column), integers in [-3500, 3500], so some
    exceed the normalisation thresholds; plus the NaN gaps of GAPS
  columns 134-242 (objects, ambient): NaN, except the reed switches (0)
  column 243 (Locomotion): 1; columns 244-248 (other label tracks): 0
  column 249 (ML_Both_Arms): from GESTURES

column_names.txt and label_legend.txt are copies of the real files (CRLF, as distributed).
Run from the repository root: python -m tfds_builders.opportunity.make_dummy_data
"""

from __future__ import annotations

import pathlib
import shutil

import numpy as np

OUT = pathlib.Path(__file__).parent / "dummy_data" / "OpportunityUCIDataset" / "dataset"
REAL = (pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "opportunity" /
        "OpportunityUCIDataset" / "dataset")

# Rows per run file; those not listed have SHORT rows, too few for a 64-sample window.
ROWS = {"S1-Drill": 80, "S1-ADL1": 72, "S2-Drill": 64, "S3-ADL1": 71, "S2-ADL4": 72,
        "S3-ADL5": 64}
SHORT = 10
RUN_FILES = ([f"S1-{r}" for r in ("Drill", "ADL1", "ADL2", "ADL3", "ADL4", "ADL5")] +
             [f"S{s}-{r}" for s in (2, 3) for r in ("Drill", "ADL1", "ADL2", "ADL3", "ADL4",
                                                    "ADL5")])
# Per run file: (first row, end row, ML_Both_Arms code); other rows are Null (0).
GESTURES = {
    "S1-Drill": [(30, 70, 406516), (70, 80, 405506)],
    "S1-ADL1": [(60, 72, 407521)],
    "S2-Drill": [(0, 64, 404508)],
    "S2-ADL4": [(63, 64, 408512)],  # a one-sample gesture: only the window ending on it sees it
}
# Per run file: (0-based column, first row, end row) NaN gaps in body-worn channels.
GAPS = {
    "S1-Drill": [
        (1, 10, 15),  # Accelerometer RKN^ accX: interior gap
        (37, 0, 5),  # InertialMeasurementUnit BACK accX: before the first reading
        (102, 75, 80),  # InertialMeasurementUnit L-SHOE EuX: after the last reading
    ],
    "S1-ADL1": [(133, 0, 72)],  # InertialMeasurementUnit R-SHOE Compass: never a reading
}
REED_SWITCHES = range(194, 207)  # 0-based columns of the REED SWITCH channels


def value(row, column):
  return (column * 37 + row * 11 + 5900) % 7001 - 3500


def table_text(run_file: str) -> str:
  num_rows = ROWS.get(run_file, SHORT)
  labels = np.zeros(num_rows, np.int64)
  for lo, hi, code in GESTURES.get(run_file, []):
    labels[lo:hi] = code
  gaps = GAPS.get(run_file, [])
  lines = []
  for row in range(num_rows):
    fields = [str(33 * row)]
    for column in range(1, 134):
      nan = any(c == column and lo <= row < hi for c, lo, hi in gaps)
      fields.append("NaN" if nan else str(value(row, column)))
    fields += ["0" if column in REED_SWITCHES else "NaN" for column in range(134, 243)]
    fields += ["1", "0", "0", "0", "0", "0", str(labels[row])]
    lines.append(" ".join(fields))
  return "\n".join(lines) + "\n"


def main():
  OUT.mkdir(parents=True, exist_ok=True)
  for name in ("column_names.txt", "label_legend.txt"):
    shutil.copyfile(REAL / name, OUT / name)
  for run_file in RUN_FILES:
    (OUT / f"{run_file}.dat").write_text(table_text(run_file))
  (OUT.parent / "SYNTHETIC_README.txt").write_text(
      "The .dat files here are SYNTHETIC test data, not OPPORTUNITY recordings: written by "
      "tfds_builders/opportunity/make_dummy_data.py in the format of the real run files. "
      "dataset/column_names.txt and dataset/label_legend.txt are copies of the real files.\n")


if __name__ == "__main__":
  main()
