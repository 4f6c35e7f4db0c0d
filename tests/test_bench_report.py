"""The benchmark report, roofline and environment records, on hand-built rows: no device, fast."""

import dataclasses
import json
import os
import pathlib
import stat
import subprocess
import sys
import time

import pytest

from benchmarks import env
from benchmarks import plan
from benchmarks import report
from benchmarks import roofline
from benchmarks import schema

H100 = "NVIDIA H100 80GB HBM3"
ROOT = pathlib.Path(__file__).resolve().parents[1]


def row(config, contender, numerics, batch, *, priority=1, wps=None, when="2026-12-10T10:00:00",
        status="ok", error=None, device=H100, **kw) -> schema.Row:
  return schema.Row(
      setting=plan.Setting(config, contender, numerics, batch, **kw.pop("setting", {})),
      priority=priority, status=status, error=error, device=device,
      device_slug=env.device_slug(device, "gpu"), platform="gpu", step_code="abc",
      versions={"python": "3.11", contender: "1"}, env={"git_sha": "f" * 40},
      measured_at=when, wall_s=1.0, windows_per_s=wps, **kw)


def core_rows() -> list[schema.Row]:
  return [
      row("wisdm", "block", "tf32", 256, wps=1000.0, peak_memory_bytes=3 * 2**30,
          mfu_datasheet=0.05, roofline_fraction=0.5),
      row("wisdm", "trainer", "tf32", 256, wps=900.0),
      row("wisdm", "tuned", "tf32", 256, wps=400.0, peak_memory_bytes=512 * 2**20),
      row("wisdm", "eager", "torch_default", 256, wps=250.0),
      row("wisdm", "block", "bf16", 256, wps=2000.0),
      row("wisdm", "tuned", "bf16", 256, status="error", error="CUDA out of memory. Tried to "
          "allocate 20.00 GiB (GPU 0; 79.11 GiB total capacity)"),
      row("wisdm", "compiled", "bf16", 256, priority=2, wps=500.0),
      row("wisdm", "latency", "tf32", 1, priority=3, latency_p50_ms=0.5, latency_p99_ms=0.9),
      row("wisdm", "torch_latency", "tf32", 1, priority=3, latency_p50_ms=1.5,
          latency_p99_ms=3.0),
      row("wisdm", "block", "tf32", 1024, priority=4, wps=3000.0),
  ]


def table_lines(markdown: str) -> dict:
  """{(config, numerics, batch): [cells]} of a core table."""
  out = {}
  for line in markdown.splitlines()[2:]:
    cells = [c.strip() for c in line.strip("|").split(" | ")]
    out[tuple(cells[:3])] = cells[3:]
  return out


# report ---------------------------------------------------------------------------------------

def test_core_table_has_the_numbers_dashes_errors_and_eager_on_each_line():
  lines = table_lines(report.core_table_markdown(core_rows()))
  assert set(lines) == {("wisdm", "tf32", "256"), ("wisdm", "bf16", "256")}
  block, trainer, eager, tuned, compiled, loop, vs_torch, bmem, tmem, mfu, roof = lines[
      ("wisdm", "tf32", "256")]
  assert (block, trainer, eager, tuned, compiled) == ("1,000", "900", "250", "400", "–")
  assert loop == "0.90×" and vs_torch == "2.50× (tuned)"
  assert (bmem, tmem, mfu, roof) == ("3.00 GiB", "512 MiB", "5.0%", "50.0%")
  block, trainer, eager, tuned, compiled, loop, vs_torch, *_ = lines[("wisdm", "bf16", "256")]
  assert eager == "250" and trainer == "–" and loop == "–"  # eager on both numerics lines
  assert tuned.startswith("error: CUDA out of memory") and tuned.endswith("…")
  assert vs_torch == "4.00× (compiled)"


