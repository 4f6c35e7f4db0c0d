"""CI runs the README's set-up and test commands exactly as written there."""

from tests.conftest import ROOT


def test_ci_runs_the_readme_commands_verbatim():
  readme = (ROOT / "README.md").read_text()
  ci = [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines()
        if l.strip() and not l.startswith(("#", "set ", "cd "))]
  assert ci == ["pip install -e '.[test]'", "pytest"]
  for command in ci:
    assert f"```bash\n{command}\n```" in readme, command
