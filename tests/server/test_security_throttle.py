"""Brute force: the same answer whether the user exists or not, per-account and per-address limits, trusted proxies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.auth.proxies import client_address, forwarded_scheme, parse_networks
from server.config.settings import Settings
from server.store.schema import audit
from tests.server.conftest import PASSWORD, AppEnv, form_csrf, make_app_env

TOKEN = re.compile(r'(value|data-csrf)="[A-Za-z0-9_-]{20,}"')


def _attempt(client: TestClient, name: str, password: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    page = client.get("/login", headers=headers or {})
    response = client.post(
        "/login", data={"username": name, "password": password, "csrf_token": form_csrf(page.text)}, headers=headers or {}
    )
    # Tokens and timestamps differ from page to page; everything else must be the same.
    return response.status_code, re.sub(r"\d{9,}", "N", TOKEN.sub(r'\1="…"', response.text))


def test_unknown_users_and_wrong_passwords_get_the_same_answer(app_env: AppEnv) -> None:
    app_env.user("real", "viewer")
    app_env.user("off", "viewer")
    with app_env.svc.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE users SET disabled = true WHERE name = 'off'")
    wrong = _attempt(app_env.client, "real", "not the password")
    ghost = _attempt(app_env.client, "nobody", "not the password")
    disabled = _attempt(app_env.client, "off", PASSWORD)
    assert wrong[0] == ghost[0] == disabled[0] == 401
    assert wrong[1] == ghost[1] == disabled[1]


def test_an_account_is_throttled_after_ten_failures_with_the_same_answer(app_env: AppEnv) -> None:
    app_env.user("tina", "viewer")
    failures = [_attempt(app_env.client, "tina", f"guess {n}") for n in range(10)]
    assert {f[0] for f in failures} == {401}
    locked = _attempt(app_env.client, "tina", PASSWORD)
    assert locked == failures[0]  # the right password now gets exactly the wrong-password answer
    ghosts = [_attempt(app_env.client, "ghost", f"guess {n}") for n in range(10)]
    assert ghosts[-1] == _attempt(app_env.client, "ghost", PASSWORD)
    with app_env.svc.reader.connect() as conn:
        actions = list(conn.execute(select(audit.c.action).where(audit.c.target == "tina")).scalars())
    assert actions.count("login.failed") == 11


def test_an_address_is_throttled_across_accounts(app_env: AppEnv) -> None:
    app_env.user("ulla", "viewer")
    for n in range(30):
        _attempt(app_env.client, f"spray{n}", "Winter2024!")
    assert _attempt(app_env.client, "ulla", PASSWORD)[0] == 401
    elsewhere = TestClient(app_env.app, follow_redirects=False, client=("192.0.2.77", 40000))
    assert _attempt(elsewhere, "ulla", PASSWORD)[0] == 303


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[AppEnv]:
    """An app behind a reverse proxy on 127.0.0.1."""
    settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, trusted_proxies=["127.0.0.1/32", "10.0.0.0/8"])
    yield from make_app_env(settings)


def _last_login_ip(env: AppEnv) -> str:
    with env.svc.reader.connect() as conn:
        return str(conn.exec_driver_sql("SELECT ip FROM login_attempts ORDER BY id DESC LIMIT 1").scalar())


def test_forwarded_for_counts_only_from_trusted_proxies(proxied: AppEnv, app_env: AppEnv) -> None:
    spoof = {"X-Forwarded-For": "198.51.100.9"}
    # No trusted proxies (the default): the header is ignored, whoever sends it.
    direct = TestClient(app_env.app, follow_redirects=False, client=("127.0.0.1", 5000))
    _attempt(direct, "x", "y", spoof)
    assert _last_login_ip(app_env) == "127.0.0.1"
    # Through the trusted proxy: the client it names is the one throttled and audited.
    via_proxy = TestClient(proxied.app, follow_redirects=False, client=("127.0.0.1", 5000))
    _attempt(via_proxy, "x", "y", {"X-Forwarded-For": "203.0.113.5, 10.1.2.3"})
    assert _last_login_ip(proxied) == "203.0.113.5"
    # From an untrusted peer the header is a lie: ignored.
    stranger = TestClient(proxied.app, follow_redirects=False, client=("192.0.2.8", 5000))
    _attempt(stranger, "x", "y", spoof)
    assert _last_login_ip(proxied) == "192.0.2.8"


def test_client_address_rules() -> None:
    trusted = parse_networks(["127.0.0.1/32", "10.0.0.0/8", "2001:db8::/32"])
    assert client_address("127.0.0.1", "203.0.113.5", trusted) == "203.0.113.5"
    # The attacker prepends a fake hop; the proxy appends the real peer: the rightmost untrusted hop wins.
    assert client_address("127.0.0.1", "1.2.3.4, 203.0.113.5", trusted) == "203.0.113.5"
    assert client_address("127.0.0.1", "203.0.113.5, 10.0.0.2", trusted) == "203.0.113.5"
    assert client_address("127.0.0.1", "garbage", trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", "[2001:db9::1]:443", trusted) == "2001:db9::1"
    assert client_address("192.0.2.1", "203.0.113.5", trusted) == "192.0.2.1"
    assert client_address("127.0.0.1", "203.0.113.5", ()) == "127.0.0.1"
    assert client_address("testclient", "203.0.113.5", trusted) == "testclient"
    assert client_address("127.0.0.1", "10.0.0.5", trusted) == "10.0.0.5"  # only trusted hops: the leftmost
    assert forwarded_scheme("127.0.0.1", "https", "http", trusted) == "https"
    assert forwarded_scheme("192.0.2.1", "https", "http", trusted) == "http"


def test_trusted_proxies_must_be_networks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an address or CIDR"):
        Settings(data_dir=tmp_path, trusted_proxies=["proxy.example"])
    with pytest.raises(ValueError, match="unknown roles"):
        Settings(data_dir=tmp_path, require_2fa_roles=["root"])
