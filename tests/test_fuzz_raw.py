"""Fuzzed raw files: every parser either gives finite windows or its own error naming the file.

Property-based (hypothesis): each case takes the real bytes (the staged real data, where it exists)
or a format-faithful dummy_data fixture, and truncates, inserts, deletes or swaps bytes, or puts
NaN, inf, huge numbers, separators or non-UTF-8 where a field or any byte was. The parsing and
windowing functions run directly, not whole TFDS builds, so that a case takes milliseconds. A
RawFormatError or MissingRawFilesError must name a file of the case and, where it gives a line,
a line of that file; any other exception fails. 300 cases per parser here; the `slow`-marked
variant runs 5,000, outside CI (DANHAR_FUZZ_LONG=1).
"""

from __future__ import annotations

import functools
import io
import os
import re

import hypothesis
import numpy as np
import pytest
import scipy.io
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.conftest import SHARED_DATA
from tfds_builders import _common
from tfds_builders.opportunity import opportunity_dataset_builder as opportunity
from tfds_builders.pamap2 import pamap2_dataset_builder as pamap2
from tfds_builders.unimib_shar import unimib_shar_dataset_builder as unimib
from tfds_builders.wisdm import wisdm_dataset_builder as wisdm
from tfds_builders.wisdm2019 import wisdm2019_dataset_builder as wisdm2019

BUILDERS = ROOT / "tfds_builders"
OPP_DUMMY = BUILDERS / "opportunity" / "dummy_data" / "OpportunityUCIDataset" / "dataset"
UNIMIB_DUMMY = BUILDERS / "unimib_shar" / "dummy_data" / "UniMiB-SHAR" / "data"
W19 = "raw/watch/{}/data_1600_{}_watch.txt"

# What a damaged field may become: not-a-numbers, overflows, separators, non-UTF-8.
TOKENS = (b"NaN", b"nan", b"-nan", b"inf", b"-inf", b"Infinity", b"1e400", b"-1e309", b"1e308",
          b"3.5e38", b"9" * 25, b"-" + b"9" * 400, b"0x1F", b"1_0", b"", b"\xff", b"\xc3\x28",
          b"\x00", b"\xe2\x82\xac", b";", b",", b",;", b"\n", b"\r\n", b" ", b"\t", b"+", b".",
          b"e", b"-")
NUMBER = re.compile(rb"[-+0-9.eE]+")


def head(path, lines: int) -> bytes:
  """The first `lines` lines of a file, its real bytes."""
  with open(path, "rb") as f:
    return b"".join(f.readline() for _ in range(lines))


def read(path) -> bytes:
  with open(path, "rb") as f:
    return f.read()


# Each parser: its cases (sets of files, {relative path: bytes}, one of which is damaged per
# case) and the function from a folder holding such a set to the windows the builder would write.


def wisdm_cases():
  cases = [{"raw.txt": read(BUILDERS / "wisdm/dummy_data/WISDM_ar_v1.1/WISDM_ar_v1.1_raw.txt")}]
  real = SHARED_DATA / "wisdm_ar_v1.1/WISDM_ar_v1.1/WISDM_ar_v1.1_raw.txt"
  if real.exists():
    cases.append({"raw.txt": head(real, 450)})
  return cases


def wisdm_windows(folder):
  records = wisdm.parse_raw(folder / "raw.txt")
  starts = np.concatenate([wisdm.random_split_windows(records)[0],
                           wisdm.subject_run_windows(records)])
  wisdm._majority(records.activity, starts)  # the labels, as the builder computes them
  return [records.xyz[s:s + wisdm.WINDOW] for s in starts.tolist()]


def wisdm2019_cases():
  dummy = BUILDERS / "wisdm2019/dummy_data/wisdm-dataset"
  real = SHARED_DATA / "wisdm_2019/wisdm-dataset"
  roots = [(dummy, None)] + ([(real, 450)] if real.exists() else [])
  return [{W19.format(s, s): head(root / W19.format(s, s), n) if n else read(root / W19.format(
      s, s)) for s in wisdm2019.SENSORS} for root, n in roots]


def wisdm2019_windows(folder):
  paths = {s: folder / W19.format(s, s) for s in wisdm2019.SENSORS}
  streams = {s: wisdm2019.parse_stream(p, 1600) for s, p in paths.items()}
  windows = []
  for letter in wisdm2019.ACTIVITIES:
    signal, valid = wisdm2019.align(*(wisdm2019.run_samples(streams[s], letter, paths[s])
                                      for s in wisdm2019.SENSORS))
    windows += [signal[s:s + wisdm2019.WINDOW]
                for s in wisdm2019.segment_window_starts(valid).tolist()]
  return windows


