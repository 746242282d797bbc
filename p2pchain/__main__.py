"""`python -m p2pchain` runs the command line."""

import sys

from p2pchain.cli import main

sys.exit(main())
