"""Tables and plots of every device's ledger: `python -m benchmarks.report [--results] [--out]`.

Per ledger `<slug>.jsonl` it writes `<slug>.md` (the core table, latency, every other row) and
`<slug>_throughput.png`, and one `throughput_all_devices.png` across ledgers. A setting measured
several times (other versions or step code) shows its newest row. Missing data is a '–' or a
note, never a crash.
"""

from __future__ import annotations

import argparse
import datetime
import pathlib
import re
import textwrap
import sys

from benchmarks import ledger, plan, roofline, schema

DASH = "–"
CORE = ("block", "trainer", "eager", "tuned", "compiled")   # the core table's columns
PYTORCH = ("eager", "tuned", "compiled")
LATENCY = ("latency", "torch_latency")
_NUMERICS_ORDER = tuple(plan.NUMERICS)


def _when(row: schema.Row) -> datetime.datetime:
  try:
    when = datetime.datetime.fromisoformat(row.measured_at)
  except (TypeError, ValueError):
    return datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
  return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def latest(rows: list[schema.Row]) -> list[schema.Row]:
  """The newest row of each setting, in setting order."""
  newest = {}
  for row in rows:
    if row.setting not in newest or _when(row) >= _when(newest[row.setting]):
      newest[row.setting] = row
  return sorted(newest.values(), key=lambda r: _order(r.setting))


def _order(s: plan.Setting) -> tuple:
  base = s.config.partition(":")[0]
  return (plan.CONFIGS.index(base), s.config, s.devices, s.mapping, s.conv_impl, s.batch,
          _NUMERICS_ORDER.index(s.numerics), tuple(plan.CONTENDERS).index(s.contender))


def _plain(s: plan.Setting) -> bool:
  return s.devices == 1 and s.mapping == "pmap" and s.conv_impl == "auto"


def _is_core(row: schema.Row) -> bool:
  """The plan's first two priorities (plan.py): the core table and torch.compile beside it."""
  return row.priority <= 2 and row.setting.contender in CORE and _plain(row.setting)


# Cells ------------------------------------------------------------------------------------------

def _cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def _short(text: str | None, most: int = 40) -> str:
  text = (text or "").strip().split("\n")[0] or "no reason given"
  return text if len(text) <= most else text[:most - 1] + "…"


def _num(v: float | None) -> str:
  if v is None:
    return DASH
  return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _ok(row: schema.Row | None, field: str = "windows_per_s") -> float | None:
  return getattr(row, field) if row is not None and row.status == "ok" else None


def _rate(row: schema.Row | None, field: str = "windows_per_s") -> str:
  if row is None:
    return DASH
  if row.status != "ok":
    return _cell(f"error: {_short(row.error)}")
  return _num(getattr(row, field))


def _ratio(a: float | None, b: float | None, note: str = "") -> str:
  return f"{a / b:.2f}×{note}" if a and b else DASH


def _mem(row: schema.Row | None) -> str:
  n = _ok(row, "peak_memory_bytes")
  if not n:
    return DASH
  text = f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
  return text + " RSS" * (row.memory_kind == "host_rss")  # the worker's, not the device's


def _placed(row: schema.Row | None) -> dict:
  """The row's roofline fields; computed again where the row lacks them (an older datasheet)."""
  if row is None or row.status != "ok":
    return {}
  if row.roofline_fraction is not None or row.mfu_datasheet is not None:
    return {"mfu_datasheet": row.mfu_datasheet, "roofline_fraction": row.roofline_fraction}
  return roofline.place(vars(row))


def _pct(v: float | None) -> str:
  return DASH if v is None else f"{100 * v:.1f}%"


def _table(header: list[str], lines: list[list[str]]) -> str:
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines])


# Tables -----------------------------------------------------------------------------------------

