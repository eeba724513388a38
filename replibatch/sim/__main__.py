"""Run the simulator: ``python -m replibatch.sim --port 8000``."""

import sys

from replibatch.sim.cli import main

sys.exit(main())
