"""A device's ledger: `benchmarks/results/<device_slug>.jsonl`, one schema.Row per line.

Rows are appended as each is measured and flushed to disk at once, so a killed run keeps every
finished row. A line that does not parse (a killed write, a hand edit) is named by file and line
and skipped; its setting then counts as unmeasured and is measured again. Nothing else is lost.
"""

from __future__ import annotations

import os
import pathlib
import sys

from benchmarks import schema

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def path_for(device_slug: str, results: pathlib.Path = RESULTS) -> pathlib.Path:
  return pathlib.Path(results) / f"{device_slug}.jsonl"


def read(path: pathlib.Path, warn=lambda line: print(line, file=sys.stderr)) -> list[schema.Row]:
  """Every row of a ledger (none if it does not exist), the bad lines skipped with a warning."""
  path = pathlib.Path(path)
  if not path.exists():
    return []
  rows = []
  with open(path, encoding="utf-8", errors="replace") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        rows.append(schema.Row.from_json(line))
      except ValueError as e:
        warn(f"{path}:{number}: skipped, not a row ({e}); its setting will be measured again")
  return rows


def append(path: pathlib.Path, row: schema.Row) -> None:
  """Adds one row, on disk before this returns. A previous write cut mid-line (no newline at
  the end) is closed first, so that this row starts a line of its own."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "ab") as f:
    if f.tell() and not ends_with_newline(path):
      f.write(b"\n")
    f.write(row.to_json().encode() + b"\n")
    f.flush()
    os.fsync(f.fileno())


def ends_with_newline(path: pathlib.Path) -> bool:
  with open(path, "rb") as f:
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b"\n"


def measured(rows: list[schema.Row]) -> set[tuple]:
  """The identities (Row.identity) of what is measured: ok rows and error rows alike (an OOM
  is a result); a setting's row of other versions or step code does not count."""
  return {row.identity() for row in rows}
