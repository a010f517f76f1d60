"""`python -m pipeline.cli`: the roleforge command line."""

from pipeline.cli.app import main

main()
