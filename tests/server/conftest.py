"""Server test fixtures: real SQLite and PostgreSQL databases, settings, apps on temp data dirs, users."""

from __future__ import annotations

import functools
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pyotp
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.auth import access as auth
from server.auth import passwords, totp
from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.keys.secretbox import SecretBox
from server.runtime import Services
from server.store import accounts
from server.store.db import Engine, make_engine, migrate
from server.store.devices import create_device
from server.web.app import create_app
from tests.peers.receiver import Receiver, start_receiver
from tests.peers.samba_dc import SambaDC, populate, start_samba_dc
from tests.peers.slapd import Slapd, start_slapd

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

    from tests.peers.snmpd_netns import NetnsSnmpd
    from tests.server.api_helpers import Api
    from tests.server.push_browser import Served as PushServed

# Trust auth on loopback; `make test` starts this server, so an unreachable one is a failure.
PG_HOST = os.environ.get("PGHOST_TEST", "127.0.0.1")
PG_PORT = int(os.environ.get("PGPORT_TEST", "5432"))
PG_USERS = ("postgres", "root")
PASSWORD = "correct horse battery"
RUN_ID = secrets.token_hex(4)


def _without_shell_env(patch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("POCKETNOC_"):
            patch.delenv(name)
    patch.setenv("POCKETNOC_PUSH_ALLOW_LOOPBACK", "true")  # the suite's Web Push service listens on 127.0.0.1


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """POCKETNOC_* variables of the calling shell must not leak into Settings built by a test."""
    _without_shell_env(monkeypatch)


@contextmanager
def clean_env() -> Iterator[pytest.MonkeyPatch]:
    """_clean_env for a module-scoped fixture (it is set up before any test's autouse fixtures)."""
    with pytest.MonkeyPatch.context() as patch:
        _without_shell_env(patch)
        yield patch


# ---------------------------------------------------------------- PostgreSQL


@dataclass
class PgServer:
    """A reachable PostgreSQL server and a migrated template database to clone per test."""

    user: str
    template: str
    created: list[str]

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@{PG_HOST}:{PG_PORT}/{database}"

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(host=PG_HOST, port=PG_PORT, user=self.user, dbname="postgres", autocommit=True)

    def create(self, template: str | None = None) -> str:
        name = f"pn_test_{RUN_ID}_{secrets.token_hex(4)}"
        with self.admin() as conn:
            clause = f" TEMPLATE {template}" if template else ""
            conn.execute(f"CREATE DATABASE {name}{clause}")  # type: ignore[arg-type]
        self.created.append(name)
        return name

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]
        if name in self.created:
            self.created.remove(name)


def _pg_user() -> str:
    errors = []
    for user in PG_USERS:
        try:
            with psycopg.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="postgres", connect_timeout=10) as conn:
                conn.execute("SELECT 1")
            return user
        except psycopg.Error as exc:
            errors.append(f"{user}: {str(exc).strip()}")
    pytest.fail(f"PostgreSQL at {PG_HOST}:{PG_PORT} is not reachable (make test starts it): {'; '.join(errors)}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A migrated template database (pn_test_<run>_...), dropped with every clone at the end of the run."""
    server = PgServer(user=_pg_user(), template="", created=[])
    server.template = server.create()
    engine = make_engine(server.url(server.template))
    try:
        migrate(engine)
    finally:
        engine.dispose()
    yield server
    for name in list(reversed(server.created)):
        server.drop(name)


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database of this test alone."""
    name = pg_server.create(template=pg_server.template)
    yield pg_server.url(name)
    pg_server.drop(name)


# ---------------------------------------------------------------- databases and settings


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database URL, once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        return url
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A writer engine on the test database."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def box() -> SecretBox:
    """A secret box with a fresh random key."""
    return SecretBox(Fernet.generate_key())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a temp data dir with a short writer batch, so tests never wait long."""
    return Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05)


def spec(name: str, **fields: Any) -> DeviceSpec:
    """A device spec at 192.0.2.10 with these fields."""
    return DeviceSpec.model_validate({"name": name, "address": "192.0.2.10", **fields})


def add(engine: Engine, box: SecretBox, *specs: DeviceSpec, source: str = "api") -> list[int]:
    """Create these devices in the store; their ids."""
    with engine.begin() as conn:
        return [create_device(conn, s, box, 60, source=source) for s in specs]


# ---------------------------------------------------------------- apps and users


@dataclass
class AppEnv:
    """An app (lifespan running, no polling) with its test client and services."""

    app: FastAPI
    client: TestClient
    svc: Services

    def user(self, name: str, role: str, password: str = PASSWORD) -> int:
        """Add a user as passwords.create_user does; PASSWORD's argon2 hash is made once per test process."""
        with self.svc.engine.begin() as conn:
            if password != PASSWORD:
                return passwords.create_user(conn, name, role, password)
            passwords.check_new_user(name, role, password)
            if accounts.get_user_by_name(conn, name):
                raise passwords.UserError(f"user {name!r} already exists")
            return accounts.insert_user(conn, name, _password_hash(), role)

    def token(self, name: str, role: str | None = None) -> str:
        """A bearer token for user `name` (created with `role` first when given)."""
        if role is not None:
            self.user(name, role)
        with self.svc.engine.begin() as conn:
            found = accounts.get_user_by_name(conn, name)
            assert found is not None
            return accounts.new_token(conn, found[0].id, "test")


