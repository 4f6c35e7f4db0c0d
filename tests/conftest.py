"""Shared test fixtures: the repository root on sys.path, and where the real data lives."""

import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# CI clones the repository and puts shared/ beside it, as on the developers' machines.
SHARED_DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


@pytest.fixture
def shared_data():
  if not SHARED_DATA.exists():
    pytest.skip(f"real data not found at {SHARED_DATA}")
  return SHARED_DATA
