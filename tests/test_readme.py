"""CI runs the README's set-up and test commands exactly as written there."""

import re

from tests.conftest import ROOT


def test_ci_runs_the_readme_commands_verbatim():
  """.ci/run runs the README's set-up and the fast tests on this Python (the oldest versions
  the bounds admit), then the same set-up in a fresh venv on the newest Python and the README's
  test command, the full suite."""
  readme = (ROOT / "README.md").read_text()
  ci = [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines()
        if l.strip().startswith(("pip install", "pytest"))]
  setup, test = "pip install -e '.[test]'", "pytest"
  assert ci == [setup, 'pytest -m "not slow"', setup, test], ci
  for command in (setup, test):
    assert f"```bash\n{command}\n```" in readme, command


def test_the_docs_give_the_batches_that_divide_across_4_and_8_devices():
  """docs/accelerators.md's table: the authors' batch of each config, and for 4 and 8
  devices either that batch or the nearest ones that divide (what the trainer suggests)."""
  import importlib  # pylint: disable=import-outside-toplevel
  from danhar_jax import train  # pylint: disable=import-outside-toplevel
  readme = (ROOT / "docs" / "accelerators.md").read_text()
  rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
          for line in readme.splitlines() if line.startswith("| wisdm, wisdm2019")
          or line.startswith("| opportunity, pamap2") or line.startswith("| unimib_shar, weakly")}
  assert len(rows) == 3, rows
  for names, (batch, four, eight) in rows.items():
    for name in names.split(", "):
      config = importlib.import_module(f"configs.{name}").get_config()
      assert config.batch_size == int(batch), (name, config.batch_size)
      for cell, devices in ((four, 4), (eight, 8)):
        assert cell == " or ".join(map(str, train.divisible_batches(config.batch_size, devices)))


def test_the_readme_is_short_and_its_links_exist():
  readme = (ROOT / "README.md").read_text()
  assert len(readme.splitlines()) <= 220
  links = re.findall(r"\]\(([^)#]+)\)", readme)
  assert "docs/use.md" in links and "docs/reliability.md" in links, links
  for doc in ["README.md", *(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]:
    text = (ROOT / doc).read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", text):
      if "://" not in link:
        assert ((ROOT / doc).parent / link).exists(), (doc, link)
