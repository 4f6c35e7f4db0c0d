"""Hostile conditions around a run's workdir: another config, a full disk, damaged checkpoints.

Each run trains the small fake-data model of tests/test_train.py; the runs that are interrupted
must resume bit-identically to `whole`, one uninterrupted two-epoch run shared by the module.
"""

import errno
import glob
import logging
import os
import shutil
import subprocess
import uuid

import numpy as np
import orbax.checkpoint as ocp
import pytest
from tensorboardX import record_writer

from configs import wisdm
from danhar_jax import checkpoints
from danhar_jax import disk
from danhar_jax import input_pipeline
from danhar_jax import train
from danhar_jax import writers
from tests.test_train import SHAPE, eval_tail, fake_splits, leaves, quick_config

pytestmark = pytest.mark.slow  # each test trains one or two epochs: 10-40 s


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
  """An uninterrupted two-epoch run: (workdir, final state)."""
  workdir = str(tmp_path_factory.mktemp("whole") / "run")
  data = fake_splits()
  with pytest.MonkeyPatch.context() as m:
    m.setattr(input_pipeline, "open_splits", lambda config: data)
    state = train.train_and_evaluate(quick_config(2), workdir)
  return workdir, state


@pytest.fixture
def fake_data(monkeypatch):
  data = fake_splits()
  monkeypatch.setattr(input_pipeline, "open_splits", lambda config: data)


def assert_same_run(whole, workdir, state, same_logging=True):
  for a, b in zip(leaves(whole[1]), leaves(state)):
    np.testing.assert_array_equal(a, b)
  # The train metrics in a record average the steps since the last log line.
  drop = () if same_logging else ("train_loss", "train_accuracy")
  assert ([{k: v for k, v in r.items() if k not in drop} for r in eval_tail(whole[0])] ==
          [{k: v for k, v in r.items() if k not in drop} for r in eval_tail(workdir)])


def one_line(e) -> str:
  text = str(e.value)
  assert "\n" not in text, text
  return text


# ---------------------------------------------------------------------------------------------
# A workdir belongs to one config.


def test_only_the_resumable_fields_may_differ():
  stored = quick_config().to_dict()
  stored["resolved"] = {"conv_impl": "winograd"}
  given = quick_config()
  given.num_epochs, given.log_every_steps, given.data_dir = 9, 7, "/elsewhere"
  given.model.conv_impl = "im2col"  # every conv_impl shares the parameters
  assert checkpoints.config_differences(stored, given.to_dict()) == []  # tuples vs JSON lists
  given.seed, given.model.widths = 1, (8, 16, 16)
  assert checkpoints.config_differences(stored, given.to_dict()) == [
      ("model.widths", [16, 16, 16], [8, 16, 16]), ("seed", 0, 1)]


def cnn_config(num_epochs):
  config = wisdm.get_config("cnn,quick")
  config.num_epochs = num_epochs
  config.input_shape, config.model.widths = SHAPE, (16, 16, 16)
  return config


