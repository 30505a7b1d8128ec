"""Security subcommands: `secrets rotate`, `user reset-2fa`, and the start-up key check (no secrets on the command line)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from server.config.settings import Settings


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """`pocketnoc secrets rotate`: the new key is made here and written to the key file, never printed or passed."""
    secrets = sub.add_parser("secrets", help="manage the key that encrypts stored secrets")
    actions = secrets.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("rotate", help="new key; re-encrypt every stored secret; replace the key file (stop the server first)")
    p.add_argument("--force", action="store_true",
                   help="rotate even though a server or worker seems to use the database (it must then be restarted)")
    common(p)


def add_user_parsers(
    user: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """`pocketnoc user reset-2fa NAME`: the way back in for someone who lost their phone and recovery codes."""
    p = user.add_parser("reset-2fa", help="remove a user's authenticator app, passkeys and recovery codes; ends their sessions")
    p.add_argument("name")
    common(p)


def _fail(message: str, code: int = 1) -> int:
    print(f"pocketnoc: {message}", file=sys.stderr)
    return code


def key_problem(settings: Settings, create: bool = True) -> str | None:
    """Why the server (or a worker) must not start with this key (unreadable, or not the database's), or None.

    `create=False` (a worker): a missing key file is a problem, never a reason to invent one. Once the key is
    good, this process holds the database's in-use lock until it exits, so `secrets rotate` refuses meanwhile."""
    from server.keys.rotation import check_key
    from server.keys.secretbox import SecretBox, SecretsUnavailable
    from server.store import filemodes
    from server.store.db import make_engine, migrate
    from server.store.keylock import hold_key

    filemodes.prepare(settings.data_dir, settings.db_url)
    engine = make_engine(settings.db_url)
    try:
        box = SecretBox.from_file(settings.key_file, create=create)
        migrate(engine)
        check_key(engine, box)
    except SecretsUnavailable as exc:
        return str(exc)
    finally:
        engine.dispose()
    hold_key(settings.db_url)
    return None


def cmd_secrets(args: argparse.Namespace, settings: Settings) -> int:
    """secrets rotate."""
    from server.keys.rotation import RotationError, rotate
    from server.store import accounts
    from server.store.db import make_engine, migrate
    from server.store.keylock import KeyInUse, exclusive_key

    engine = make_engine(settings.db_url)
    try:
        with exclusive_key(engine, force=args.force):
            migrate(engine)
            done = rotate(engine, settings.key_file)
        with engine.begin() as conn:
            detail: dict[str, object] = {"values": done.values, "via": "cli"} | ({"forced": True} if args.force else {})
            accounts.write_audit(conn, None, "secrets.rotate", str(done.key_file), detail)
    except KeyInUse as exc:
        return _fail(str(exc), 2)
    except RotationError as exc:
        return _fail(str(exc), 1)
    finally:
        engine.dispose()
    print(f"re-encrypted {done.values} stored secrets; the new key is in {done.key_file} (restart the server)")
    return 0


def cmd_reset_2fa(args: argparse.Namespace, settings: Settings) -> int:
    """user reset-2fa NAME."""
    from server.store import accounts, sessions, twofactor
    from server.store.db import make_engine, migrate

    engine = make_engine(settings.db_url)
    try:
        migrate(engine)
        with engine.begin() as conn:
            found = accounts.get_user_by_name(conn, args.name)
            if not found:
                return _fail(f"no user {args.name!r}")
            twofactor.clear_factors(conn, found[0].id)
            ended = sessions.end_for_user(conn, found[0].id)
            accounts.write_audit(conn, None, "2fa.reset", args.name, {"via": "cli", "sessions_ended": ended})
    finally:
        engine.dispose()
    print(f"two-factor sign-in of {args.name} removed; {ended} sessions ended")
    return 0