def pamap2_cases():
  # 700 rows of 100 Hz: one activity run, long enough for a window at 33.3 Hz.
  return [{"subject101.dat": head(BUILDERS / "pamap2/dummy_data/PAMAP2_Dataset/Protocol/"
                                  "subject101.dat", 700)}]


def pamap2_windows(folder):
  path = folder / "subject101.dat"
  return [signal for _, _, signal in pamap2.subject_windows(pamap2.load_subject(path), path)]


def opportunity_dat_cases():
  return [{"S1-ADL1.dat": read(OPP_DUMMY / "S1-ADL1.dat")}]


_PROTOCOL = []


def opportunity_dat_windows(folder):
  if not _PROTOCOL:
    _PROTOCOL.append(opportunity.Protocol(OPP_DUMMY))
  signal, classes = _PROTOCOL[0].load_run(folder / "S1-ADL1.dat")
  starts = _common.window_starts(len(signal), opportunity.WINDOW, opportunity.STEP)
  classes[starts + opportunity.WINDOW - 1]  # the labels, as the builder takes them
  return [signal[s:s + opportunity.WINDOW] for s in starts.tolist()]


def opportunity_description_cases():
  root = SHARED_DATA / "opportunity/OpportunityUCIDataset/dataset"
  root = root if root.exists() else OPP_DUMMY
  return [{name: read(root / name) for name in ("column_names.txt", "label_legend.txt")}]


def opportunity_description_windows(folder):
  opportunity.Protocol(folder)
  return []


@functools.lru_cache(maxsize=None)
def unimib_cases():
  dummy = {f"acc_{v}.mat": read(UNIMIB_DUMMY / f"acc_{v}.mat")
           for v in ("names", "labels", "data")}
  cases = [dummy]
  real = SHARED_DATA / "unimib_shar/UniMiB-SHAR/data"
  if real.exists():  # the real names and labels, with zeros for the acc_data.mat not staged
    labels = read(real / "acc_labels.mat")
    rows = len(scipy.io.loadmat(io.BytesIO(labels))["acc_labels"])
    zeros = io.BytesIO()
    scipy.io.savemat(zeros, {"acc_data": np.zeros((rows, 453))}, do_compression=True)
    cases += [{**dummy, "acc_names.mat": read(real / "acc_names.mat")},
              {**dummy, "acc_labels.mat": labels, "acc_data.mat": zeros.getvalue()}]
  return cases


def unimib_windows(folder):
  signal, _ = unimib.load(folder)
  return list(signal)


PARSERS = {
    "wisdm_v1.1": (wisdm_cases, wisdm_windows),
    "wisdm2019": (wisdm2019_cases, wisdm2019_windows),
    "pamap2_dat": (pamap2_cases, pamap2_windows),
    "opportunity_dat": (opportunity_dat_cases, opportunity_dat_windows),
    "opportunity_description": (opportunity_description_cases, opportunity_description_windows),
    "unimib_mat": (unimib_cases, unimib_windows),
}


@st.composite
def damaged(draw, cases):
  """One case with one of its files damaged 1-3 times."""
  files = dict(draw(st.sampled_from(cases)))
  name = draw(st.sampled_from(sorted(files)))
  data = bytearray(files[name])
  for _ in range(draw(st.integers(1, 3))):
    kind = draw(st.sampled_from(("truncate", "insert", "delete", "swap", "field", "field")))
    at = draw(st.integers(0, len(data)))
    token = draw(st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=8)))
    if kind == "truncate":
      del data[at:]
    elif kind == "insert":
      data[at:at] = token
    elif kind == "delete":
      del data[at:at + draw(st.integers(1, 64))]
    elif kind == "swap" and data:
      other = draw(st.integers(0, len(data) - 1))
      at = min(at, len(data) - 1)
      data[at], data[other] = data[other], data[at]
    elif kind == "field":  # a whole number becomes the token
      fields = [m.span() for m in NUMBER.finditer(data)]
      if fields:
        lo, hi = fields[draw(st.integers(0, len(fields) - 1))]
        data[lo:hi] = token
  files[name] = bytes(data)
  return files


