"""The `roleforge` command line."""

from pipeline.cli.app import app

__all__ = ["app"]
