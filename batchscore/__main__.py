"""`python -m batchscore`: see batchscore.cli."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
