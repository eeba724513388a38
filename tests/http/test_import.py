"""`import replibatch` does not import the official client (it breaks on new Pythons, #13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import replibatch

CHECK = """
import sys
import replibatch, replibatch.sim
print(sorted(name for name in sys.modules if name.split(".")[0] == "replicate"))
"""


def test_import_replibatch_does_not_import_replicate() -> None:
    # The child imports the replibatch under test, not whichever one the environment installs.
    root = str(Path(replibatch.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
