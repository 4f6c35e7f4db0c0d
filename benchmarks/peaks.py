"""Datasheet peaks of known accelerators, and what nvidia-smi says about the one in use.

The table is keyed by the exact device name (JAX's `device_kind`, which is CUDA's device name
and nvidia-smi's `name`): an H100 PCIe must not get the SXM part's peak, so a chip not listed
gets no datasheet MFU at all rather than a wrong one.
"""

from __future__ import annotations

import subprocess

# Dense (not 2:4 sparse) TFLOP/s from NVIDIA's datasheets: FP32, TF32 and BF16 tensor cores.
_H100_SXM = {"float32": 66.9, "tf32": 494.7, "bfloat16": 989.4}
_H100_PCIE = {"float32": 51.2, "tf32": 378.0, "bfloat16": 756.0}
_NVL = {"float32": 60.0, "tf32": 417.5, "bfloat16": 835.5}   # H100 NVL and H200 NVL
_A100 = {"float32": 19.5, "tf32": 156.0, "bfloat16": 312.0}  # 40 and 80 GB, SXM and PCIe

SKUS = {
    "NVIDIA H100 80GB HBM3": ("H100 SXM", _H100_SXM),
    "NVIDIA H100 PCIe": ("H100 PCIe", _H100_PCIE),
    "NVIDIA H100 NVL": ("H100 NVL", _NVL),
    "NVIDIA H200": ("H200 SXM", _H100_SXM),   # the H100 SXM's arithmetic, more memory
    "NVIDIA H200 NVL": ("H200 NVL", _NVL),
    "NVIDIA A100-SXM4-40GB": ("A100 SXM 40GB", _A100),
    "NVIDIA A100-SXM4-80GB": ("A100 SXM 80GB", _A100),
    "NVIDIA A100-PCIE-40GB": ("A100 PCIe 40GB", _A100),
    "NVIDIA A100 80GB PCIe": ("A100 PCIe 80GB", _A100),
}


def sku(device_kind: str) -> str | None:
  entry = SKUS.get(device_kind.strip())
  return entry[0] if entry else None


def datasheet_tflops(device_kind: str, dtype: str, precision: str) -> float | None:
  """The dense datasheet peak of this chip in these numerics, or None for a chip not listed."""
  entry = SKUS.get(device_kind.strip())
  if entry is None:
    return None
  rates = entry[1]
  if dtype == "bfloat16":
    return rates["bfloat16"]
  return rates["float32" if precision == "highest" else "tf32"]


NVIDIA_SMI_FIELDS = ("name", "driver_version", "memory.total", "clocks.max.sm", "clocks.sm",
                     "power.limit", "power.max_limit")


def nvidia_smi() -> dict:
  """The first GPU's name, driver, maximum and current SM clock and power limits, as
  nvidia-smi reports them ({} without nvidia-smi). The current clock of an idle GPU is its idle
  clock; the maximum is what a datasheet peak assumes."""
  try:
    out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(NVIDIA_SMI_FIELDS)}",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return {}
  lines = out.strip().splitlines()
  if not lines:
    return {}
  values = [v.strip() for v in lines[0].split(",")]
  return {"nvidia_smi_" + f.replace(".", "_"): v for f, v in zip(NVIDIA_SMI_FIELDS, values)}