def fuzz(parser: str, examples: int, folder) -> None:
  cases_fn, windows_fn = PARSERS[parser]
  cases = cases_fn()
  folder.mkdir(parents=True, exist_ok=True)

  @hypothesis.settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                       suppress_health_check=list(hypothesis.HealthCheck))
  @hypothesis.given(damaged(cases))
  def check(files):
    for name, data in files.items():
      (folder / name).parent.mkdir(parents=True, exist_ok=True)
      (folder / name).write_bytes(data)
    try:
      windows = windows_fn(folder)
    except (_common.RawFormatError, _common.MissingRawFilesError) as e:
      message = str(e)
      named = [n for n in files if os.fspath(folder / n) in message]
      assert named, f"the error names no file of the case: {message}"
      line = getattr(e, "line", None)
      if line is not None:
        lines = files[named[0]].count(b"\n") + 1
        assert 1 <= line <= lines, f"line {line} of a {lines}-line file: {message}"
      return
    for w in windows:
      assert np.isfinite(w).all(), "a window holds NaN or inf"

  check()


@pytest.mark.slow
@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_fuzzed_raw_files_give_finite_windows_or_a_builder_error(parser, tmp_path):
  fuzz(parser, 300, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DANHAR_FUZZ_LONG"), reason="about 5 minutes: run with "
                    "DANHAR_FUZZ_LONG=1 pytest -m slow tests/test_fuzz_raw.py")
@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_fuzzed_raw_files_slow(parser, tmp_path):
  fuzz(parser, 5000, tmp_path)


@pytest.mark.parametrize("parser", sorted(PARSERS))
def test_undamaged_cases_give_windows(parser, tmp_path):
  """The base cases parse as they are (so damage, not the fixture, is what fails)."""
  cases_fn, windows_fn = PARSERS[parser]
  for files in cases_fn():
    for name, data in files.items():
      (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
      (tmp_path / name).write_bytes(data)
    windows = windows_fn(tmp_path)
    assert parser == "opportunity_description" or windows


# The damage the fuzz found escaping, one row each: (parser, file, bytes replaced, by what, the
# error's line or None, its message).
FOUND = [
    ("wisdm_v1.1", "raw.txt", b"0.2825", b"3.5e38", 1, "out-of-range value"),
    ("wisdm2019", W19.format("accel", "accel"), b"-0.0956", b"1e400", 1, "non-finite value"),
    ("wisdm2019", W19.format("accel", "accel"), b"90426708196641", b"9" * 25, 1, "beyond int64"),
    ("pamap2_dat", "subject101.dat", None, b"3.5e38", 13, "non-finite value (or one beyond"),
    ("opportunity_description", "column_names.txt", b"R-SHOE AngVelNavFrameX",
     b"R-SHOE XngVelNavFrameX", None, "no normalisation threshold for channel"),
    ("opportunity_description", "column_names.txt", b"Column: 2 Accelerometer RKN^ accX",
     b"Column: 2 Accelerometer", None, "body-worn channels, expected 113"),
    ("opportunity_description", "label_legend.txt", b"\r\n\r\n1   -", b"\r\n\x0cx\r\n1   -", 2,
     "not `CODE - TRACK - NAME`: 'x'"),  # \x0c, a line break to str.splitlines only
    ("opportunity_description", "column_names.txt", b"Column: 250 ML_Both_Arms",
     b"Column: 250 DL_Both_Arms", None, "no column named ML_Both_Arms"),
    ("unimib_mat", "acc_data.mat", None, None, 1, "non-finite value (or one beyond"),
]


@pytest.mark.parametrize("parser,name,old,new,line,message", FOUND,
                         ids=[f"{r[0]}-{r[5]}" for r in FOUND])
def test_damage_the_fuzz_found(parser, name, old, new, line, message, tmp_path):
  files = dict(PARSERS[parser][0]()[0])
  if parser == "pamap2_dat":  # the hand IMU's temperature on line 13, the first of activity 1
    lines = files[name].split(b"\n")
    fields = lines[12].split(b" ")
    fields[3] = new
    lines[12] = b" ".join(fields)
    files[name] = b"\n".join(lines)
  elif parser == "unimib_mat":
    data = scipy.io.loadmat(io.BytesIO(files[name]))["acc_data"]
    data[0, 0] = 3.5e38  # finite in float64, inf as the float32 the builder stores
    out = io.BytesIO()
    scipy.io.savemat(out, {"acc_data": data})
    files[name] = out.getvalue()
  else:
    assert old in files[name]
    files[name] = files[name].replace(old, new, 1)
  for n, data in files.items():
    (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / n).write_bytes(data)
  with pytest.raises(_common.RawFormatError) as raised:
    PARSERS[parser][1](tmp_path)
  assert raised.value.path == os.fspath(tmp_path / name) and raised.value.line == line
  assert message in str(raised.value)