def test_resuming_with_another_variant_or_seed_is_refused_in_one_line(fake_data, whole, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(whole[0], workdir)
  before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
  with pytest.raises(checkpoints.ConfigMismatchError) as e:
    train.train_and_evaluate(cnn_config(3), workdir)
  line = one_line(e)
  assert 'model.backbone: "resnet" stored, "cnn" given' in line, line
  assert 'model.attention: "channel_temporal" stored, "none" given' in line, line
  assert "lr_schedule" in line and "num_epochs" not in line.split("(only")[0], line
  config = quick_config(3)
  config.seed = 1
  with pytest.raises(checkpoints.ConfigMismatchError, match="seed: 0 stored, 1 given"):
    train.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


def test_evaluating_with_another_model_is_refused_but_training_settings_may_differ(fake_data,
                                                                                   whole):
  """--mode=eval: the model and the test subjects must be the stored ones; how the checkpoint
  was trained (learning rate, seed, epochs) need not be retyped."""
  config = quick_config(7)
  config.learning_rate, config.seed, config.batch_size = 0.5, 3, 8
  result = train.evaluate(config, whole[0])
  assert result["step"] == eval_tail(whole[0])[-1]["step"]
  assert result["accuracy"] == eval_tail(whole[0])[-1]["accuracy"]
  config = quick_config(2)
  config.model.logit_standardization = not config.model.logit_standardization
  with pytest.raises(checkpoints.ConfigMismatchError) as e:
    train.evaluate(config, whole[0])
  assert "model.logit_standardization" in one_line(e) and "Evaluate it" in one_line(e)


def test_num_epochs_and_logging_may_change_on_resume(fake_data, whole, tmp_path):
  workdir = str(tmp_path / "run")
  config = quick_config(1)
  config.log_every_steps, config.profile_steps = 2, 0
  train.train_and_evaluate(config, workdir)
  config = quick_config(2)
  config.log_every_steps, config.max_checkpoints_to_keep = 3, 5
  config.data_dir = str(tmp_path / "moved")
  assert_same_run(whole, workdir, train.train_and_evaluate(config, workdir),
                  same_logging=False)


# ---------------------------------------------------------------------------------------------
# A full disk.


def enospc(*args, **kwargs):
  raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_checkpointing_stops_then_resumes(fake_data, whole, tmp_path,
                                                          monkeypatch):
  workdir = str(tmp_path / "run")
  save = ocp.CheckpointManager.save

  def full_at_step_6(self, step, *args, **kwargs):
    if step == 6:
      self.wait_until_finished()  # as Orbax's save does first
      enospc()
    return save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", full_at_step_6)
  with pytest.raises(disk.DiskFullError) as e:
    train.train_and_evaluate(quick_config(2), workdir)
  line = one_line(e)
  assert f"while writing {workdir}/checkpoints/6 (" in line and " free there)" in line, line
  assert checkpoints.manager(workdir).all_steps() == [3]
  monkeypatch.setattr(ocp.CheckpointManager, "save", save)  # space freed
  assert_same_run(whole, workdir, train.train_and_evaluate(quick_config(2), workdir))


def test_full_disk_while_logging_metrics_stops_then_resumes(fake_data, whole, tmp_path,
                                                            monkeypatch):
  workdir = str(tmp_path / "run")
  jsonl = os.path.join(workdir, "eval_metrics.jsonl")
  fsync = os.fsync

  def full_at_epoch_2(fd):
    # The second record is on its way to the disk: the file holds two lines.
    if os.readlink(f"/proc/self/fd/{fd}") == jsonl and open(jsonl).read().count("\n") >= 2:
      enospc()
    return fsync(fd)

  monkeypatch.setattr(os, "fsync", full_at_epoch_2)
  with pytest.raises(disk.DiskFullError, match=f"while writing {jsonl} ") as e:
    train.train_and_evaluate(quick_config(2), workdir)
  one_line(e)
  assert [r["epoch"] for r in writers.read_eval_metrics(workdir)] == [1]  # no half line
  monkeypatch.setattr(os, "fsync", fsync)
  assert_same_run(whole, workdir, train.train_and_evaluate(quick_config(2), workdir))


def test_full_disk_while_writing_tensorboard_events_stops(fake_data, tmp_path, monkeypatch):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(quick_config(1), workdir)
  write = record_writer.RecordWriter.write

  def full_after_the_header(self, data):  # the events come from tensorboardX's own thread
    if getattr(self, "wrote_header", False):
      enospc()
    self.wrote_header = True
    return write(self, data)

  monkeypatch.setattr(record_writer.RecordWriter, "write", full_after_the_header)
  with pytest.raises(disk.DiskFullError, match=r"while writing .*tensorboard/events\.out") as e:
    train.train_and_evaluate(quick_config(2), workdir)
  one_line(e)
  assert checkpoints.manager(workdir).latest_step() >= 3


@pytest.fixture
def tmpfs(tmp_path):
  """A 1 MiB filesystem of its own, where the machine lets us mount one (root)."""
  mount = tmp_path / "tmpfs"
  mount.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                    capture_output=True).returncode:
    pytest.skip("cannot mount a tmpfs here; the patched-write tests cover the full disk")
  yield mount
  subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_disk_stops_then_resumes(fake_data, whole, tmpfs):
  workdir = str(tmpfs / "run")
  train.train_and_evaluate(quick_config(1), workdir)
  ballast = tmpfs / "ballast"
  ballast.write_bytes(b"\0" * (shutil.disk_usage(tmpfs).free - 48 * 1024))
  with pytest.raises(disk.DiskFullError) as e:
    train.train_and_evaluate(quick_config(2), workdir)
  line = one_line(e)
  assert f"while writing {workdir}/" in line and " free there)" in line, line
  assert checkpoints.manager(workdir).all_steps() == [3]
  ballast.unlink()
  assert_same_run(whole, workdir, train.train_and_evaluate(quick_config(2), workdir))


# ---------------------------------------------------------------------------------------------
# A damaged checkpoint.


def truncate_arrays(step_dir):
  for f in glob.glob(f"{step_dir}/state/ocdbt.process_0/d/*"):
    with open(f, "r+b") as fh:
      fh.truncate(os.path.getsize(f) // 2)


def flip_bytes(step_dir):
  for f in glob.glob(f"{step_dir}/state/ocdbt.process_0/d/*"):
    data = bytearray(open(f, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(f, "wb").write(bytes(data))


def drop_metadata(step_dir):
  os.remove(f"{step_dir}/state/_METADATA")


def drop_config(step_dir):
  shutil.rmtree(f"{step_dir}/config")


@pytest.mark.parametrize("damage", [truncate_arrays, flip_bytes, drop_metadata, drop_config])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(fake_data, whole, tmp_path, caplog,
                                                                damage):
  workdir = str(tmp_path / f"run_{uuid.uuid4().hex[:6]}")
  shutil.copytree(whole[0], workdir)
  damage(os.path.join(workdir, "checkpoints", "6"))
  with caplog.at_level(logging.WARNING):
    state = train.train_and_evaluate(quick_config(2), workdir)
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert any("checkpoint at step 6" in w and "damaged" in w for w in warnings), warnings
  assert any("Resuming from step 3" in w for w in warnings), warnings
  assert os.listdir(os.path.join(workdir, checkpoints.DAMAGED_DIR)) == ["6"]
  assert checkpoints.manager(workdir).all_steps() == [3, 6]
  assert_same_run(whole, workdir, state)


def test_no_readable_checkpoint_stops_in_one_line_never_from_scratch(fake_data, whole, tmp_path):
  workdir = str(tmp_path / "run")
  shutil.copytree(whole[0], workdir)
  for step in ("3", "6"):
    drop_metadata(os.path.join(workdir, "checkpoints", step))
  with pytest.raises(checkpoints.DamagedCheckpointError) as e:
    train.train_and_evaluate(quick_config(3), workdir)
  assert "can be read (steps 6, 3 are damaged)" in one_line(e)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6"]
