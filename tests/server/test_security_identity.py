"""Identity: a bearer token acts as its owner on every identity-keyed route, never as the user whose id equals the
token's own row id (users and tokens are created with their ids deliberately out of step)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from server.config.settings import Settings
from server.store import accounts, sessions, twofactor
from server.store import alerts as alert_store
from tests import sql
from tests.server.conftest import AppEnv, TotpClock, bearer, make_app_env, sign_in

CATALOG = """
actions:
  - id: set-location
    title: Set the location
    danger: low
    snmp:
      - set: {oid: "1.3.6.1.2.1.1.6.0", type: string, value: "rack 1", read_back: false}
    verify: false
"""


@dataclass
class Cast:
    """Users whose ids and whose tokens' ids are out of step: each token's row id is another user's id."""

    ids: dict[str, int]
    tokens: dict[str, str]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[AppEnv]:
    catalog = tmp_path / "actions.yaml"
    catalog.write_text(CATALOG)
    settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, actions_file=catalog)
    yield from make_app_env(settings)


@pytest.fixture
def cast(env: AppEnv) -> Cast:
    ids = {name: env.user(name, role) for name, role in (("root", "admin"), ("opal", "operator"), ("vic", "viewer"))}
    ids["decoy"] = env.user("decoy", "viewer")
    tokens: dict[str, str] = {}
    with env.svc.engine.begin() as conn:
        for name in ("vic", "decoy", "opal"):  # token ids 1, 2, 3: vic's is root's id, opal's is vic's id
            tokens[name] = accounts.new_token(conn, ids[name], "test")
        token_ids = dict(sql.rows(conn, "SELECT user_id, id FROM api_tokens"))
    assert token_ids[ids["vic"]] == ids["root"] and token_ids[ids["opal"]] == ids["vic"]
    return Cast(ids, tokens)


def _audit_ids(env: AppEnv) -> list[tuple[str, int | None, str]]:
    with env.svc.reader.connect() as conn:
        return [tuple(r) for r in sql.rows(conn, "SELECT username, user_id, action FROM audit")]


def _user_column(env: AppEnv, name: str, column: str) -> object:
    with env.svc.reader.connect() as conn:
        return sql.scalar(conn, f"SELECT {column} FROM users WHERE name = :name", name=name)  # noqa: S608 - a column name the test gives


def test_me_and_account_name_the_tokens_owner(env: AppEnv, cast: Cast) -> None:
    for name in ("vic", "opal"):
        me = env.client.get("/api/v1/me", headers=bearer(cast.tokens[name])).json()
        assert me["id"] == cast.ids[name] and me["name"] == name
        account = env.client.get("/api/v1/account", headers=bearer(cast.tokens[name])).json()
        assert account["id"] == cast.ids[name] and account["name"] == name


def test_second_factors_are_never_managed_with_an_api_token(env: AppEnv, cast: Cast, clock: TotpClock) -> None:
    """A stolen token must not put a second factor on its owner (a lock-out) nor touch anyone's: browser sessions only."""
    vic = bearer(cast.tokens["vic"])
    for method, path in (("post", "/api/v1/account/totp"), ("post", "/api/v1/account/totp/confirm"),
                         ("post", "/api/v1/account/recovery-codes"), ("delete", "/api/v1/account/totp")):
        body = {"json": {"code": "123456"}} if path.endswith("confirm") else {}
        answer = getattr(env.client, method)(path, headers=vic, **body)
        assert answer.status_code in (409, 403), (path, answer.status_code, answer.text)
    for who in ("vic", "root"):
        assert _user_column(env, who, "totp_pending") is None and _user_column(env, who, "totp_secret") is None
    with env.svc.reader.connect() as conn:
        assert not sql.scalars(conn, "SELECT user_id FROM recovery_codes")


def test_sessions_are_the_tokens_owners(env: AppEnv, cast: Cast) -> None:
    admin = TestClient(env.app, follow_redirects=False)
    roots = sessions.public_id(accounts.digest(sign_in(admin, "root")))
    viewer = TestClient(env.app, follow_redirects=False)
    sign_in(viewer, "vic")
    vic = bearer(cast.tokens["vic"])
    listed = env.client.get("/api/v1/account/sessions", headers=vic).json()["items"]
    assert len(listed) == 1 and listed[0]["id"] != roots
    assert env.client.delete(f"/api/v1/account/sessions/{roots}", headers=vic).status_code == 404
    ended = env.client.post("/api/v1/account/sessions/end-others", headers=vic)
    assert ended.json() == {"ended": 1}
    assert admin.get("/api/v1/me").status_code == 200  # root's session lives on
    assert viewer.get("/api/v1/me").status_code == 401


