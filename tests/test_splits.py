"""danhar_jax/splits.py on hand-made window metadata: exact counts, every error one line."""

import numpy as np
import pytest

from danhar_jax import splits


def windows(subject, recording, start, builder_test=None):
  n = len(subject)
  return splits.Windows(np.asarray(subject), None if recording is None else np.asarray(recording),
                        None if start is None else np.asarray(start),
                        np.zeros(n, bool) if builder_test is None else np.asarray(builder_test))


def stream(recordings=2, per_recording=10, step=100, subjects=(1, 2)):
  """`per_recording` windows every `step` samples in each recording; recording r is subject
  subjects[r % len(subjects)]. The first 70% of each recording is the builder's train split."""
  rec = np.repeat(np.arange(recordings), per_recording)
  start = np.tile(np.arange(per_recording) * step, recordings)
  subject = np.asarray(subjects)[rec % len(subjects)]
  return windows(subject, rec, start, np.tile(np.arange(per_recording) >= 7, recordings))


def test_overlap_counts_shared_samples_exactly():
  train = windows([1] * 4, [0, 0, 1, 2], [0, 400, 0, 1000])
  # Length 200: test 150 touches train 0 (|150 - 0| < 200); 200 touches none in recording 0
  # (0 + 200 is the first sample after it); 550 touches 400; recording 1 at 199 touches 0;
  # recording 2 at 801 touches 1000; recording 3 has no training window.
  test = windows([1] * 6, [0, 0, 0, 1, 2, 3], [150, 200, 550, 199, 801, 0])
  np.testing.assert_array_equal(splits.overlapping(test, train, 200),
                                [True, False, True, True, True, False])
  assert splits.overlap(train, test, 200) == 4
  assert splits.overlap(train, test, 1) == 0  # a one-sample window only overlaps itself
  assert splits.overlap(train, windows([1], [0], [400]), 1) == 1
  # Unknown positions: no count.
  assert splits.overlap(windows([1], [-1], [-1]), test, 200) is None
  assert splits.overlap(windows([1], None, None), test, 200) is None
  assert splits.overlap(windows([], [], []), test, 200) == 0


def test_overlap_never_reaches_into_another_recording():
  big = splits._MAX_START - 300
  train = windows([1, 1], [4, 6], [big, 0])
  test = windows([1, 1], [5, 5], [0, big])
  assert splits.overlap(train, test, 200) == 0


def test_default_is_the_builders_split_or_test_subjects():
  w = stream()
  out = splits.assign(w, 200, splits.Protocol())
  np.testing.assert_array_equal(out.test, [7, 8, 9, 17, 18, 19])
  np.testing.assert_array_equal(out.train, [0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16])
  assert not len(out.validation) and not len(out.removed)
  out = splits.assign(w, 200, splits.Protocol(test_subjects=(2,)))
  np.testing.assert_array_equal(out.test, np.arange(10, 20))
  np.testing.assert_array_equal(out.train, np.arange(10))
  same = splits.assign(w, 200, splits.Protocol(split="subjects", test_subjects=(2,)))
  np.testing.assert_array_equal(same.test, out.test)


def test_random_windows_draws_30_percent_by_seed_and_the_gap_removes_neighbours():
  w = stream(recordings=4, per_recording=50)  # 200 windows, 50% overlap (step 100, length 200)
  leaky = splits.assign(w, 200, splits.Protocol(split="random_windows", seed=3))
  assert len(leaky.test) == 60 and len(leaky.train) == 140
  assert not np.intersect1d(leaky.train, leaky.test).size
  again = splits.assign(w, 200, splits.Protocol(split="random_windows", seed=3))
  np.testing.assert_array_equal(again.test, leaky.test)
  other = splits.assign(w, 200, splits.Protocol(split="random_windows", seed=4))
  assert not np.array_equal(other.test, leaky.test)
  gap = splits.assign(w, 200, splits.Protocol(split="random_windows_gap", seed=3))
  np.testing.assert_array_equal(gap.test, leaky.test)
  # Exactly the training windows next to a test window (start +- 100, same recording) go.
  is_test = np.zeros(len(w), bool)
  is_test[leaky.test] = True
  position = np.arange(len(w)) % 50
  neighbour = np.zeros(len(w), bool)
  neighbour[1:] |= is_test[:-1] & (position[1:] > 0)
  neighbour[:-1] |= is_test[1:] & (position[:-1] < 49)
  expected = np.flatnonzero(~is_test & neighbour)
  np.testing.assert_array_equal(gap.removed, expected)
  np.testing.assert_array_equal(gap.train, np.setdiff1d(leaky.train, expected))
  take = w.take
  assert splits.overlap(take(leaky.train), take(leaky.test), 200) > 0
  assert splits.overlap(take(gap.train), take(gap.test), 200) == 0


def test_gap_on_a_hand_made_stream():
  # One recording, windows every 100 of length 200; test = builder_test isn't used by the
  # random protocols, so check the arithmetic through `overlapping` on a fixed test set.
  w = windows([1] * 6, [0] * 6, [0, 100, 200, 300, 400, 500])
  test = w.take([2])
  np.testing.assert_array_equal(splits.overlapping(w.take([0, 1, 3, 4, 5]), test, 200),
                                [False, True, True, False, False])
  np.testing.assert_array_equal(splits.overlapping(w.take([0, 1, 3, 4, 5]), test, 300),
                                [True, True, True, True, False])


