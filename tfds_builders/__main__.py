r"""The `tfds` command line without TensorFlow: `python -m tfds_builders build wisdm ...`.

tensorflow-datasets 4.9.x's `tfds` entry point imports every sub-command at start-up:
`convert_format` needs tensorflow and apache_beam at import time and `build_croissant` needs
mlcroissant, none of which tensorflow-datasets installs (tensorflow/datasets#5463). `build` and
`new` need none of them, so this registers placeholders for the sub-commands that cannot load
and starts the stock CLI, which takes exactly the stock flags. Two conveniences for `build`:

* `--file_format` defaults to array_record (TFDS's default, tfrecord, needs TensorFlow to write,
  and `tfds.data_source` reads array_record).
* A bare dataset name stands for its folder: `build wisdm` is `build tfds_builders/wisdm`, and
  `build wisdm/subject_runs` is `build tfds_builders/wisdm --config=subject_runs`.

  python -m tfds_builders build wisdm --manual_dir=/path/to/WISDM_ar_v1.1 \
      --data_dir=~/tensorflow_datasets
  python -m tfds_builders build tfds_builders/wisdm --config=subject_runs --manual_dir=...
  python -m tfds_builders new my_dataset

As with stock `tfds build`, a builder with configs and no --config builds every config.
"""

import dataclasses
import importlib.util
import pathlib
import sys
import types

from tensorflow_datasets.scripts.cli import cli_utils

from tfds_builders import _common
from tfds_builders import build_lock

BUILDERS_DIR = pathlib.Path(__file__).resolve().parent


def _missing(*modules: str) -> list[str]:
  return [m for m in modules if importlib.util.find_spec(m) is None]


def _stub_command(module: str, cls_name: str, needs: list[str]) -> None:
  """Registers a placeholder sub-command module so that the CLI's main module imports."""

  @dataclasses.dataclass(frozen=True, kw_only=True)
  class Unavailable(cli_utils.Args):
    """Unavailable here: needs packages that are not installed."""

    def execute(self) -> None:
      raise SystemExit(f"This tfds sub-command needs {', '.join(needs)} "
                       "(pip install -e '.[tfds-cli]').")

  stub = types.ModuleType(module)
  setattr(stub, cls_name, Unavailable)
  sys.modules[module] = stub


def build_argv(argv: list[str]) -> list[str]:
  """The stock `tfds` arguments for ours: bare names become folders; array_record by default."""
  if not argv or argv[0] != "build":
    return argv
  out = [argv[0]]
  for arg in argv[1:]:
    name, _, config = arg.partition("/")
    folder = BUILDERS_DIR / name
    if (not arg.startswith("-") and not pathlib.Path(arg).exists()
        and (folder / f"{name}_dataset_builder.py").exists()):
      out.append(str(folder))
      if config:
        if any(a == "--config" or a.startswith(("--config=", "-c")) for a in argv):
          raise SystemExit(f"{arg!r} names a config; do not pass --config as well.")
        out.append(f"--config={config}")
    else:
      out.append(arg)
  if not any(a == "--file_format" or a.startswith("--file_format=") for a in argv):
    out.append("--file_format=array_record")
  return out


def main() -> None:
  if missing := _missing("tensorflow", "apache_beam"):
    _stub_command("tensorflow_datasets.scripts.cli.convert_format", "Args", missing)
  if missing := _missing("mlcroissant"):
    _stub_command("tensorflow_datasets.scripts.cli.croissant", "CmdArgs", missing)
  # After the stubs: this import pulls in every sub-command.
  # pylint: disable-next=g-import-not-at-top
  from tensorflow_datasets.scripts.cli import main as tfds_main
  sys.argv = ["tfds", *build_argv(sys.argv[1:])]
  build_lock.serialise_builds()  # a concurrent build of the same dataset waits for this one
  try:
    tfds_main.launch_cli()
  except (_common.MissingRawFilesError, _common.RawFormatError) as e:
    # The raw data's fault, not the code's: the message says what to do; a traceback would not.
    raise SystemExit(f"{type(e).__name__}: {e}") from None


if __name__ == "__main__":
  main()