def test_the_newest_of_a_setting_measured_twice_is_shown():
  rows = core_rows() + [row("wisdm", "block", "tf32", 256, wps=1234.0, when="2026-12-11T09:00:00")]
  rows.insert(0, row("wisdm", "trainer", "tf32", 256, wps=1.0, when="2026-12-01T09:00:00"))
  lines = table_lines(report.core_table_markdown(rows))
  assert lines[("wisdm", "tf32", "256")][:2] == ["1,234", "900"]


def test_only_eager_gets_a_line_of_its_own():
  assert set(table_lines(report.core_table_markdown(
      [row("pamap2", "eager", "torch_default", 64, wps=10.0)]))) == {
          ("pamap2", "torch_default", "64")}
  assert "No core rows" in report.core_table_markdown([])


def test_latency_and_other_rows_have_their_tables():
  md = report.ledger_markdown("x", core_rows())
  assert "| wisdm | tf32 | 0.5 | 0.9 | 1.5 | 3 | 3.00× |" in md
  assert "| wisdm block tf32 b1024 | 3,000 |" in md
  assert "No readable rows" in report.ledger_markdown("x", [])


def write_ledger(path: pathlib.Path, rows, bad_at=(), old_at=()):
  lines = [r.to_json() for r in rows]
  for i in bad_at:
    lines.insert(i, lines[0][:len(lines[0]) // 2])  # a write cut off mid-line
  for i in old_at:
    old = json.loads(lines[0])
    old["schema"] = schema.SCHEMA - 1
    lines.insert(i, json.dumps(old))
  path.write_text("\n".join(lines) + "\n")


def test_render_skips_bad_lines_by_file_and_line_and_writes_tables_and_plots(tmp_path, capsys):
  results, out = tmp_path / "results", tmp_path / "out"
  results.mkdir()
  h100 = results / "nvidia_h100_80gb_hbm3.jsonl"
  write_ledger(h100, core_rows(), bad_at=[2], old_at=[5])
  cpu_rows = [dataclasses.replace(r, device="Some CPU", platform="cpu", setting=dataclasses.replace(
      r.setting, numerics="f32")) for r in core_rows()[:3]]
  write_ledger(results / "cpu_some_cpu_2c.jsonl", cpu_rows)
  (results / "empty.jsonl").write_text("")
  written = report.render(results, out)
  err = capsys.readouterr().err
  assert f"{h100}:3: skipped" in err and f"{h100}:6: skipped" in err
  assert "schema 0, not 1" in err and len(err.strip().splitlines()) == 2
  names = {p.name for p in written}
  assert names == {"nvidia_h100_80gb_hbm3.md", "nvidia_h100_80gb_hbm3_throughput.png",
                   "cpu_some_cpu_2c.md", "cpu_some_cpu_2c_throughput.png", "empty.md",
                   "throughput_all_devices.png"}
  for p in written:
    assert p.stat().st_size > 0
  md = (out / "nvidia_h100_80gb_hbm3.md").read_text()
  assert md.startswith(f"# Benchmarks: {H100} (gpu)") and "ffffffffffff" in md
  assert table_lines(md.split("## Training throughput, windows/s\n\n")[1].split("\n\n")[0])[
      ("wisdm", "tf32", "256")][:3] == ["1,000", "900", "250"]  # nothing else lost
  assert "no datasheet entry for 'Some CPU'" in (out / "cpu_some_cpu_2c.md").read_text()


def test_report_runs_as_a_module_on_an_empty_folder(tmp_path):
  done = subprocess.run([sys.executable, "-m", "benchmarks.report", f"--results={tmp_path}"],
                        capture_output=True, text=True, cwd=pathlib.Path(__file__).parents[1])
  assert done.returncode == 0 and done.stdout == "", done.stderr


# roofline -------------------------------------------------------------------------------------

def test_datasheet_by_exact_name():
  assert roofline.datasheet(H100, "bf16") == (989.4, 3.35, None)
  assert roofline.datasheet("NVIDIA H100 PCIe", "bf16") == (756.0, 2.0, None)
  assert roofline.datasheet(H100, "torch_default")[0] == roofline.datasheet(H100, "tf32")[0]
  assert roofline.datasheet("NVIDIA H200", "f32") == (66.9, 4.8, None)
  assert roofline.datasheet("TPU v5 lite", "tf32")[0] == pytest.approx(197 / 3)
  peak, bw, why = roofline.datasheet("NVIDIA H100", "bf16")  # a substring is not a name
  assert peak is None and bw is None and why.startswith("no datasheet entry for 'NVIDIA H100';")
  assert "NVIDIA H100 PCIe" in why
  with pytest.raises(ValueError, match="numerics"):
    roofline.datasheet(H100, "fp8")


def test_place_is_the_lower_of_compute_and_memory_roofs():
  fields = {"device": H100, "setting": plan.Setting("wisdm", "block", "bf16", 256),
            "windows_per_s": 1e6, "train_flop_per_window": 1e8,   # 100 TFLOP/s achieved
            "xla_flop_per_step": 1e12, "xla_bytes_per_step": 1e10}  # 100 FLOP/B
  placed = roofline.place(fields)
  assert placed["arithmetic_intensity"] == 100
  assert placed["roofline_tflops"] == pytest.approx(335.0)  # min(989.4, 100 × 3.35)
  assert placed["roofline_fraction"] == pytest.approx(100 / 335)
  assert placed["mfu_datasheet"] == pytest.approx(100 / 989.4)
  assert placed["why_no_datasheet"] is None
  compute_bound = roofline.place(dict(fields, xla_bytes_per_step=1e8))  # 10,000 FLOP/B
  assert compute_bound["roofline_tflops"] == 989.4
  two = roofline.place(dict(fields, devices=2))  # windows/s is global, the roofs per device
  assert two["mfu_datasheet"] == pytest.approx(50 / 989.4)
  pcie = roofline.place(dict(fields, device="NVIDIA H100 PCIe"))
  assert pcie["roofline_tflops"] == pytest.approx(200.0) and pcie["datasheet_tflops"] == 756.0
  cpu = roofline.place(dict(fields, device="Intel(R) Xeon(R) Processor"))
  assert cpu["mfu_datasheet"] is None and cpu["roofline_tflops"] is None
  assert cpu["arithmetic_intensity"] == 100 and "'Intel(R) Xeon(R) Processor'" in cpu[
      "why_no_datasheet"]
  assert roofline.place({"device": H100, "numerics": "tf32"})["roofline_fraction"] is None


# env ------------------------------------------------------------------------------------------

def test_env_imports_neither_jax_nor_torch():
  code = ("import sys; from benchmarks import env; env.versions('jax'); env.versions('torch'); "
          "env.step_code('jax'); print(sorted({'jax', 'torch'} & set(sys.modules)))")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        cwd=pathlib.Path(__file__).parents[1])
  assert done.stdout.strip() == "[]", done.stderr


def test_versions_name_the_step_packages():
  jax_versions, torch_versions = env.versions("jax"), env.versions("torch")
  assert {"python", "jax", "jaxlib", "flax", "optax", "numpy"} <= set(jax_versions)
  assert {"python", "torch", "numpy"} <= set(torch_versions) and "jax" not in torch_versions
  assert jax_versions["python"] == ".".join(map(str, sys.version_info[:3]))


def test_step_code_follows_the_step_files_only(tmp_path):
  (tmp_path / "danhar_jax/ops").mkdir(parents=True)
  (tmp_path / "configs").mkdir()
  (tmp_path / "danhar_jax/models.py").write_text("a = 1\n")
  (tmp_path / "danhar_jax/ops/conv.py").write_text("b = 1\n")
  (tmp_path / "configs/wisdm.py").write_text("c = 1\n")
  first = env.step_code("jax", tmp_path)
  assert len(first) == 16 and int(first, 16) >= 0
  (tmp_path / "README.md").write_text("docs\n")
  assert env.step_code("jax", tmp_path) == first
  (tmp_path / "danhar_jax/ops/conv.py").write_text("b = 2\n")
  second = env.step_code("jax", tmp_path)
  assert second != first
  (tmp_path / "configs/pamap2.py").write_text("")  # a new config is new step code
  assert env.step_code("jax", tmp_path) != second
  assert env.step_code("torch", tmp_path) != env.step_code("jax", tmp_path)


def test_device_slugs():
  assert env.device_slug(H100, "gpu") == "nvidia_h100_80gb_hbm3"
  assert env.device_slug("NVIDIA A100-SXM4-40GB", "gpu") == "nvidia_a100_sxm4_40gb"
  xeon = env.device_slug("Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "cpu")
  epyc = env.device_slug("AMD EPYC 7B13 64-Core Processor", "cpu")
  assert xeon == f"cpu_intel_xeon_platinum_8481c_cpu_2_70ghz_{os.cpu_count()}c"
  assert epyc.startswith("cpu_amd_epyc_7b13") and epyc != xeon
  assert env.cpu_model() and env.device_slug("", "cpu").startswith("cpu_")


def test_git_and_rss():
  g = env.git()
  assert set(g) == {"git_sha", "git_dirty"}
  assert env.peak_rss_bytes() > 10 * 2**20


FAKE_SMI = """#!/bin/bash
case "$*" in
  *clocks.max.sm*) echo "NVIDIA H100 80GB HBM3, 550.90, 81559, 1980, 700.00" ;;
  *) n=$(cat "{count}" 2>/dev/null || echo 0); echo $((n + 1)) > "{count}"
     echo "$((1700 + n * 10)), 2619, 350.5, 40, 90"
     echo "[N/A], 2619, [N/A], 41, 91" ;;
esac
"""


def fake_nvidia_smi(tmp_path, monkeypatch):
  script = tmp_path / "nvidia-smi"
  script.write_text(FAKE_SMI.format(count=tmp_path / "count"))
  script.chmod(script.stat().st_mode | stat.S_IEXEC)
  monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def test_gpu_sampler_with_a_fake_nvidia_smi(tmp_path, monkeypatch):
  fake_nvidia_smi(tmp_path, monkeypatch)
  assert env.gpu_static() == {"gpu_name": H100, "gpu_driver": "550.90",
                              "gpu_memory_mib": 81559.0, "gpu_max_sm_clock_mhz": 1980.0,
                              "gpu_power_limit_w": 700.0}
  with env.GpuSampler(interval_s=0.05) as sampler:
    time.sleep(0.4)
  summary = sampler.summary()
  n = summary["clocks.sm"]["n"]
  assert n >= 3 and summary["clocks.sm"]["min"] == 1700
  assert summary["clocks.sm"]["max"] == 1700 + 10 * (n - 1)
  assert summary["power.draw"] == {"median": 350.5, "min": 350.5, "max": 350.5, "n": n}
  assert summary["temperature.gpu"]["n"] == 2 * n  # both GPUs' lines, pooled
  assert not sampler._thread.is_alive()


def test_gpu_sampler_without_nvidia_smi(tmp_path, monkeypatch):
  monkeypatch.setenv("PATH", str(tmp_path))
  with env.GpuSampler(interval_s=0.05) as sampler:
    pass
  assert sampler.summary() == {} and sampler._thread is None and env.gpu_static() == {}


def test_the_readme_tables_are_rendered_from_the_committed_ledgers():
  """`python -m benchmarks.report --readme=README.md` wrote them; a hand edit or a ledger
  changed without rendering again fails here."""
  text = (ROOT / "README.md").read_text(encoding="utf-8")
  assert report.BLOCK.search(text)
  assert report.readme_blocks(text) == text