def test_validation_by_subject_fraction_and_ids():
  w = stream(recordings=10, per_recording=10, subjects=range(1, 11))
  p = splits.Protocol(split="subjects", test_subjects=(9, 10), validation_fraction=0.25, seed=1)
  out = splits.assign(w, 200, p)
  val_subjects = set(w.subject[out.validation].tolist())
  assert len(val_subjects) == 2 and not val_subjects & {9, 10}  # round(0.25 * 8) = 2
  assert not set(w.subject[out.train].tolist()) & (val_subjects | {9, 10})
  assert len(out.train) + len(out.validation) + len(out.test) == 100
  out = splits.assign(w, 200, splits.Protocol(split="subjects", test_subjects=(9, 10),
                                              validation_subjects=(1, 3)))
  assert set(w.subject[out.validation].tolist()) == {1, 3}


def test_window_level_validation_never_overlaps_a_test_window():
  w = stream(recordings=4, per_recording=50)
  for split in ("random_windows", "random_windows_gap"):
    out = splits.assign(w, 200, splits.Protocol(split=split, validation_fraction=0.1, seed=0))
    assert len(out.validation) == 14  # round(0.1 * 140)
    assert splits.overlap(w.take(out.validation), w.take(out.test), 200) == 0
    assert not np.intersect1d(out.validation, out.train).size
    audit = splits.audit(w, out, 200, split)
    assert audit["test_windows_overlapping_validation"] == 0
    if split == "random_windows_gap":  # the gap also keeps training off the validation windows
      assert audit["test_windows_overlapping_train"] == 0
      assert audit["validation_windows_overlapping_train"] == 0
    else:
      assert audit["test_windows_overlapping_train"] > 0


def test_unknown_positions():
  w = windows([1, 2] * 10, [-1] * 20, [-1] * 20)
  out = splits.assign(w, 200, splits.Protocol(split="random_windows", validation_fraction=0.1))
  audit = splits.audit(w, out, 200, "random_windows")
  assert audit["test_windows_overlapping_train"] == "unknown"
  with pytest.raises(ValueError, match="recording = -1"):
    splits.assign(w, 200, splits.Protocol(split="random_windows_gap"))
  with pytest.raises(splits.MissingPositions, match="random_windows_gap"):
    splits.assign(windows([1, 2] * 10, None, None), 200,
                  splits.Protocol(split="random_windows_gap"))
  # The paper's protocol itself runs without positions; only its audit is unknown.
  old = windows([1, 2] * 10, None, None)
  out = splits.assign(old, 200, splits.Protocol(split="random_windows"))
  assert splits.audit(old, out, 200, "random_windows")["test_windows_overlapping_train"] == (
      "unknown")


@pytest.mark.parametrize("protocol, message", [
    (splits.Protocol(split="subjects"), r"split='subjects' needs config.test_subjects .*"
     r"subjects are \[1, 2\]"),
    (splits.Protocol(test_subjects=(7,)), r"test_subjects \[7\] are not in the dataset"),
    (splits.Protocol(split="subjects", test_subjects=(2,), validation_subjects=(2,)),
     r"validation_subjects \[2\] are also test subjects"),
    (splits.Protocol(split="random_windows", validation_subjects=(1,)),
     r"validation_subjects \[1\] are also test subjects.*validation_fraction"),
    (splits.Protocol(split="subjects", test_subjects=(2,), validation_subjects=(5,)),
     r"validation_subjects \[5\] are not in the dataset; its subjects are \[1, 2\]"),
    (splits.Protocol(split="subjects", test_subjects=(2,), validation_fraction=0.5),
     r"of the 1 training subjects \[1\] leaves none"),
    (splits.Protocol(split="random_windows", validation_fraction=0.5, min_train=1),
     r"only \d+ of the 14 training windows share no samples"),
    (splits.Protocol(split="random_windows", validation_fraction=0.1, min_train=64),
     r"leaves 13 training windows, fewer than one batch \(config.batch_size=64\)"),
    (splits.Protocol(split="shuffled"), r"config.split='shuffled' is not one of"),
    (splits.Protocol(split="random_windows_gap", test_subjects=(1,)),
     r"config.test_subjects='1' and config.split='random_windows_gap' disagree"),
])
def test_bad_protocols_fail_with_one_line(protocol, message):
  with pytest.raises(ValueError, match=message) as error:
    splits.assign(stream(), 200, protocol)
  assert "\n" not in str(error.value)


def test_protocol_from_config():
  import ml_collections  # pylint: disable=import-outside-toplevel
  config = ml_collections.ConfigDict(dict(
      split="subjects", test_subjects="3, 1", validation_subjects="", validation_fraction=0.2,
      seed=5, batch_size=32))
  assert splits.Protocol.from_config(config) == splits.Protocol(
      split="subjects", test_subjects=(1, 3), validation_fraction=0.2, seed=5, min_train=32)
  config.validation_subjects = "2"
  with pytest.raises(ValueError, match="Set one of config.validation_subjects"):
    splits.Protocol.from_config(config)
  config.validation_subjects, config.validation_fraction = "a,b", 0.0
  with pytest.raises(ValueError, match=r"config.validation_subjects='a,b' must be"):
    splits.Protocol.from_config(config)
