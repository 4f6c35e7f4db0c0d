"""The benchmark's plan, ledger and runner: bad input, resuming after a kill, the exit status."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from benchmarks import ledger
from benchmarks import plan
from benchmarks import runner
from benchmarks import schema
from benchmarks import throughput

ROOT = runner.ROOT
# Tiny models and splits: what is tested is the bookkeeping, not the speed.
TINY = ["--widths=8,8,8", "--split_windows=64", "--batch_cap=4", "--repeats=3",
        "--min_repeat_s=0.01", "--warmup=0"]


def row(setting: plan.Setting, **kw) -> schema.Row:
  fields = dict(priority=1, status="ok", device="cpu", device_slug="cpu_test", platform="cpu",
                step_code="abc", versions={"jax": "1"}, env={}, measured_at="2026-12-06T00:00:00",
                wall_s=1.0, windows_per_s=10.0)
  return schema.Row(setting=setting, **{**fields, **kw})


@pytest.mark.parametrize("kw, named", [
    ({"config": "mnist"}, "config 'mnist' is not one of: wisdm, pamap2"),
    ({"contender": "keras"}, "contender 'keras' is not one of: block, step"),
    ({"numerics": "fp8"}, "numerics 'fp8' is not one of: f32, tf32, bf16"),
    ({"mapping": "vmap"}, "mapping 'vmap' is not one of: pmap, shard_map"),
    ({"batch": 0}, "batch 0 must be a whole number >= 1"),
    ({"contender": "eager"}, "the eager peer, and only it, runs PyTorch's defaults"),
])
def test_an_unknown_setting_field_is_named_with_what_is_allowed(kw, named):
  fields = dict(config="wisdm", contender="block", numerics="f32", batch=64)
  with pytest.raises(ValueError, match=None) as e:
    plan.Setting(**{**fields, **kw})
  assert named in str(e.value) and "\n" not in str(e.value)


def test_the_command_line_names_an_unknown_value_and_what_is_allowed(capsys):
  with pytest.raises(SystemExit):
    throughput.options(["--contenders=block,keras"])
  err = capsys.readouterr().err.strip().splitlines()[-1]
  assert "'keras' is not one of: block, step, trainer" in err


def test_the_core_table_comes_first_on_every_backend():
  for backend, numerics, batches in (("gpu", {"tf32", "bf16", "torch_default"}, {256}),
                                     ("cpu", {"f32", "torch_default"}, {64, 256})):
    planned = plan.plan(backend)
    first = [p for p in planned if p.priority == 1]
    assert planned[:len(first)] == first
    assert {p.setting.contender for p in first} == {"block", "trainer", "eager", "tuned"}
    assert {p.setting.config for p in first} == set(plan.CONFIGS)
    assert {p.setting.numerics for p in first} == numerics
    assert {p.setting.batch for p in first} == batches
    # eager once per config and batch, the others once per numerics
    assert len(first) == 5 * len(batches) * (1 + 3 * (len(numerics) - 1))
    assert len({p.setting for p in planned}) == len(planned)


def test_a_ledger_line_that_does_not_parse_is_named_and_its_setting_measured_again(tmp_path):
  path = tmp_path / "cpu_test.jsonl"
  a = row(plan.Setting("wisdm", "block", "f32", 64))
  b = row(plan.Setting("pamap2", "block", "f32", 64))
  c = row(plan.Setting("weakly", "block", "f32", 64))
  ledger.append(path, a)
  with open(path, "a", encoding="utf-8") as f:
    f.write(b.to_json()[:40])  # a write killed midway: no newline
  ledger.append(path, c)  # starts a line of its own
  warnings = []
  rows = ledger.read(path, warn=warnings.append)
  assert [r.setting for r in rows] == [a.setting, c.setting]
  assert len(warnings) == 1 and f"{path}:2: skipped" in warnings[0]
  assert ledger.measured(rows) == {a.identity(), c.identity()}
  # Another schema, another step code or other versions: not the same measurement.
  assert row(a.setting, step_code="other").identity() not in ledger.measured(rows)
  assert row(a.setting, versions={"jax": "2"}).identity() not in ledger.measured(rows)
  with pytest.raises(ValueError, match="schema 0"):
    schema.Row.from_json(json.dumps({**json.loads(a.to_json()), "schema": 0}))


def bench(tmp_path, *args, timeout=600):
  return subprocess.run(
      [sys.executable, "-m", "benchmarks.throughput", f"--results={tmp_path}",
       f"--log_dir={tmp_path / 'logs'}", *TINY, *args], cwd=ROOT, capture_output=True,
      text=True, timeout=timeout)


def test_a_spent_budget_leaves_priority_one_missing_and_exits_non_zero(tmp_path):
  done = bench(tmp_path, "--configs=wisdm", "--time_budget_s=1", "--require_priority=1",
               timeout=300)
  assert done.returncode == 3, done.stdout + done.stderr
  assert "FAILED: 4 row(s) of priority <= 1 missing" in done.stdout
  assert "left at priority 1: 4 row(s)" in done.stdout
  assert "next lease: python -m benchmarks.throughput" in done.stdout
  assert not list(tmp_path.glob("*.jsonl")) or not ledger.read(next(tmp_path.glob("*.jsonl")))


@pytest.mark.slow
def test_a_run_killed_midway_resumes_with_only_the_missing_rows(tmp_path):
  """kill -9 after the first row is on disk; the rerun adds the rest, none lost or twice."""
  args = ["--configs=wisdm", "--contenders=block,latency,step", "--max_priority=3"]
  p = subprocess.Popen([sys.executable, "-m", "benchmarks.throughput", f"--results={tmp_path}",
                        f"--log_dir={tmp_path / 'logs'}", *TINY, *args], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       start_new_session=True)
  deadline = time.monotonic() + 400
  while time.monotonic() < deadline and p.poll() is None:
    paths = list(tmp_path.glob("*.jsonl"))
    if paths and ledger.read(paths[0]):
      break
    time.sleep(0.2)
  assert p.poll() is None, "the run ended before it could be killed: " + p.stdout.read()
  os.killpg(p.pid, signal.SIGKILL)
  p.wait()
  path = next(tmp_path.glob("*.jsonl"))
  before = ledger.read(path)
  assert 1 <= len(before) < 3
  done = bench(tmp_path, *args, "--require_priority=3")
  assert done.returncode == 0, done.stdout + done.stderr
  after = ledger.read(path)
  assert [r.to_json() for r in after[:len(before)]] == [r.to_json() for r in before]
  assert sorted(r.setting.contender for r in after) == ["block", "latency", "step"]
  assert len({r.identity() for r in after}) == 3
  assert f"measured {3 - len(before)} row(s)" in done.stdout
  assert all(r.status == "ok" and r.windows_per_s > 0 for r in after)
  again = bench(tmp_path, *args)
  assert "0 of 3 planned setting(s) to measure" in again.stdout
  assert len(ledger.read(path)) == 3


@pytest.mark.slow
def test_the_device_call_fails_when_its_limit_cuts_a_priority_one_row(tmp_path):
  """device_check.sh whose plan gets too little time for the core table: the plan stage exits
  3, the call exits non-zero, and its summary says what is missing and the next command."""
  env = {**os.environ, "QUICK": "1", "DEVICE_WHEELS": "none", "DEVICE_CHECK_LIMIT_S": "240",
         "DEVICE_CHECK_PLAN_S": "2",
         "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache")}
  done = subprocess.run(["bash", "benchmarks/device_check.sh", str(tmp_path / "out")], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=300)
  summary = (tmp_path / "out" / "plan.summary.txt").read_text()
  assert done.returncode != 0, summary
  assert "SOME STAGES FAILED" in summary
  assert "row(s) of priority <= 1 missing" in summary and "next lease:" in summary
