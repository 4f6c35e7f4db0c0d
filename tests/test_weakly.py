"""TF-free tests of the weakly builder: composition rules, dummy builds, and real WISDM-2019 builds.

The real data lives beside the repository in shared/data; tests that need it are skipped, with
the reason, when it is absent.
"""

import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_builders import _common
from tfds_builders import downloads
from tfds_builders.weakly import weakly_dataset_builder as weakly
from tfds_builders.wisdm import wisdm_dataset_builder as wisdm
from tests.test_wisdm_builders import WISDM2019_REAL
from tests.test_wisdm_builders import build
from tests.test_wisdm_builders import needs_wisdm2019_real
from tests.test_wisdm_builders import read

DUMMY = pathlib.Path(weakly.__file__).parent / "dummy_data"


def config_named(name) -> weakly.WeaklyConfig:
  return next(c for c in weakly.Builder.BUILDER_CONFIGS if c.name == name)


def check_windows(splits, config: weakly.WeaklyConfig, sensors: int):
  for split in splits.values():
    assert split["signal"].shape[1:] == (config.window, sensors)
    assert split["signal"].dtype == np.float32 and np.isfinite(split["signal"]).all()
    length = split["segment_end"] - split["segment_start"]
    assert (split["segment_start"] >= 0).all() and (split["segment_end"] <= config.window).all()
    assert ((length >= config.segment_min) & (length <= config.segment_max)).all()
  train, test = (set(splits[s]["subject"].tolist()) for s in ("train", "test"))
  assert train and test and not train & test