def core_table_markdown(rows: list[schema.Row]) -> str:
  """One line per (config, numerics, batch): the contenders' windows/s and what they mean. The
  eager peer (PyTorch's defaults) is shown on every numerics line of its config and batch."""
  cells = {(r.setting.config, r.setting.numerics, r.setting.batch, r.setting.contender): r
           for r in latest(rows) if _is_core(r)}
  keys = {(c, n, b) for c, n, b, k in cells if k != "eager"}
  keys |= {(c, "torch_default", b) for c, n, b, k in cells if k == "eager"
           and not any(kc == c and kb == b for kc, _, kb in keys)}  # eager alone: its own line
  if not keys:
    return "No core rows measured yet."
  lines = []
  for config, numerics, batch in sorted(keys, key=lambda k: (
      plan.CONFIGS.index(k[0].partition(":")[0]), k[0], k[2], _NUMERICS_ORDER.index(k[1]))):
    get = lambda c: cells.get((config, "torch_default" if c == "eager" else numerics, batch, c))
    block = get("block")
    torch_best = max(((_ok(get(c)), c) for c in PYTORCH if _ok(get(c))), default=(None, ""))
    placed = _placed(block)
    lines.append([config, numerics, str(batch)] + [_rate(get(c)) for c in CORE] + [
        _loop_efficiency(get("trainer"), block),
        _ratio(_ok(block), torch_best[0], f" ({torch_best[1]})" * bool(torch_best[0])),
        _mem(block), _mem(get("tuned")), _pct(placed.get("mfu_datasheet")),
        _pct(placed.get("roofline_fraction"))])
  header = ["config", "numerics", "batch", "block", "trainer", "eager¹", "tuned", "compiled",
            "trainer/block", "block / best PyTorch", "block memory", "tuned memory",
            "block MFU (datasheet)", "block roofline"]
  return _table(header, lines)


def _loop_efficiency(trainer, block) -> str:
  """The trainer's own paired ratio (its block timed in the same process, epoch by epoch);
  the ratio of the two rows only where the trainer row lacks it."""
  paired = trainer.get("loop_efficiency") if _ok(trainer) else None
  return f"{paired:.2f}×" if paired else _ratio(_ok(trainer), _ok(block))


def latency_table_markdown(rows: list[schema.Row]) -> str:
  cells = {(r.setting.config, r.setting.numerics, r.setting.contender): r
           for r in latest(rows) if r.setting.contender in LATENCY and _plain(r.setting)}
  if not cells:
    return "No latency rows measured yet."
  lines = []
  for config, numerics in sorted({(c, n) for c, n, _ in cells}, key=lambda k: (
      plan.CONFIGS.index(k[0].partition(":")[0]), k[0], _NUMERICS_ORDER.index(k[1]))):
    jax, torch = cells.get((config, numerics, "latency")), cells.get((config, numerics,
                                                                      "torch_latency"))
    lines.append([config, numerics, _rate(jax, "latency_p50_ms"), _rate(jax, "latency_p99_ms"),
                  _rate(torch, "latency_p50_ms"), _rate(torch, "latency_p99_ms"),
                  _ratio(_ok(torch, "latency_p50_ms"), _ok(jax, "latency_p50_ms"))])
  return _table(["config", "numerics", "JAX p50 ms", "JAX p99 ms", "PyTorch p50 ms",
                 "PyTorch p99 ms", "PyTorch/JAX p50"], lines)


def other_table_markdown(rows: list[schema.Row]) -> str:
  """Every row the two tables above do not show: sweeps, one-step calls, shard_map, devices."""
  rest = [r for r in latest(rows) if not _is_core(r)
          and not (r.setting.contender in LATENCY and _plain(r.setting))]
  if not rest:
    return "No other rows."
  lines = [[_cell(r.setting.label()), _rate(r), _num(_ok(r) and _ok(r) / r.setting.devices),
            _num(_ok(r, "ms_per_step")), _mem(r), _pct(_placed(r).get("mfu_datasheet")),
            _pct(_placed(r).get("roofline_fraction")), r.measured_at] for r in rest]
  return _table(["setting", "windows/s", "per device", "ms/step", "peak memory", "MFU (datasheet)",
                 "roofline", "measured"], lines)


