"""The data directory is private: 0700, and the database (with its -wal and -shm), key and log files 0600.

They hold password hashes, token digests, sealed secrets and the audit log. What pocketnoc creates it creates private
(the command line sets umask 077; the SQLite file is made 0600 before SQLite opens it, and SQLite gives -wal and -shm
the database file's mode). What was there before is checked at start: a looser mode is warned about, naming the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def private_umask() -> None:
    """Files and directories this process creates from now on are its user's only."""
    os.umask(PRIVATE_UMASK)


def sqlite_path(db_url: str) -> Path | None:
    """The database file of an SQLite URL (None for other databases and in-memory ones)."""
    from sqlalchemy.engine import make_url  # not at import: `pocketnoc check-config` needs no SQLAlchemy

    url = make_url(db_url)
    if not url.drivername.startswith("sqlite") or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def prepare(data_dir: Path, db_url: str) -> None:
    """Make a missing data directory 0700 and a missing SQLite database file 0600 (before SQLite creates it)."""
    if not data_dir.exists():
        data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        data_dir.chmod(DIR_MODE)  # mkdir's mode passes through the umask; chmod is exact
    database = sqlite_path(db_url)
    if database is not None and not database.exists():
        database.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        try:
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        except FileExistsError:  # another process made it first: its mode is checked like any other
            pass


def open_private(path: Path, mode: str = "ab") -> int:
    """A file descriptor for appending to a log file, created 0600 when missing."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.open(path, flags, FILE_MODE)


def _loose(path: Path, allowed: int) -> str | None:
    try:
        found = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if found & ~allowed & 0o777:
        return f"{path} is open to other users (mode {found:04o}, want {allowed:04o}): chmod {allowed:o} {path}"
    return None


def loose_files(data_dir: Path, db_url: str, key_file: Path) -> list[str]:
    """One warning per private file or directory whose mode lets other users read (or enter) it."""
    paths: list[tuple[Path, int]] = [(data_dir, DIR_MODE)]
    database = sqlite_path(db_url)
    if database is not None:
        paths += [(Path(f"{database}{suffix}"), FILE_MODE) for suffix in SQLITE_SUFFIXES]
    paths.append((key_file, FILE_MODE))
    if data_dir.is_dir():
        paths += [(log, FILE_MODE) for log in sorted(data_dir.glob("**/*.log"))[:50]]
    problems = (_loose(path, allowed) for path, allowed in dict(paths).items())
    return [p for p in problems if p]
