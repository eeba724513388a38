"""``python -m replibatch``: the ``replibatch`` command."""

import sys

from replibatch._cli.main import main

if __name__ == "__main__":
    sys.exit(main())