def check_provenance(split, pieces_of, config: weakly.WeaklyConfig, rows):
  """Rebuilds windows from the source: walking outside the segment, the target inside it."""
  background = weakly.BACKGROUND[config.source]
  for i in rows:
    subject, label = int(split["subject"][i]), int(split["label"][i])
    start, end = int(split["segment_start"][i]), int(split["segment_end"][i])
    pieces = pieces_of(subject)

    def piece_of(activity, first, n):
      return next(p for p in pieces[activity]
                  if p.origin <= first and first + n <= p.origin + len(p.signal))

    def source(activity, first, n):
      piece = piece_of(activity, first, n)
      return piece.signal[first - piece.origin:first - piece.origin + n]

    walk = source(background, int(split["background_start"][i]), config.window)
    # The window's position, for the split protocols, is its background's.
    walk_piece = piece_of(background, int(split["background_start"][i]), config.window)
    assert walk_piece.recording >= 0
    assert (int(split["recording"][i]), int(split["start"][i])) == (
        walk_piece.recording, int(split["background_start"][i]))
    target = source(config.targets[label][1], int(split["target_start"][i]), end - start)
    signal = split["signal"][i]
    np.testing.assert_array_equal(signal[:start], walk[:start])
    np.testing.assert_array_equal(signal[end:], walk[end:])
    b = config.blend  # past the cross-fades, the target itself
    np.testing.assert_allclose(signal[start + b:end - b], target[b:-b], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Composition rules.


def test_raised_cosine_weights():
  w = weakly.raised_cosine_weights(100, 20)
  assert w.shape == (100,) and (w[20:80] == 1).all()
  assert 0 < w[0] < 0.01 and np.all(np.diff(w[:20]) > 0)
  np.testing.assert_allclose(w[:20], w[::-1][:20])  # symmetric
  np.testing.assert_allclose(w[:20] + w[19::-1], 1)  # the two ramps of a fade sum to one
  np.testing.assert_array_equal(weakly.raised_cosine_weights(10, 0), np.ones(10))
  assert weakly.raised_cosine_weights(6, 20)[3] < 1  # short segments: ramps of length // 2


def test_draw_offset_is_uniform_over_every_start():
  pieces = [weakly.Piece(0, np.zeros((10, 1))), weakly.Piece(50, np.zeros((3, 1))),
            weakly.Piece(90, np.zeros((5, 1)))]
  rng = np.random.default_rng(0)
  draws = [weakly.draw_offset(rng, pieces, 5) for _ in range(6000)]
  # Piece 0 has 6 starts of 5 samples, piece 1 none, piece 2 one: 7 equally likely starts.
  values, counts = np.unique(np.array(draws), axis=0, return_counts=True)
  assert [tuple(v) for v in values] == [(0, k) for k in range(6)] + [(2, 0)]
  assert counts.min() > 6000 / 7 * 0.85


def test_compose_is_a_pure_function_of_seed_and_skips_missing_classes():
  config = weakly.WeaklyConfig(name="t", window=64, targets=(("a", "A"), ("b", "B")),
                               segment_min=8, segment_max=16, blend=2, windows_per_class=5,
                               source="wisdm2019")
  rng = np.random.default_rng(1)
  pieces = {"walking": [weakly.Piece(0, rng.normal(size=(100, 2)).astype(np.float32))],
            "A": [weakly.Piece(7, rng.normal(size=(40, 2)).astype(np.float32))],
            "B": [weakly.Piece(0, np.zeros((15, 2), np.float32))]}  # shorter than segment_max
  first = list(weakly.compose_subject(config, 3, pieces))
  again = list(weakly.compose_subject(config, 3, pieces))
  assert [k for k, _ in first] == [f"3_a_{i}" for i in range(5)]  # class b skipped
  for (_, x), (_, y) in zip(first, again):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  other = list(weakly.compose_subject(config, 4, pieces))
  assert any(x["segment_start"] != y["segment_start"] for (_, x), (_, y) in zip(first, other))


# ---------------------------------------------------------------------------------------------
# Builds from dummy_data/ (synthetic raw files in both source formats).


def test_dummy_builds_both_sources(tmp_path):
  for name, sensors, counts in (("wisdm2019", 6, {"train": 256, "test": 256}),
                                ("wisdm", 3, {"train": 192, "test": 192})):
    build(weakly, tmp_path, DUMMY, name)
    splits = read(f"weakly/{name}", tmp_path)
    config = config_named(name)
    assert {k: len(v["label"]) for k, v in splits.items()} == counts
    check_windows(splits, config, sensors)
    assert set(splits["test"]["subject"].tolist()) <= set(weakly.TEST_SUBJECTS[name])
  root = DUMMY / "wisdm-dataset"
  splits = read("weakly/wisdm2019", tmp_path)
  activities = ["walking", *(a for _, a in weakly.WISDM2019_TARGETS)]
  check_provenance(splits["test"], lambda s: weakly.wisdm2019_pieces(root, s, activities),
                   config_named("wisdm2019"), range(0, 256, 17))
  by_user = weakly.wisdm_pieces(wisdm.parse_raw(DUMMY / "WISDM_ar_v1.1" / wisdm.RAW_FILE))
  check_provenance(read("weakly/wisdm", tmp_path)["train"], by_user.__getitem__,
                   config_named("wisdm"), range(0, 192, 13))
  info = tfds.builder("weakly/wisdm", data_dir=tmp_path).info
  assert info.features["label"].names == ["upstairs", "downstairs", "jogging"]


def test_missing_raw_files_fail_fast_with_instructions(tmp_path, monkeypatch):
  monkeypatch.setenv(downloads.OFFLINE_ENV, "1")
  (tmp_path / "empty").mkdir()
  with pytest.raises(_common.MissingRawFilesError) as error:
    build(weakly, tmp_path / "data", tmp_path / "empty", "wisdm2019")
  assert "manual_dir" in str(error.value)
  assert not weakly.Builder(data_dir=tmp_path / "data", config="wisdm2019").is_prepared()


# ---------------------------------------------------------------------------------------------
# Builds from the real WISDM-2019 watch data (12 staged subjects, 1600-1611).


@pytest.mark.slow
@needs_wisdm2019_real
def test_real_wisdm2019_build_is_pinned_and_deterministic(tmp_path):
  build(weakly, tmp_path / "a", WISDM2019_REAL, "wisdm2019")
  build(weakly, tmp_path / "b", WISDM2019_REAL, "wisdm2019")
  first, second = (read("weakly/wisdm2019", tmp_path / d) for d in ("a", "b"))
  config = config_named("wisdm2019")
  # Every subject has a walking piece of 1024 samples and a piece of each target of 256:
  # 8 train subjects (1600-1607) and 4 test subjects (1608-1611) x 4 classes x 64 windows.
  assert {k: len(v["label"]) for k, v in first.items()} == {"train": 2048, "test": 1024}
  for split in first.values():
    assert np.bincount(split["label"]).tolist() == [len(split["label"]) // 4] * 4
  assert set(first["test"]["subject"].tolist()) == {1608, 1609, 1610, 1611}
  assert set(first["train"]["subject"].tolist()) == set(range(1600, 1608))
  check_windows(first, config, 6)
  for split in first:
    for k in first[split]:
      np.testing.assert_array_equal(first[split][k], second[split][k])
  # The draws themselves are pinned: a change to the composition changes these sums.
  assert int(first["test"]["segment_start"].sum()) == 429_678
  assert int(first["test"]["segment_end"].sum() - first["test"]["segment_start"].sum()) == 197_593
  names = tfds.builder("weakly", data_dir=tmp_path / "a").info.features["label"].names
  assert names == ["jogging", "stairs", "kicking", "dribbling"]
  root = WISDM2019_REAL / "wisdm-dataset"
  activities = ["walking", *(a for _, a in weakly.WISDM2019_TARGETS)]
  pieces = {}
  check_provenance(
      first["test"],
      lambda s: pieces.setdefault(s, weakly.wisdm2019_pieces(root, s, activities)),
      config, range(0, 1024, 97))


@pytest.mark.slow
@needs_wisdm2019_real
def test_real_wisdm2019_2048_windows_fit(tmp_path):
  # 2048 samples (102.4 s) need continuous walking; every staged walking run is one unbroken
  # piece of 3,595-3,600 grid points, so all 12 subjects qualify.
  build(weakly, tmp_path, WISDM2019_REAL, "wisdm2019_2048")
  splits = read("weakly/wisdm2019_2048", tmp_path)
  assert {k: len(v["label"]) for k, v in splits.items()} == {"train": 2048, "test": 1024}
  check_windows(splits, config_named("wisdm2019_2048"), 6)
