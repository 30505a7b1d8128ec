"""Account subcommands: `user add / passwd / list` (and security's `user reset-2fa`) and `token create / list / revoke`."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable

from server.cli import security as cli_security
from server.cli.common import fail, open_engine
from server.config.settings import Settings


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """The `user` and `token` command groups."""
    user = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = user.add_parser("add", help="add a user (password from stdin, else generated and printed once)")
    p.add_argument("name")
    p.add_argument("--role", choices=("viewer", "operator", "admin"), default="viewer")
    p.add_argument("--generate", action="store_true", help="generate a password even if stdin has one")
    common(p)
    p = user.add_parser("passwd", help="set a user's password (from stdin, else generated); ends their sessions")
    p.add_argument("name")
    p.add_argument("--generate", action="store_true")
    common(p)
    p = user.add_parser("list", help="list users")
    common(p)
    cli_security.add_user_parsers(user, common)
    token = sub.add_parser("token", help="manage API tokens").add_subparsers(dest="action", required=True, metavar="ACTION")
    p = token.add_parser("create", help="create an API token acting as user NAME; prints it as the last line")
    p.add_argument("name", help="the user the token acts as")
    p.add_argument("--label", default=None, help="what the token is for (default: cli)")
    common(p)
    p = token.add_parser("list", help="list tokens (never their values)")
    common(p)
    p = token.add_parser("revoke", help="revoke a token by id")
    p.add_argument("id", type=int)
    common(p)


def cmd_accounts(args: argparse.Namespace, settings: Settings) -> int:
    """Run a `user` or `token` subcommand."""
    if args.command == "token":
        return cmd_token(args, settings)
    if args.action == "reset-2fa":
        return cli_security.cmd_reset_2fa(args, settings)
    return cmd_user(args, settings)


def _read_password(generate: bool) -> tuple[str, bool]:
    from server.auth.passwords import generate_password

    if generate:
        return generate_password(), True
    if sys.stdin is None or sys.stdin.closed:
        return generate_password(), True
    if sys.stdin.isatty():
        first = getpass.getpass("Password (empty to generate): ")
        if not first:
            return generate_password(), True
        if getpass.getpass("Again: ") != first:
            raise ValueError("the passwords differ")
        return first, False
    line = sys.stdin.readline().rstrip("\r\n")
    return (line, False) if line else (generate_password(), True)


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    """user add / passwd / list."""
    from server.auth import passwords as auth  # not server.auth.access: that one loads FastAPI
    from server.store import accounts

    engine = open_engine(settings)
    with engine.begin() as conn:
        if args.action == "list":
            for u in accounts.list_users(conn):
                print("\t".join([u.name, u.role] + (["disabled"] if u.disabled else [])))
            return 0
        try:
            password, generated = _read_password(args.generate)
            if args.action == "add":
                auth.create_user(conn, args.name, args.role, password)
                accounts.write_audit(conn, None, "user.create", args.name, {"role": args.role, "via": "cli"})
                print(f"user {args.name} ({args.role}) created")
            else:
                found = accounts.get_user_by_name(conn, args.name)
                if not found:
                    return fail(f"no user {args.name!r}")
                auth.check_password(password)
                accounts.set_password_hash(conn, found[0].id, auth.hash_password(password))
                accounts.write_audit(conn, None, "user.password", args.name, {"via": "cli"})
                print(f"password of {args.name} changed; their sessions ended")
        except (auth.UserError, ValueError) as exc:
            return fail(str(exc))
    if generated:
        print(f"password: {password}")
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    """token create / list / revoke."""
    from server.store import accounts, tokens

    engine = open_engine(settings)
    with engine.begin() as conn:
        if args.action == "list":
            print("ID\tUSER\tLABEL\tSTATE")
            for r in tokens.list_tokens(conn):
                print(f"{r.id}\t{r.user}\t{r.name}\t{'revoked' if r.revoked else 'active'}")
            return 0
        if args.action == "revoke":
            if not tokens.revoke(conn, args.id):
                return fail(f"no token {args.id}")
            accounts.write_audit(conn, None, "token.revoke", str(args.id), {"via": "cli"})
            return 0
        found = accounts.get_user_by_name(conn, args.name)
        if not found:
            return fail(f"no user {args.name!r}; create one with: pocketnoc user add {args.name} --role viewer")
        label = (args.label or "cli")[:64]
        value = accounts.new_token(conn, found[0].id, label)
        accounts.write_audit(conn, None, "token.create", args.name, {"label": label, "via": "cli"})
    print(f"token for {args.name} ({found[0].role}), shown once:")
    print(value)
    return 0
