"""`python -m p2pchain` runs the command line."""

from p2pchain.cli import main

main()
