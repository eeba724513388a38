"""How long the command line takes to start: ``replibatch --help`` and ``replibatch cache info``.

Each figure is the wall time of a fresh interpreter running the command (best and median of
`--runs`), next to the time of ``import replibatch; replibatch.run`` - what ``--help`` cost when
the package imported pandas, matplotlib and the simulator eagerly. Uses an empty cache directory
of its own; touches nothing else. Prints figures, asserts nothing.

    python bench/cli_startup.py [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_MAIN = "import sys; from replibatch._cli.main import main; sys.exit(main({}))"
CASES = {
    "replibatch --help": _MAIN.format(["--help"]),
    "replibatch cache info": _MAIN.format(["cache", "info"]),
    "import replibatch; replibatch.run (all of it)": "import replibatch; replibatch.run; replibatch.plot",
}


def _seconds(code: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "REPLIBATCH_CACHE_DIR": cache}
        print(f"{'command':<48} {'best ms':>8} {'median ms':>10}   ({runs} runs, fresh interpreter each)")
        for name, code in CASES.items():
            _seconds(code, env)  # compiles .pyc files once, as an installed package has them
            times = [_seconds(code, env) for _ in range(runs)]
            print(f"{name:<48} {min(times) * 1000:>8.0f} {statistics.median(times) * 1000:>10.0f}")
        baseline = min(_seconds("pass", env) for _ in range(runs))
        print(f"{'(python -c pass, the floor)':<48} {baseline * 1000:>8.0f}")


if __name__ == "__main__":
    main()
