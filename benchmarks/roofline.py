"""Datasheet peaks of known chips, and where a measured step sits under its roofline.

Keyed by the exact device name (JAX's device_kind, CUDA's device name, nvidia-smi's `name`):
a PCIe or NVL part must never get the SXM part's peak, so a chip not listed gets no datasheet
figure at all, and a line saying why, rather than a wrong one.
"""

from __future__ import annotations

from typing import Mapping

from benchmarks import plan

# Dense (not 2:4 sparse) TFLOP/s from NVIDIA's datasheets (FP32, TF32 and BF16 tensor cores)
# and HBM bandwidth in TB/s.
_H100_SXM = {"f32": 66.9, "tf32": 494.7, "bf16": 989.4}
_H100_PCIE = {"f32": 51.2, "tf32": 378.0, "bf16": 756.0}
_NVL = {"f32": 60.0, "tf32": 417.5, "bf16": 835.5}    # H100 NVL and H200 NVL
_A100 = {"f32": 19.5, "tf32": 156.0, "bf16": 312.0}   # 40 and 80 GB, SXM4 and PCIe


def _tpu(bf16: float) -> dict:
  # JAX runs f32 matmuls on a TPU as bf16 passes: 'high' (our tf32) is bf16_3x, 'highest'
  # (f32) bf16_6x, so their peaks are bf16's over 3 and 6: a ceiling, as the GPU peaks are.
  return {"f32": bf16 / 6, "tf32": bf16 / 3, "bf16": bf16}


# device name → (TFLOP/s by numerics, TB/s)
CHIPS = {
    "NVIDIA H100 80GB HBM3": (_H100_SXM, 3.35),
    "NVIDIA H100 PCIe": (_H100_PCIE, 2.0),
    "NVIDIA H100 NVL": (_NVL, 3.9),
    "NVIDIA H200": (_H100_SXM, 4.8),      # the H100 SXM's arithmetic, faster memory
    "NVIDIA H200 NVL": (_NVL, 4.8),
    "NVIDIA A100-SXM4-40GB": (_A100, 1.555),
    "NVIDIA A100-SXM4-80GB": (_A100, 2.039),
    "NVIDIA A100-PCIE-40GB": (_A100, 1.555),
    "NVIDIA A100 80GB PCIe": (_A100, 1.935),
    "TPU v4": (_tpu(275.0), 1.2),
    "TPU v5 lite": (_tpu(197.0), 0.819),
    "TPU v5": (_tpu(459.0), 2.765),
    "TPU v6 lite": (_tpu(918.0), 1.64),
}

# 'torch_default' is the eager peer's: TF32 convs on a GPU, which dominate this model.
_PEAK_OF = {"f32": "f32", "tf32": "tf32", "bf16": "bf16", "torch_default": "tf32"}


def datasheet(device_name: str, numerics: str) -> tuple[float | None, float | None, str | None]:
  """(dense TFLOP/s in these numerics, TB/s, None), or (None, None, why) for a chip not listed."""
  plan.one_of("numerics", numerics, plan.NUMERICS)
  entry = CHIPS.get((device_name or "").strip())
  if entry is None:
    return None, None, (f"no datasheet entry for {device_name!r}; listed: "
                        f"{', '.join(sorted(CHIPS))}")
  rates, tb_per_s = entry
  return rates[_PEAK_OF[numerics]], tb_per_s, None


def _field(fields: Mapping, name: str):
  """A Row field from a dict of them, numerics and devices also from its `setting`."""
  if name in fields:
    return fields[name]
  setting = fields.get("setting")
  if isinstance(setting, Mapping):
    return setting.get(name)
  return getattr(setting, name, None)


def _positive(value) -> float | None:
  return float(value) if isinstance(value, (int, float)) and value > 0 else None


def place(fields: Mapping) -> dict:
  """The roofline fields of a row (schema.Row names) from its device, numerics, devices,
  windows_per_s (global), train_flop_per_window, and XLA flops and bytes per step per device.

  Achieved FLOP/s is analytic (windows/s × train FLOPs per window) per device; the intensity is
  XLA's FLOPs per byte accessed. Whatever an input lacks stays None.
  """
  peak, tb_per_s, why = datasheet(_field(fields, "device"), _field(fields, "numerics"))
  devices = _positive(_field(fields, "devices")) or 1.0
  flop, nbytes = (_positive(fields.get(k)) for k in ("xla_flop_per_step", "xla_bytes_per_step"))
  rate, per_window = (_positive(fields.get(k)) for k in ("windows_per_s",
                                                          "train_flop_per_window"))
  intensity = flop / nbytes if flop and nbytes else None
  achieved = rate * per_window / devices / 1e12 if rate and per_window else None
  roof = min(peak, intensity * tb_per_s) if peak and intensity else None
  return {
      "arithmetic_intensity": intensity,
      "datasheet_tflops": peak,
      "datasheet_tb_per_s": tb_per_s,
      "roofline_tflops": roof,
      "roofline_fraction": achieved / roof if achieved and roof else None,
      "mfu_datasheet": achieved / peak if achieved and peak else None,
      "why_no_datasheet": why,
  }
