"""Brute force: the same answer whether the user exists or not, per-account and per-address limits, trusted proxies."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.auth.proxies import client_address, forwarded_scheme, parse_networks
from server.config.settings import Settings
from tests import sql
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
    sql.run(app_env.svc.engine, "UPDATE users SET disabled = true WHERE name = 'off'")
    wrong = _attempt(app_env.client, "real", "not the password")
    ghost = _attempt(app_env.client, "nobody", "not the password")
    disabled = _attempt(app_env.client, "off", PASSWORD)
    assert wrong[0] == ghost[0] == disabled[0] == 401
    assert wrong[1] == ghost[1] == disabled[1]


@dataclass
class Clock:
    """The time sign-in throttling reads (Services.clock); tests move it instead of sleeping."""

    now: float

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app_env: AppEnv) -> Clock:
    state = Clock(time.time())
    app_env.svc.clock = state
    return state


def _from(env: AppEnv, address: str) -> TestClient:
    return TestClient(env.app, follow_redirects=False, client=(address, 40000))


def _audit(env: AppEnv, target: str) -> list[str]:
    return sql.scalars(env.svc.reader, "SELECT action FROM audit WHERE target = :target ORDER BY id", target=target)


def test_twelve_wrong_passwords_from_one_address_do_not_keep_the_owner_out(app_env: AppEnv, clock: Clock) -> None:
    app_env.user("tina", "viewer")
    usual, attacker = _from(app_env, "198.51.100.7"), _from(app_env, "203.0.113.66")
    assert _attempt(usual, "tina", PASSWORD)[0] == 303  # tina's usual address
    answers = [_attempt(attacker, "tina", f"guess {n}")[0] for n in range(12)]  # all within the same second
    assert answers == [401] * 5 + [429] * 7
    assert _attempt(attacker, "tina", PASSWORD)[0] == 429  # the attacker gets no answer about the password either
    assert _attempt(_from(app_env, "198.51.100.7"), "tina", PASSWORD)[0] == 303
    assert _attempt(_from(app_env, "192.0.2.200"), "tina", PASSWORD)[0] == 303  # a new address of hers, too
    assert _audit(app_env, "tina").count("login.failed") == 5
    assert _audit(app_env, "tina").count("login.throttled") == 8


def test_delays_grow_with_each_failure_and_then_expire(app_env: AppEnv, clock: Clock) -> None:
    app_env.user("ulf", "viewer")
    client = _from(app_env, "203.0.113.5")
    for n in range(5):
        assert _attempt(client, "ulf", f"guess {n}")[0] == 401
    waits = []
    for n in range(4):
        refused = client.post("/login", data={"username": "ulf", "password": PASSWORD, "csrf_token": _token(client)})
        assert refused.status_code == 429 and "try again in" in refused.text
        waits.append(int(refused.headers["retry-after"]))
        clock.now += waits[-1]
        assert _attempt(client, "ulf", f"late guess {n}")[0] == 401  # one guess per wait
    assert waits == [2, 4, 8, 16]
    clock.now += 60 * 60 + 1  # past signin_window_minutes: forgotten
    assert _attempt(client, "ulf", PASSWORD)[0] == 303


def test_the_delays_follow_the_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", signin_free_failures=2, signin_delay_seconds=10, signin_max_delay_seconds=15)
    for env in make_app_env(settings):
        state = Clock(time.time())
        env.svc.clock = state
        client = _from(env, "203.0.113.9")
        assert [_attempt(client, "vi", "x")[0] for _ in range(3)] == [401, 401, 429]
        state.now += 10
        assert _attempt(client, "vi", "x")[0] == 401
        refused = client.post("/login", data={"username": "vi", "password": "x", "csrf_token": _token(client)})
        assert refused.headers["retry-after"] == "15"  # 20 s, capped


def test_an_address_spraying_many_accounts_waits(app_env: AppEnv, clock: Clock) -> None:
    app_env.user("ulla", "viewer")
    sprayer = _from(app_env, "203.0.113.30")
    assert [_attempt(sprayer, f"spray{n}", "Winter2024!")[0] for n in range(30)] == [401] * 30
    assert _attempt(sprayer, "ulla", PASSWORD)[0] == 429
    assert _attempt(_from(app_env, "192.0.2.77"), "ulla", PASSWORD)[0] == 303


def test_guessing_from_many_addresses_slows_new_addresses_but_not_the_owners(app_env: AppEnv, clock: Clock) -> None:
    app_env.user("vera", "viewer")
    assert _attempt(_from(app_env, "198.51.100.8"), "vera", PASSWORD)[0] == 303
    for n in range(20):
        assert _attempt(_from(app_env, f"203.0.113.{100 + n}"), "vera", "guess")[0] == 401
    assert _attempt(_from(app_env, "192.0.2.99"), "vera", PASSWORD)[0] == 429  # never signed in from there
    assert _attempt(_from(app_env, "198.51.100.8"), "vera", PASSWORD)[0] == 303  # her usual address
    clock.now += 2
    assert _attempt(_from(app_env, "192.0.2.99"), "vera", PASSWORD)[0] == 303


def test_the_owner_is_told_of_failed_attempts_at_the_next_sign_in(app_env: AppEnv, clock: Clock) -> None:
    app_env.user("wim", "viewer")
    owner = _from(app_env, "198.51.100.9")
    assert _attempt(owner, "wim", PASSWORD)[0] == 303
    assert 'id="failed-sign-ins"' not in owner.get("/").text
    attacker = _from(app_env, "203.0.113.44")
    for n in range(3):
        _attempt(attacker, "wim", f"guess {n}")
    assert owner.get("/api/v1/account").json()["failed_sign_ins"]["since_last_sign_in"] == 3
    owner = _from(app_env, "198.51.100.9")
    assert _attempt(owner, "wim", PASSWORD)[0] == 303
    home = owner.get("/")
    assert 'id="failed-sign-ins"' in home.text and "3 failed sign-in attempts" in home.text and "203.0.113.44" in home.text
    told = owner.get("/api/v1/account").json()["failed_sign_ins"]
    assert told["before_last_sign_in"] == 3 and told["since_last_sign_in"] == 0 and told["last_failed_ip"] == "203.0.113.44"
    assert "login" in _audit(app_env, "wim")
    again = _from(app_env, "198.51.100.9")
    assert _attempt(again, "wim", PASSWORD)[0] == 303
    assert 'id="failed-sign-ins"' not in again.get("/").text  # told once per sign-in that had failures before it


def test_wrong_step_up_proofs_end_that_session_only(app_env: AppEnv, clock: Clock) -> None:
    app_env.user("xia", "viewer")
    phone = _from(app_env, "198.51.100.10")
    assert _attempt(phone, "xia", PASSWORD)[0] == 303
    token = _page_csrf(phone)
    for _ in range(4):
        wrong = phone.post("/api/v1/account/verify", json={"password": "not it at all"}, headers={"X-CSRF-Token": token})
        assert wrong.status_code == 403
    last = phone.post("/api/v1/account/verify", json={"password": "not it at all"}, headers={"X-CSRF-Token": token})
    assert last.status_code == 401 and "signed out" in last.text
    assert phone.get("/api/v1/me").status_code == 401
    failures = sql.scalar(app_env.svc.reader, "SELECT count(*) FROM login_attempts WHERE ok = false")
    assert failures == 0  # the account's sign-in counts are untouched: nobody is slowed down by this
    assert _attempt(phone, "xia", PASSWORD)[0] == 303


def _token(client: TestClient) -> str:
    return form_csrf(client.get("/login").text)


def _page_csrf(client: TestClient) -> str:
    return form_csrf(client.get("/account").text)


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[AppEnv]:
    """An app behind a reverse proxy on 127.0.0.1."""
    settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, trusted_proxies=["127.0.0.1/32", "10.0.0.0/8"])
    yield from make_app_env(settings)


def _last_login_ip(env: AppEnv) -> str:
    return str(sql.scalar(env.svc.reader, "SELECT ip FROM login_attempts ORDER BY id DESC LIMIT 1"))


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