def test_passkeys_are_the_tokens_owners(env: AppEnv, cast: Cast) -> None:
    with env.svc.engine.begin() as conn:
        roots = twofactor.add_passkey(conn, cast.ids["root"], "cred-root", b"\x01", 0, "root's key", [])
        vics = twofactor.add_passkey(conn, cast.ids["vic"], "cred-vic", b"\x02", 0, "vic's key", [])
    vic = bearer(cast.tokens["vic"])
    assert [k["name"] for k in env.client.get("/api/v1/account/passkeys", headers=vic).json()["items"]] == ["vic's key"]
    # Removing one is a browser session's (a token never manages its owner's second factors): 409 for either.
    assert env.client.delete(f"/api/v1/account/passkeys/{roots}", headers=vic).status_code == 409
    assert env.client.delete(f"/api/v1/account/passkeys/{vics}", headers=vic).status_code == 409
    with env.svc.reader.connect() as conn:
        assert [k["name"] for k in twofactor.list_passkeys(conn, cast.ids["root"])] == ["root's key"]
        assert [k["name"] for k in twofactor.list_passkeys(conn, cast.ids["vic"])] == ["vic's key"]


def _subscription() -> dict[str, object]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    return {"endpoint": "http://127.0.0.1:9/push/phone", "keys": {"p256dh": b64(point), "auth": b64(b"0123456789abcdef")}}


def _device_and_alert(env: AppEnv, cast: Cast) -> tuple[int, int]:
    admin = env.token("ada", "admin")
    spec = {"name": "sw1", "address": "127.0.0.1", "interval": 3600,
            "snmp": {"port": 9, "community": "public", "write": {"community": "private"}}}
    created = env.client.post("/api/v1/devices", json=spec, headers=bearer(admin))
    assert created.status_code == 201, created.text
    device = int(created.json()["id"])
    with env.svc.engine.begin() as conn:
        alert_store.fire_event_alert(conn, "device-down", device, "", "critical", "down", time.time(), "down")
        alert_id = int(sql.one(conn, "SELECT id FROM alerts").id)
    return device, alert_id


def test_push_subscription_and_push_action_record_the_tokens_owner(env: AppEnv, cast: Cast) -> None:
    from server.store import notify_targets as store_targets

    opal = bearer(cast.tokens["opal"])
    made = env.client.post("/api/v1/push/subscriptions", json={**_subscription(), "label": "opal's phone"}, headers=opal)
    assert made.status_code == 201, made.text
    with env.svc.reader.connect() as conn:
        owner = sql.one(conn, "SELECT user_id FROM push_subscriptions").user_id
    assert owner == cast.ids["opal"]
    assert [s["label"] for s in env.client.get("/api/v1/push/subscriptions", headers=opal).json()["items"]] == ["opal's phone"]
    _, alert_id = _device_and_alert(env, cast)
    with env.svc.engine.begin() as conn:  # what delivery does: the action token is the subscription owner's
        token = store_targets.issue_token(conn, 0, int(owner), alert_id, time.time(), 600)
    acked = env.client.post("/api/v1/push/action", json={"token": token, "action": "ack"})
    assert acked.status_code == 200, acked.text
    assert acked.json()["user"] == "opal"
    with env.svc.reader.connect() as conn:
        assert sql.scalar(conn, "SELECT acked_by FROM alerts WHERE id = :id", id=alert_id) == "opal"
    entries = [(n, u) for n, u, a in _audit_ids(env) if a.startswith(("push.", "alert."))]
    assert entries and all(entry == ("opal", cast.ids["opal"]) for entry in entries), entries


def test_action_runs_and_their_audit_carry_the_tokens_owner(env: AppEnv, cast: Cast) -> None:
    device, _ = _device_and_alert(env, cast)
    run = env.client.post("/api/v1/actions/set-location/run", json={"device": device}, headers=bearer(cast.tokens["opal"]))
    assert run.status_code in (200, 201, 202), run.text
    with env.svc.reader.connect() as conn:
        rows = sql.rows(conn, "SELECT user_id, username FROM action_runs")
    assert [tuple(r) for r in rows] == [(cast.ids["opal"], "opal")]
    entries = [(n, u) for n, u, a in _audit_ids(env) if a == "action.run"]
    assert entries == [("opal", cast.ids["opal"])]