@functools.cache
def _password_hash() -> str:
    """PASSWORD hashed once per test process (argon2 is slow on purpose; sign-ins still verify it for real)."""
    return passwords.hash_password(PASSWORD)


def make_app_env(settings: Settings, poll: bool = False) -> Iterator[AppEnv]:
    """Build an app on `settings` and run its lifespan around the yield."""
    app = create_app(settings, poll=poll)
    with TestClient(app, follow_redirects=False) as client:
        yield AppEnv(app, client, app.state.services)


@pytest.fixture
def app_env(settings: Settings) -> Iterator[AppEnv]:
    """An app on a temp SQLite data dir."""
    yield from make_app_env(settings)


@pytest.fixture
def api(app_env: AppEnv) -> Iterator[Api]:
    """An admin's API client on app_env; no answer it saw may show a device secret (tests/server/api_helpers.py)."""
    from tests.server.api_helpers import Api  # imports this module

    client = Api(app_env, app_env.token("ada", "admin"))
    yield client
    client.assert_no_secrets()


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


HIDDEN_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def form_csrf(html: str) -> str:
    """The hidden csrf_token field of a rendered page."""
    found = HIDDEN_CSRF.search(html)
    assert found, "no csrf_token field on the page"
    return found.group(1)


def sign_in(client: TestClient, name: str, password: str = PASSWORD, next_url: str = "/") -> str:
    """Sign in through the HTML form; returns the session cookie value (the client keeps it too)."""
    page = client.get("/login")
    assert page.status_code == 200
    response = client.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": form_csrf(page.text), "next": next_url},
    )
    assert response.status_code == 303, response.text
    cookie = client.cookies.get(auth.SESSION_COOKIE)
    assert cookie
    return cookie


# ---------------------------------------------------------------- the command line

POCKETNOC = Path(sys.executable).parent / "pocketnoc"


def run_cli(
    *args: str | Path, input_text: str | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed `pocketnoc` console script; stdin is /dev/null unless `input_text` is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETNOC_")} | (env or {})
    return subprocess.run(
        [str(POCKETNOC), *map(str, args)],
        input=input_text,
        stdin=subprocess.DEVNULL if input_text is None else None,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=cwd,
        check=False,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    """A failed command: non-zero exit, one line on stderr containing `fragment`, no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0], result.stderr


# ---------------------------------------------------------------- shared peers and clocks (fixtures live here, not in helpers)


@dataclass
class TotpClock:
    """The time TOTP codes are checked against; `advance()` moves it one 30 s step, so no test sleeps."""

    now: float

    def advance(self, steps: int = 1) -> None:
        self.now += totp.STEP * steps

    def code(self, secret: str, offset: int = 0) -> str:
        return pyotp.TOTP(secret).at(self.now + offset * totp.STEP)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local HTTP receiver for webhook, ntfy and Apprise json:// channels."""
    peer = start_receiver()
    yield peer
    peer.stop()


@pytest.fixture
def push_served(tmp_path: Path) -> Iterator[PushServed]:
    """The app (worker running) served by uvicorn with a local Web Push service; user pat (operator)."""
    from tests.server.push_browser import serve_with_push  # imports app_fleet, which imports this module

    with serve_with_push(tmp_path) as served:
        yield served


@pytest.fixture
def push_browser() -> Iterator[tuple[BrowserContext, Page]]:
    """Headless Chromium at a Pixel 7's viewport: its context and a page."""
    from tests.server.push_browser import phone_browser

    with phone_browser() as opened:
        yield opened


@pytest.fixture
def netns_switch(tmp_path: Path) -> Iterator[NetnsSnmpd]:
    """snmpd in its own network namespace with a veth pair (pn0, pn1): port SETs really change interfaces."""
    from tests.server.netns_helpers import running_switch  # imports actions_helpers, which imports this module

    yield from running_switch(tmp_path)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> TotpClock:
    """TOTP codes are checked against this clock (aligned to the middle of a step); tests advance it, never sleep."""
    state = TotpClock(now=(time.time() // totp.STEP) * totp.STEP + 15)
    monkeypatch.setattr(totp, "clock", lambda: state.now)
    return state


DIRECTORY_PASSWORD = "Start-" + secrets.token_urlsafe(9) + "-4x"  # every test person's first password (AD complexity)


@pytest.fixture(scope="session")
def samba_dc() -> Iterator[SambaDC]:
    """One real Samba AD DC per test session (provisioning takes tens of seconds): people, groups, a bind account."""
    dc = start_samba_dc()
    try:
        dc.bind_password = populate(dc, DIRECTORY_PASSWORD)
        yield dc
    finally:
        dc.stop()


@pytest.fixture(scope="session")
def slapd_peer() -> Iterator[Slapd]:
    """One real OpenLDAP slapd per test session: StartTLS, ppolicy lock-out after 3 bad binds, a few people."""
    peer = start_slapd()
    yield peer
    peer.stop()
