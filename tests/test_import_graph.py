"""The library's modules import each other without circles, and no file edits sys.path."""

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "danhar_jax"


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
  """{module: the danhar_jax modules it imports anywhere in its source}."""
  modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
  graph = {}
  for name, path in modules.items():
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        found |= {a.name for a in node.names}
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
    graph[name] = {m for m in found if m in modules and m != name
                   and m != "danhar_jax"}  # the package's empty __init__
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  found, state = [], {}

  def visit(node, stack):
    state[node] = "open"
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        found.append(stack[stack.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, stack + [nxt])
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  return found


def test_no_module_of_the_library_imports_itself_through_others():
  assert not cycles(import_graph()), cycles(import_graph())


def test_the_check_sees_a_circle():
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
  assert "danhar_jax.checkpoints" in import_graph()["danhar_jax.train"]


def test_no_file_edits_sys_path():
  """Imports go through the packages from the root (setup.cfg's pythonpath, `python -m`, or a
  subprocess's cwd/PYTHONPATH): no file, nor code it runs in a subprocess, edits sys.path."""
  dirs = ("danhar_jax", "tfds_builders", "configs", "benchmarks", "experiments", "tests")
  files = [*ROOT.glob("*.py"), *(p for d in dirs for p in (ROOT / d).rglob("*.py"))]
  found = [str(p.relative_to(ROOT)) for p in files
           if re.search(r"sys\.path\.(insert|append)\(", p.read_text())]
  assert len(files) > 50 and found == []
