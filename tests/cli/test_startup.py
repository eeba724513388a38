"""The command line starts without the heavy libraries (#13 point 7): ``replibatch --help`` and
``replibatch cache info`` import neither pandas, matplotlib, aiohttp nor the simulator's server.

Each check runs a fresh interpreter (this test process has imported all of them long ago)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pandas", "matplotlib", "aiohttp", "replibatch.sim.server", "replicate")


def _fresh_python(*args: str) -> subprocess.CompletedProcess[str]:
    # The checkout under test first on the path, whatever the venv's editable install points at.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=60, check=False)


_PROBE = """
import contextlib, io, json, sys
from replibatch._cli.main import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "out": out.getvalue(),
                  "loaded": sorted(m for m in sys.modules if m in HEAVY)}))
""".replace("HEAVY", repr(HEAVY))


@pytest.mark.parametrize("argv", [["--help"], ["cache", "info"], ["run", "--help"], ["spend", "--help"]])
def test_the_command_line_starts_without_pandas_matplotlib_or_the_simulator(argv: list[str]) -> None:
    done = _fresh_python("-c", _PROBE, *argv)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    assert report["loaded"] == []
    # It did its work, not only an early exit: the usage, or the cache's place and contents.
    assert "usage: replibatch" in report["out"] or "cache: " in report["out"]
    if argv == ["cache", "info"]:
        assert os.environ["REPLIBATCH_CACHE_DIR"] in report["out"] and "0 results" in report["out"]


def test_python_m_replibatch_help_imports_no_heavy_module() -> None:
    done = _fresh_python("-X", "importtime", "-m", "replibatch", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: replibatch" in done.stdout and "sim" in done.stdout
    # -X importtime writes one line per imported module: "import time: self | cumulative | name".
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "replibatch._cli.main" in imported  # the probe sees real imports
    assert not imported & set(HEAVY)


def test_import_replibatch_is_light_and_the_public_names_still_load() -> None:
    probe = (
        "import sys, replibatch as rb\n"
        "light = 'pandas' not in sys.modules\n"
        "import pandas as pd\n"
        "accessor = hasattr(pd.DataFrame({'a': [1]}), 'replibatch')\n"
        "from replibatch import run, plot\n"
        "names = all(getattr(rb, n) is not None for n in rb.__all__)\n"
        "print(light, accessor, run is rb.run, plot.__name__, names)\n"
    )
    done = _fresh_python("-c", probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True", "replibatch.plot", "True"]


def test_names_moved_out_of_cli_main_still_import_from_it() -> None:
    # Other branches import these from replibatch._cli.main; they load lazily from their modules.
    from replibatch._cli import files, main, params, run
    from replibatch._cli.main import read_frame, write_frame

    assert (read_frame, write_frame) == (files.read_frame, files.write_frame)
    assert main.parse_param is params.parse_param and main.OFFLINE_SIM_OPTIONS is run.OFFLINE_SIM_OPTIONS
    with pytest.raises(AttributeError):
        _ = main.no_such_name


def test_every_subcommand_module_registers_a_handler() -> None:
    from replibatch._cli.main import SUBCOMMANDS, build_parser

    parser = build_parser()
    for argv in (["run", "in.csv"], ["cache", "info"], ["spend"], ["sim"]):
        handler = parser.parse_args(argv).handler
        assert handler.__module__ in {module.__name__ for module in SUBCOMMANDS}, argv
