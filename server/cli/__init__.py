"""The `pocketnoc` command (entry point `server.cli:main`)."""

from server.cli.main import main

__all__ = ["main"]
