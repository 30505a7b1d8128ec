"""What every subcommand module shares: a one-line failure and an engine on the migrated database."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from server.config.settings import Settings

if TYPE_CHECKING:  # SQLAlchemy and Alembic load when a command opens the database, not for check-config or --help
    from server.store.db import Engine


def fail(message: str, code: int = 1) -> int:
    """Print `pocketnoc: message` on stderr and return the exit status."""
    print(f"pocketnoc: {message}", file=sys.stderr)
    return code


def open_engine(settings: Settings) -> Engine:
    """An engine on the settings' database, its files private and its schema at the newest migration."""
    from server.store import filemodes
    from server.store.db import make_engine, migrate

    filemodes.prepare(settings.data_dir, settings.db_url)
    engine = make_engine(settings.db_url)
    migrate(engine)
    return engine
