"""Templates and static files of the web interface (package data)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
