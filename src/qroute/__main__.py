"""``python -m qroute``: the same as the ``qroute`` command."""

import sys

from qroute.cli import main

if __name__ == "__main__":
    sys.exit(main())