def _header(slug: str, rows: list[schema.Row]) -> list[str]:
  devices = sorted({f"{r.device} ({r.platform})" for r in rows})
  out = [f"# Benchmarks: {', '.join(devices)}", "", f"Ledger `{slug}.jsonl`: {len(rows)} "
         f"settings, each its newest row, measured {min(r.measured_at for r in rows)} to "
         f"{max(r.measured_at for r in rows)}.", ""]
  for framework in ("jax", "torch"):
    mine = [r for r in rows if r.setting.framework == framework]
    for key in sorted({schema.versions_key(r.versions) for r in mine}):
      codes = sorted({r.step_code for r in mine if schema.versions_key(r.versions) == key})
      out.append(f"- {framework}: {key or 'versions unknown'}; step code {', '.join(codes)}")
  shas = []
  for r in sorted(rows, key=_when):
    if r.env.get("git_sha") and r.env["git_sha"] not in shas:
      shas.append(r.env["git_sha"])
  dirty = " (some rows from uncommitted changes)" * any(r.env.get("git_dirty") for r in rows)
  out.append(f"- git: {' … '.join(s[:12] for s in shas[::max(len(shas) - 1, 1)]) or 'unknown'}"
             + dirty)
  commands = list(dict.fromkeys(r.extra.get("command") for r in rows if r.extra.get("command")))
  out += [f"- command: `{c}`" for c in commands]
  why = {roofline.datasheet(r.device, r.setting.numerics)[2] for r in rows} - {None}
  out += [f"- MFU and roofline are – here: {w}" for w in sorted(why)]
  return out


def ledger_markdown(slug: str, rows: list[schema.Row]) -> str:
  rows = latest(rows)
  if not rows:
    return f"# Benchmarks: {slug}\n\nNo readable rows in `{slug}.jsonl` yet.\n"
  return "\n".join(_header(slug, rows) + [
      "", "## Training throughput, windows/s", "", core_table_markdown(rows), "",
      "¹ eager is the authors' PyTorch with PyTorch's defaults (numerics 'torch_default': TF32 "
      "convs and full-float32 matmuls on a GPU), shown on every numerics line of its config and "
      "batch. trainer/block is the real loop's windows/s over its own device call's, timed epoch by epoch in one process (`loop_efficiency`); best "
      "PyTorch is the fastest of eager, tuned and compiled. Memory is the device's peak, or "
      "the worker's peak RSS where marked.", "", "## Batch-1 inference latency", "",
      latency_table_markdown(rows), "", "## Every other row", "", other_table_markdown(rows),
      ""])


# Plots ------------------------------------------------------------------------------------------

STYLE = {"block": ("-", "o"), "trainer": ("--", "o"), "eager": (":", "s"), "tuned": ("-.", "^"),
         "compiled": ((0, (1, 1)), "D")}


def _series(rows, numerics=None) -> dict:
  """{(config, contender, numerics): [(batch, windows/s)]} of the measured single-device rows."""
  out = {}
  for r in latest(rows):
    s = r.setting
    if (s.contender in STYLE and _plain(s) and _ok(r) and
        (numerics is None or s.numerics in (numerics, "torch_default"))):
      out.setdefault((s.config, s.contender, s.numerics), []).append((s.batch, r.windows_per_s))
  return {k: sorted(v) for k, v in out.items()}


def _draw(ax, series: dict, colour_of) -> None:
  for (config, contender, numerics), points in sorted(series.items()):
    ls, marker = STYLE[contender]
    ax.plot(*zip(*points), linestyle=ls, marker=marker, markersize=4,
            color=colour_of(config, numerics), label=colour_of.label(config, contender, numerics))
  if series:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
  else:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
  ax.set_xlabel("batch")
  ax.set_ylabel("windows/s")
  ax.grid(True, which="both", alpha=0.3)


class _Colours:
  """A colour per key (numerics in a ledger's plot, config across devices) and line labels."""

  def __init__(self, by: str):
    self.by = by

  def __call__(self, config, numerics):
    key = numerics if self.by == "numerics" else config.partition(":")[0]
    values = _NUMERICS_ORDER if self.by == "numerics" else plan.CONFIGS
    return f"C{values.index(key)}"

  def label(self, config, contender, numerics):
    return f"{contender} {numerics}" if self.by == "numerics" else f"{config} {contender}"


