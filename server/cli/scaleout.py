"""Scale-out subcommands: `pocketnoc worker` and `pocketnoc migrate-data` (heavy imports only when they run)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import socket
import sys
from collections.abc import Callable

from server.config.settings import Settings

SITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,26}$")  # "site-" + NAME must still be a valid tag
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """The `worker` and `migrate-data` subcommands."""
    p = sub.add_parser("worker", help="run queued checks (scheduler: queue) against the shared PostgreSQL")
    p.add_argument("--site", default=None, help="poll only devices tagged site-NAME (a remote site's worker)")
    p.add_argument("--name", default=None, help="this worker's name on the Workers page (default: the host name)")
    p.add_argument("--concurrency", type=int, default=None, help="checks in flight at once (default: poll_concurrency)")
    common(p)
    p = sub.add_parser("migrate-data", help="copy an SQLite install into the configured (PostgreSQL) database")
    p.add_argument("--from", dest="source", required=True, help="the SQLite file (or a database URL) to copy from")
    p.add_argument("--to", dest="target", default=None, help="database URL to copy into (default: database_url)")
    common(p)


def _fail(message: str) -> int:
    print(f"pocketnoc: {message}", file=sys.stderr)
    return 1


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run a worker until SIGTERM/SIGINT."""
    if not settings.db_url.startswith("postgresql"):
        return _fail("a worker needs PostgreSQL: set database_url (or POCKETNOC_DATABASE_URL) to postgresql://...")
    site = args.site
    if site is not None and not SITE_RE.match(site):
        return _fail("--site: letters, digits, '.', '_' and '-' only (at most 27)")
    name = args.name or (socket.gethostname() + (f"-{site}" if site else ""))
    if not NAME_RE.match(name):
        return _fail("--name: letters, digits and . _ : @ - only (at most 64)")
    concurrency = settings.poll_concurrency if args.concurrency is None else args.concurrency
    if not 1 <= concurrency <= 5000:
        return _fail("--concurrency must be between 1 and 5000")
    from server.cli.security import key_problem

    problem = key_problem(settings, create=False)  # refuse like serve does: one clear line, before anything starts
    if problem:
        return _fail(f"{problem} (a worker needs the server's key: POCKETNOC_SECRET_KEY or secret_key_file)")
    logging.getLogger("procrastinate").setLevel(logging.WARNING)  # it logs every job at INFO
    from server.keys.secretbox import SecretsUnavailable
    from server.polling.queue_worker import CheckWorker, WorkerOptions
    from server.store.workers import WorkerNameTaken

    try:
        worker = CheckWorker(settings, WorkerOptions(name=name, site=site, concurrency=concurrency))
        asyncio.run(worker.run())
    except SecretsUnavailable as exc:
        return _fail(f"{exc} (a worker needs the server's key: POCKETNOC_SECRET_KEY or secret_key_file)")
    except WorkerNameTaken as exc:
        return _fail(str(exc))
    if worker.stopped_by == signal.SIGINT:
        raise KeyboardInterrupt  # Ctrl-C: main() says so in one line and exits 130, as serve and demo do
    return 0


def cmd_migrate_data(args: argparse.Namespace, settings: Settings) -> int:
    """Copy an SQLite install into the target database."""
    from server.store.migrate_data import MigrateError, migrate_data, source_url

    target = args.target or settings.db_url
    try:
        migrate_data(source_url(args.source), target, progress=lambda line: print(line, flush=True))
    except MigrateError as exc:
        return _fail(str(exc))
    print(f"done: {target.split('@')[-1]} holds the install; point POCKETNOC_DATABASE_URL at it and keep the same secret key")
    return 0
