"""The `pocketnoc` command: serve, demo, worker, check-config, migrate, migrate-data, user, token."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import resource
import shutil
import signal
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from agents.snmp_families import FamilyError, load_families_cached
from server import logsafe
from server.cli import accounts as cli_accounts
from server.cli import discovery as cli_discovery
from server.cli import importer as cli_importer
from server.cli import scaleout as cli_scaleout
from server.cli import security as cli_security
from server.cli.common import fail as _fail
from server.cli.common import open_engine as _engine
from server.config.loader import LoadedConfig, load_config
from server.config.settings import Settings, build_settings
from server.config.yamlsrc import ConfigError
from server.store import filemodes

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="YAML config file (or POCKETNOC_CONFIG)")
    parser.add_argument("--data-dir", type=Path, default=None, help="data directory (or POCKETNOC_DATA_DIR)")


def _listen(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="listen port (default 8080)")


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line on stderr, like every other error (subcommand parsers inherit this)."""

    def error(self, message: str) -> NoReturn:
        """Print the problem and where to look, then exit 2 (argparse's usage-error code)."""
        self.exit(2, f"{self.prog}: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command-line grammar."""
    parser: argparse.ArgumentParser = _Parser(prog="pocketnoc", description="A NOC in your pocket.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("serve", help="run the web server and the poller")
    _common(p)
    _listen(p)
    p = sub.add_parser("demo", help="start simulated SNMP devices and serve them")
    _common(p)
    _listen(p)
    p.add_argument("--sim-port", type=int, default=None, metavar="PORT",
                   help="UDP port the simulated devices answer on, at 127.0.77.x (default 1161)")
    p = sub.add_parser("check-config", help="validate a config file and report every error")
    p.add_argument("path", type=Path, nargs="?", help="the config file (default: --config)")
    _common(p)
    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    _common(p)
    cli_accounts.add_parsers(sub, _common)
    cli_security.add_parsers(sub, _common)
    cli_scaleout.add_parsers(sub, _common)
    cli_importer.add_parsers(sub, _common)
    cli_discovery.add_parsers(sub, _common)
    return parser


def _load(args: argparse.Namespace) -> tuple[LoadedConfig, Settings]:
    path = getattr(args, "config", None) or (Path(os.environ["POCKETNOC_CONFIG"]) if os.environ.get("POCKETNOC_CONFIG") else None)
    config = load_config(path)
    try:  # device family files (built-in and POCKETNOC_FAMILIES_DIR) are checked at start, not at the first poll
        load_families_cached()
    except FamilyError as exc:
        raise ConfigError([str(exc)]) from None
    overrides: dict[str, Any] = {"config": path}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    for key in ("host", "port"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    try:
        settings = build_settings(config.settings, **overrides)
    except ValidationError as exc:
        raise ConfigError([f"{path or 'settings'}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]) from None
    return config, settings


def _command() -> str:
    """How to call this program again: `pocketnoc` when that is on PATH, else the path it was started by."""
    started = sys.argv[0] if sys.argv and os.sep in sys.argv[0] else ""
    found = shutil.which("pocketnoc")
    if not started or (found and Path(found).resolve() == Path(started).resolve()):
        return "pocketnoc"
    return started


def port_problem(settings: Settings, command: str) -> str | None:
    """Why the server could not listen on host:port (checked before anything is created or printed), or None."""
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        return f"cannot listen on {settings.host}: {exc}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no obstacle
        try:
            sock.bind(address)
        except OSError as exc:
            other = settings.port + 1 if settings.port < 65535 else 8081
            why = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
            return (f"port {settings.port} on {settings.host} {why}; "
                    f"use another one: make run PORT={other} (or {_command()} {command} --port {other})")
    return None


def _serve(settings: Settings, config: LoadedConfig, banner: list[str]) -> int:
    problem = cli_security.key_problem(settings)  # fail closed with one clear line, not a traceback
    if problem:
        return _fail(problem)
    problem = port_problem(settings, "serve")  # before anything is printed, not in a uvicorn traceback after it
    if problem:
        return _fail(problem, EXIT_CONFIG)
    import uvicorn  # the web app's imports (a second or so) only once it can start

    from server.web.app import create_app

    app = create_app(settings, config)
    shown = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0", "::") else settings.host  # noqa: S104 - only a label
    url = settings.base_url or f"http://{shown}:{settings.port}/"
    for line in [f"pocketnoc is starting at {url}", *banner]:
        print(line, flush=True)
    # proxy_headers=False: X-Forwarded-* count only through the trusted_proxies setting (server.auth.proxies).
    from server.web.live import StreamingServer

    server_config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=3,  # a live stream (SSE) that did not end when asked is cut after this
    )
    StreamingServer(server_config, app.state.services).run()
    return 0


def _demo_admin(settings: Settings) -> list[str]:
    """Create the first admin (password shown once) or say how to get in with an existing account."""
    from server.auth import passwords as auth
    from server.store import accounts

    engine = _engine(settings)
    try:
        with engine.begin() as conn:
            if accounts.count_users(conn) == 0:
                password = auth.generate_password()
                auth.create_user(conn, "admin", "admin", password)
                accounts.write_audit(conn, None, "user.create", "admin", {"role": "admin", "via": "demo"})
                return ["sign in as: admin",
                        f"password:   {password}   (shown once; change it with: {_command()} user passwd admin)"]
    finally:
        engine.dispose()
    where = f" --data-dir {settings.data_dir}"
    return [f"sign in with an existing user (add one: {_command()} user add NAME --role admin{where})",
            f"lost the admin password? set a new one: {_command()} user passwd admin{where}"]


def cmd_demo(settings: Settings, config: LoadedConfig, sim_port: int | None = None) -> int:
    """Simulated devices + a first admin account + the server."""
    from server.config.inventory import DeviceSpec
    from server.demo import DEFAULT_PORT, SimError, SimPortTaken, demo_settings, prepare_demo, run_demo_agents
    from server.demo.inventory import ACTIONS as DEMO_ACTIONS

    problem = port_problem(settings, "demo")  # before the one-time password is printed, not after
    if problem:
        return _fail(problem, EXIT_CONFIG)
    udp = DEFAULT_PORT if sim_port is None else sim_port
    if not 1 <= udp <= 65535:
        return _fail("--sim-port must be between 1 and 65535", EXIT_CONFIG)
    settings = demo_settings(settings)
    devices, _ = prepare_demo(settings.data_dir, port=udp)
    names = {d.name for d in config.devices}
    for entry in devices:
        if entry["name"] not in names:
            config.devices.append(DeviceSpec.model_validate(entry))
    banner = [f"demo: {len(devices)} simulated devices on 127.0.77.x (snmpsim)"]
    if settings.actions_file == DEMO_ACTIONS:
        banner.append("demo: switch and router actions (port bounce/enable/disable, set location) really SET the simulator")
    problem = cli_security.key_problem(settings)  # checked before an admin is made whose password nobody would see
    if problem:
        return _fail(problem)
    try:
        sim = run_demo_agents(settings.data_dir, port=udp)
    except SimPortTaken:
        other = udp + 1 if udp < 65535 else 1162
        return _fail(f"simulator port {udp} (UDP, 127.0.77.x) is already in use, perhaps by another demo; "
                     f"use another one: make run SIM_PORT={other} (or {_command()} demo --sim-port {other})", EXIT_CONFIG)
    except SimError as exc:
        return _fail(f"the simulated devices did not start: {' '.join(str(exc).split())[:500]}")
    try:
        banner += _demo_admin(settings)
    except BaseException:
        sim.stop()
        raise
    # uvicorn re-raises SIGTERM after its graceful shutdown; make that an exit that runs `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # A closed terminal (SIGHUP) stops the demo like SIGTERM does: uvicorn's graceful shutdown, then sim.stop().
    signal.signal(signal.SIGHUP, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
    try:
        return _serve(settings, config, banner)
    finally:
        sim.stop()


def raise_open_files_limit(want: int = 65536) -> int:
    """Lift the soft limit on open files towards the hard one: one pooled SSH connection per host, SNMP sockets and
    the database need more than the common default of 1,024 at a few thousand devices. Returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logging.getLogger("pocketnoc").warning("cannot raise the open-files limit from %d: %s", soft, exc)
    return int(soft)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; Ctrl-C ends any command with one line and exit status 130."""
    filemodes.private_umask()  # the database, its -wal/-shm, the key and logs: this user's only
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("pocketnoc: stopped (Ctrl-C)", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "import":  # needs no settings, database or key: it only writes files to review
        return cli_importer.cmd_import(args)
    try:
        if args.command == "check-config":
            path = args.path or args.config
            if path is None:
                return _fail("give the config file: pocketnoc check-config PATH", EXIT_CONFIG)
            args.config = path
            config, _ = _load(args)
            print(f"{path}: OK ({len(config.devices)} devices)")
            return 0
        config, settings = _load(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logsafe.install()
    raise_open_files_limit()
    for noisy in ("alembic", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command == "migrate":
        _engine(settings).dispose()
        print(f"database at the newest schema: {settings.db_url.split('@')[-1]}")
        return 0
    if args.command == "secrets":
        return cli_security.cmd_secrets(args, settings)
    if args.command == "discover":
        return cli_discovery.cmd_discover(args, settings)
    if args.command == "worker":
        return cli_scaleout.cmd_worker(args, settings)
    if args.command == "migrate-data":
        return cli_scaleout.cmd_migrate_data(args, settings)
    if args.command in ("user", "token"):
        return cli_accounts.cmd_accounts(args, settings)
    if args.command == "demo":
        return cmd_demo(settings, config, args.sim_port)
    return _serve(settings, config, [])


if __name__ == "__main__":
    sys.exit(main())