def _figure(panels: list[tuple[str, dict]], colours: _Colours, title: str, path: pathlib.Path):
  from matplotlib.figure import Figure  # Agg without pyplot's global state; only plots need it
  cols = min(len(panels), 3) or 1
  rows = -(-len(panels) // cols) or 1
  fig = Figure(figsize=(5 * cols, 3.8 * rows + 1), layout="constrained")
  axes = fig.subplots(rows, cols, squeeze=False).ravel()
  handles = {}
  for ax, (name, series) in zip(axes, panels):
    _draw(ax, series, colours)
    ax.set_title(name, fontsize=10)
    handles.update(zip(*reversed(ax.get_legend_handles_labels())))
  for ax in axes[len(panels):]:
    ax.set_visible(False)
  if handles:
    labels = sorted(handles)
    fig.legend([handles[l] for l in labels], labels, loc="outside lower center",
               ncol=min(len(labels), 2 * cols), fontsize=8)
  fig.suptitle(textwrap.fill(title, 40 * cols), fontsize=11)
  fig.savefig(path, dpi=110)
  return path


def core_numerics(platform: str) -> str:
  return next(p.setting.numerics for p in plan.plan(platform) if p.setting.contender == "block")


def plot_ledger(slug: str, rows: list[schema.Row], path: pathlib.Path) -> pathlib.Path:
  series = _series(rows)
  configs = sorted({k[0] for k in series}, key=lambda c: plan.CONFIGS.index(c.partition(":")[0]))
  panels = [(c, {k: v for k, v in series.items() if k[0] == c}) for c in configs]
  return _figure(panels or [(slug, {})], _Colours("numerics"),
                 f"{slug}: train windows/s. JAX block solid, trainer dashed; PyTorch "
                 "eager, tuned, compiled as markers", path)


def plot_devices(ledgers: dict[str, list[schema.Row]], path: pathlib.Path) -> pathlib.Path:
  panels = [(f"{slug} ({core_numerics(rows[0].platform)})",
             _series(rows, core_numerics(rows[0].platform))) for slug, rows in ledgers.items()
            if rows]
  return _figure(panels, _Colours("config"), "windows/s by device at core numerics", path)


# Entry point ------------------------------------------------------------------------------------

def _warner(limit: int = 5):
  """ledger.read's warnings, at most `limit` per file then a count: an old file is not a flood."""
  seen = {}

  def warn(line: str) -> None:
    name = line.split(":", 1)[0]
    seen[name] = seen.get(name, 0) + 1
    if seen[name] <= limit:
      print(f"warning: {line}", file=sys.stderr)
  warn.seen = seen
  return warn


def render(results_dir=ledger.RESULTS, out_dir=None) -> list[pathlib.Path]:
  """Writes every ledger's markdown and plot, and the all-devices plot; returns their paths."""
  results_dir = pathlib.Path(results_dir)
  out_dir = pathlib.Path(out_dir or results_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  warn, ledgers, written = _warner(), {}, []
  for path in sorted(results_dir.glob("*.jsonl")):
    ledgers[path.stem] = latest(ledger.read(path, warn=warn))
  for name, count in warn.seen.items():
    if count > 5:
      print(f"warning: {name}: {count - 5} more bad lines skipped", file=sys.stderr)
  for slug, rows in ledgers.items():
    md = out_dir / f"{slug}.md"
    md.write_text(ledger_markdown(slug, rows), encoding="utf-8")
    written.append(md)
    if rows:
      written.append(plot_ledger(slug, rows, out_dir / f"{slug}_throughput.png"))
  if any(ledgers.values()):
    written.append(plot_devices(ledgers, out_dir / "throughput_all_devices.png"))
  return written


# The README's tables are these blocks, rendered from the ledger the marker names.
BLOCK = re.compile(r"(<!-- core table: (?P<slug>[\w.-]+) -->\n)(?P<table>.*?)\n?<!-- end -->",
                   re.S)


def readme_blocks(text: str, results_dir=ledger.RESULTS) -> str:
  """`text` with every core-table block rendered again from its ledger."""
  def table(match):
    rows = latest(ledger.read(pathlib.Path(results_dir) / f"{match['slug']}.jsonl"))
    return match[1] + core_table_markdown(rows) + "\n<!-- end -->"
  return BLOCK.sub(table, text)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--results", default=str(ledger.RESULTS), help="folder of *.jsonl ledgers")
  parser.add_argument("--out", default=None, help="where to write (default: --results)")
  parser.add_argument("--readme", default=None, help="also render the core-table blocks of "
                      "this Markdown file (README.md) from the ledgers they name")
  args = parser.parse_args(argv)
  for path in render(args.results, args.out):
    print(path)
  if args.readme:
    path = pathlib.Path(args.readme)
    path.write_text(readme_blocks(path.read_text(encoding="utf-8"), args.results),
                    encoding="utf-8")
    print(path)


if __name__ == "__main__":
  main()
