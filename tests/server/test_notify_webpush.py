"""Web Push against a local push service that verifies VAPID and decrypts: keys, devices, gone, Retry-After, action tokens."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.notify.webpush import META_KEY
from tests import sql
from tests.peers.webpush_service import PushService, start_push_service
from tests.server.conftest import form_csrf, sign_in
from tests.server.notify_helpers import add_device, bearer, fire, messages, notify_app, receipts, wait_until

PASSWORD = "correct horse battery"


@pytest.fixture
def push() -> Iterator[PushService]:
    service = start_push_service()
    yield service
    service.stop()


def _subscribe(env: object, token: str, service: PushService, label: str = "pixel") -> dict[str, object]:
    sub = service.subscribe()
    response = env.client.post("/api/v1/push/subscriptions", json={**sub, "label": label}, headers=bearer(token))  # type: ignore[attr-defined]
    assert response.status_code == 201, response.text
    return {**response.json(), "endpoint": sub["endpoint"]}


def test_vapid_keys_are_made_once_kept_sealed_and_signed_for_the_push_service(tmp_path: Path, push: PushService) -> None:
    with notify_app(tmp_path, "push: {subject: \"mailto:noc@example.net\"}\n") as env:
        with env.engine.connect() as conn:  # made on first start, before anyone asked for it
            stored = sql.one(conn, "SELECT value FROM meta WHERE key = :key", key=META_KEY)[0]
        token = env.user("pat", "operator")
        key = env.client.get("/api/v1/push/key", headers=bearer(token)).json()["public_key"]
        assert "PRIVATE KEY" not in stored and key not in stored
        _subscribe(env, token, push)
        fire(env.engine, add_device(env.engine))
        got = push.wait_for(1)[0]
        assert got.status == 201 and got.error == ""
        assert got.vapid_key == key and got.claims["aud"] == push.origin and got.claims["sub"] == "mailto:noc@example.net"
        assert got.headers["urgency"] == "high" and got.headers["topic"] == "pocketnoc-1-1" and int(got.headers["ttl"]) > 0
        payload = got.payload
        assert payload["title"] == "CRITICAL · core-sw1 is down" and payload["device"] == "core-sw1"
        assert payload["severity"] == "critical" and payload["url"] == "/alerts/1" and payload["tag"] == "pocketnoc-1-1"
        assert [a["action"] for a in payload["actions"]] == ["ack", "snooze"] and len(payload["token"]) >= 40
    with notify_app(tmp_path, "") as env:
        assert env.client.get("/api/v1/push/key", headers=bearer(token)).json()["public_key"] == key, "kept across restarts"


def test_acknowledge_from_the_notification_works_once_as_that_user(tmp_path: Path, push: PushService) -> None:
    with notify_app(tmp_path) as env:
        token = env.user("pat", "operator")
        _subscribe(env, token, push)
        alert_id = fire(env.engine, add_device(env.engine))
        action_token = push.wait_for(1)[0].payload["token"]
        wrong = env.client.post("/api/v1/push/action", json={"token": action_token, "action": "delete"})
        assert wrong.status_code == 422
        done = env.client.post("/api/v1/push/action", json={"token": action_token, "action": "ack"})
        assert done.status_code == 200, done.text
        assert done.json()["alert"]["state"] == "acknowledged" and done.json()["user"] == "pat"
        with env.engine.connect() as conn:
            assert sql.scalar(conn, "SELECT acked_by FROM alerts WHERE id = :id", id=alert_id) == "pat"
            assert sql.scalar(conn, "SELECT username FROM audit WHERE action = :action", action="alert.ack") == "pat"
        replay = env.client.post("/api/v1/push/action", json={"token": action_token, "action": "snooze"})
        assert replay.status_code == 403, "a token works once"
        forged = env.client.post("/api/v1/push/action", json={"token": "x" * 43, "action": "ack"})
        assert forged.status_code == 403


def test_snooze_from_the_notification_and_expired_tokens(tmp_path: Path, push: PushService) -> None:
    with notify_app(tmp_path) as env:
        token = env.user("pat", "operator")
        _subscribe(env, token, push)
        first = fire(env.engine, add_device(env.engine))
        second = fire(env.engine, add_device(env.engine, "edge-1"), "edge-1 is down")
        pushed = {p.payload["alert_id"]: p.payload["token"] for p in push.wait_for(2)}
        snoozed = env.client.post("/api/v1/push/action", json={"token": pushed[first], "action": "snooze"})
        assert snoozed.status_code == 200 and snoozed.json()["alert"]["state"] == "snoozed"
        with env.engine.connect() as conn:
            until = sql.scalar(conn, "SELECT snoozed_until FROM alerts WHERE id = :id", id=first)
        assert until == pytest.approx(time.time() + 3600, abs=60)
        with env.engine.begin() as conn:
            sql.run(conn, "UPDATE notify_tokens SET expires_at = :expires_at WHERE alert_id = :alert_id",
                    expires_at=time.time() - 1, alert_id=second)
        late = env.client.post("/api/v1/push/action", json={"token": pushed[second], "action": "ack"})
        assert late.status_code == 403


def test_viewers_get_no_action_buttons(tmp_path: Path, push: PushService) -> None:
    with notify_app(tmp_path) as env:
        token = env.user("vic", "viewer")
        _subscribe(env, token, push)
        fire(env.engine, add_device(env.engine))
        payload = push.wait_for(1)[0].payload
        assert payload["actions"] == [] and payload["token"] is None
        with env.engine.connect() as conn:
            assert sql.rows(conn, "SELECT * FROM notify_tokens") == []


def test_a_gone_subscription_is_removed_and_retry_after_is_honoured(tmp_path: Path, push: PushService) -> None:
    with notify_app(tmp_path) as env:
        token = env.user("pat", "operator")
        gone = _subscribe(env, token, push, "old phone")
        _subscribe(env, token, push, "new phone")
        push.forget(str(gone["endpoint"]))
        push.answer(429, retry_after="2")  # the first push that reaches a live subscription
        fire(env.engine, add_device(env.engine))
        wait_until(lambda: messages(env.engine, status="gone"), what="the gone device")
        devices = env.client.get("/api/v1/push/subscriptions", headers=bearer(token)).json()["items"]
        assert [d["label"] for d in devices] == ["new phone"]
        ok = wait_until(lambda: [p for p in push.items() if p.status == 201], timeout=30)
        refused = [p for p in push.items() if p.status == 429]
        assert ok[0].ts - refused[0].ts >= 1.9
        # The push service answers before the sender records the answer: wait for the record.
        sent = wait_until(lambda: messages(env.engine, status="sent"), what="the message recorded as sent")[0]
        assert [r.status for r in receipts(env.engine, sent.id)] == ["HTTP 429", "HTTP 201"]


@pytest.mark.parametrize(("endpoint", "problem"), [
    ("http://push.example.net/x", "https"),
    ("https://169.254.169.254/x", "refused"),
    ("https://user@push.example.net/x", "refused"),
    ("ftp://push.example.net/x", "refused"),
])
def test_bad_subscriptions_are_refused(tmp_path: Path, push: PushService, endpoint: str, problem: str) -> None:
    with notify_app(tmp_path) as env:
        token = env.user("pat", "operator")
        keys = push.subscribe()["keys"]
        response = env.client.post("/api/v1/push/subscriptions", json={"endpoint": endpoint, "keys": keys}, headers=bearer(token))
        assert response.status_code == 422 and problem in response.text
        bad_key = {"endpoint": "https://push.example.net/x", "keys": {"p256dh": "A" * 87, "auth": keys["auth"]}}
        assert env.client.post("/api/v1/push/subscriptions", json=bad_key, headers=bearer(token)).status_code == 422


def test_the_settings_page_lists_tests_and_removes_only_your_devices(tmp_path: Path, push: PushService) -> None:
    with notify_app(tmp_path) as env:
        pat = env.user("pat", "operator")
        sam = env.user("sam", "operator")
        mine = _subscribe(env, pat, push, "pat's <b>pixel</b>")
        theirs = _subscribe(env, sam, push, "sam's iphone")
        sign_in(env.client, "pat", PASSWORD)
        page = env.client.get("/notify")
        assert page.status_code == 200
        assert "pat&#39;s &lt;b&gt;pixel&lt;/b&gt;" in page.text and "sam&#39;s iphone" not in page.text
        assert 'src="/static/push.js"' in page.text and "<script>" not in page.text
        csrf = form_csrf(page.text)
        assert env.client.post(f"/notify/devices/{mine['id']}/test", data={"csrf_token": csrf}).status_code == 303
        test = push.wait_for(1)[0].payload
        assert test["title"] == "pocketnoc test notification" and test["actions"] == []
        assert env.client.post(f"/notify/devices/{theirs['id']}/delete", data={"csrf_token": csrf}).status_code == 404
        assert env.client.post(f"/notify/devices/{mine['id']}/delete", data={"csrf_token": "nope"}).status_code == 403
        assert env.client.post(f"/notify/devices/{mine['id']}/delete", data={"csrf_token": csrf}).status_code == 303
        with env.engine.connect() as conn:
            assert sql.scalars(conn, "SELECT label FROM push_subscriptions") == ["sam's iphone"]
        sent = env.client.get("/notify").text
        assert "pocketnoc test notification" in sent, "the per-user view shows what was sent"
        mine_api = env.client.get("/api/v1/notify/mine", headers=bearer(pat)).json()["items"]
        assert [m["kind"] for m in mine_api] == ["test"] and mine_api[0]["deliveries"][0]["status"] == "HTTP 201"


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:18777/admin/delete-everything?x=1",  # plain http on this host
        "https://127.0.0.1:8080/api/v1/devices",  # this host over https
        "https://localhost/push",
        "http://[::1]:9000/x",
        "https://10.1.2.3/push",  # a private network
        "https://192.168.1.1/push",
        "http://push.example.net/x",  # not https
    ],
)
def test_a_subscription_cannot_point_the_server_at_internal_services(endpoint: str) -> None:
    """A viewer's push subscription is a URL the server POSTs to: only public https push services are accepted."""
    from server.notify.webpush import PushError, check_subscription

    key = base64.urlsafe_b64encode(b"\x04" + b"\x01" * 64).decode().rstrip("=")
    auth = base64.urlsafe_b64encode(b"\x02" * 16).decode().rstrip("=")
    with pytest.raises(PushError):
        check_subscription(endpoint, key, auth)
    assert check_subscription("https://fcm.googleapis.com/fcm/send/abc", key, auth) == "https://fcm.googleapis.com"


def test_a_worker_or_serve_process_loads_the_push_sender_only_when_it_sends() -> None:
    # pywebpush brings aiohttp (~0.7 s of CPU): every `pocketnoc serve` and `worker` start paid it, push or not.
    code = ("import sys, server.polling.queue_worker, server.web.app; "
            "print(sorted(m for m in ('aiohttp', 'pywebpush') if m in sys.modules))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                          cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
