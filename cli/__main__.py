"""`python -m cli`: the `sessionflow` command, for processes spawned without the console script."""

import sys

from cli.main import main

if __name__ == "__main__":
    sys.exit(main())
