"""Delivery through the running worker to real local peers: Apprise json:// and ntfy://, webhooks, SMTP; failures."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from server.keys.secretbox import SecretBox
from server.notify.runtime import Notify
from tests import sql
from tests.peers.receiver import Receiver, start_receiver
from tests.peers.smtp import PASSWORD, USER, SmtpPeer
from tests.server.conftest import form_csrf, sign_in
from tests.server.notify_helpers import add_device, bearer, fire, messages, notify_app, receipts, resolve, wait_until

HOSTILE = 'core-sw1 "}{ <script>alert(1)</script> \x1b[2J\u202egnp.exe\x00 ✓ & </li>'


def test_json_ntfy_and_webhook_carry_the_dedup_key_and_survive_hostile_text(tmp_path: Path, receiver: Receiver) -> None:
    yaml = f"""
channels:
  - {{name: hook, url: "json://127.0.0.1:{receiver.port}/json"}}
  - {{name: ntfy, url: "ntfy://127.0.0.1:{receiver.port}/ops"}}
  - {{name: web, url: "http://127.0.0.1:{receiver.port}/web"}}
"""
    with notify_app(tmp_path, yaml, base_url="https://noc.example.net") as env:
        device = add_device(env.engine)
        alert_id = fire(env.engine, device, HOSTILE)
        got = receiver.wait_for(3)
        by_path = {r.path: r for r in got}
        key = f"pocketnoc-{alert_id}-1"
        apprise_json = by_path["/json"].json
        assert apprise_json["dedup_key"] == key and by_path["/json"].headers["x-pocketnoc-dedup-key"] == key
        assert apprise_json["type"] == "failure"
        web = by_path["/web"].json
        assert web["dedup_key"] == key and web["alert"]["alert_id"] == alert_id and web["kind"] == "trigger"
        assert web["link"] == f"https://noc.example.net/alerts/{alert_id}"
        ntfy = by_path["/"].json
        assert ntfy["topic"] == "ops" and key in ntfy["message"]
        for item in got:
            flat = json.dumps(json.loads(item.body.decode("utf-8")), ensure_ascii=False)  # valid UTF-8 JSON
            assert "\x1b" not in flat and "\u202e" not in flat and "\x00" not in flat
        assert "<script>alert(1)</script>" in web["title"], "JSON carries the text as data, escaped by JSON itself"
        resolve(env.engine, device)
        resolved = receiver.wait_for(6)
        assert {r.path for r in resolved[3:]} == {"/json", "/", "/web"}
        wait_until(lambda: len(messages(env.engine, status="sent")) == 6, what="six sent messages")



def test_without_base_url_messages_carry_no_relative_link_and_the_admin_is_told(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="pocketnoc.notify")
    with notify_app(tmp_path, f"channels:\n  - {{name: web, url: \"http://127.0.0.1:{receiver.port}/web\"}}\n") as env:
        warned = [r.getMessage() for r in caplog.records if "base_url is not set" in r.getMessage()]
        assert len(warned) == 1, "warned once at start"
        env.user("viewer1", "viewer")
        fire(env.engine, add_device(env.engine))
        web = receiver.wait_for(1)[0].json
        assert "link" not in web, "no link rather than a relative one"
        assert "Open:" not in web["text"] and "/alerts/" not in web["text"]
        sign_in(env.client, "viewer1", "correct horse battery")
        page = env.client.get("/notify/channels").text
        assert 'data-warn="base-url"' in page and "base_url</code> is not set" in page
    (tmp_path / "set").mkdir()
    with notify_app(tmp_path / "set", "", base_url="https://noc.example.net") as env:
        env.user("viewer1", "viewer")
        sign_in(env.client, "viewer1", "correct horse battery")
        assert 'data-warn="base-url"' not in env.client.get("/notify/channels").text


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_email_with_starttls_and_auth_has_plain_and_escaped_html(tmp_path: Path, mode: str) -> None:
    smtp = SmtpPeer(tmp_path, mode, auth=True)
    try:
        scheme = "smtp" if mode == "starttls" else "smtps"  # STARTTLS on submission, or implicit TLS
        url = (f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{smtp.port}/?from=noc@example.net&to=oncall@example.net,boss@example.net"
               f"&cafile={smtp.cafile}")
        with notify_app(tmp_path, f"channels:\n  - name: mail\n    url: \"{url}\"\n") as env:
            device = add_device(env.engine, "sw-1")
            fire(env.engine, device, HOSTILE)
            mail = smtp.wait_for(1)[0]
            assert mail.tls and sorted(mail.recipients) == ["boss@example.net", "oncall@example.net"]
            msg = mail.message
            assert msg["Subject"].startswith("CRITICAL · core-sw1")
            html = msg.get_body(("html",)).get_content()
            plain = msg.get_body(("plain",)).get_content()
            assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;/li&gt;" in html
            assert "<script>alert(1)</script>" in plain and "\x1b" not in plain and "\x00" not in plain
            resolve(env.engine, device)
            second = smtp.wait_for(2)[1].message
            assert second["Subject"].startswith("Resolved · ")
            assert second["In-Reply-To"] == msg["In-Reply-To"] == "<pocketnoc-1-1@example.net>"
            assert second["X-Pocketnoc-Dedup-Key"] == "pocketnoc-1-1"
    finally:
        smtp.stop()


def test_a_permanent_400_is_dead_lettered_once_and_visible(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answer(400)
    with notify_app(tmp_path, f"channels:\n  - {{name: hook, url: \"json://127.0.0.1:{receiver.port}/x\"}}\n") as env:
        admin = env.user("root", "admin")
        fire(env.engine, add_device(env.engine))
        dead = wait_until(lambda: messages(env.engine, status="dead"), what="a dead letter")[0]
        env.settle()  # two minutes later for the worker: a retry storm would show up by now
        assert len(receiver.items()) == 1 and dead.attempts == 1
        assert [r.status for r in receipts(env.engine, dead.id)] == ["apprise error=400"]
        listed = env.client.get("/api/v1/notify/messages", params={"status": "dead"}, headers=bearer(admin)).json()["items"]
        assert [m["id"] for m in listed] == [dead.id] and listed[0]["deliveries"][0]["result"] == "dead"
        env.client.cookies.clear()
        sign_in(env.client, "root", "correct horse battery")
        page = env.client.get("/notify/channels")
        assert "Dead letters" in page.text and "apprise error=400" in page.text
        receiver.answer(200)
        retried = env.client.post(f"/notify/messages/{dead.id}/retry", data={"csrf_token": form_csrf(page.text)})
        assert retried.status_code == 303
        wait_until(lambda: messages(env.engine, status="sent"), what="the retried message")
        assert len(receiver.items()) == 2


@pytest.mark.parametrize(("scheme", "statuses"), [
    ("http", ["HTTP 429", "HTTP 200"]),  # our own webhook
    ("json", ["apprise error=429", "apprise ok"]),  # an Apprise channel: its plugin's HTTP answer is observed
])
def test_429_retry_after_is_honoured_then_delivered(tmp_path: Path, receiver: Receiver, scheme: str,
                                                     statuses: list[str]) -> None:
    receiver.answer(429, retry_after="2")
    url = f"{scheme}://127.0.0.1:{receiver.port}/hook"
    with notify_app(tmp_path, f"channels:\n  - {{name: web, url: \"{url}\"}}\n") as env:
        fire(env.engine, add_device(env.engine))
        receiver.wait_for(1)
        receiver.answer(200)
        got = receiver.wait_for(2, timeout=30)
        assert got[1].ts - got[0].ts >= 1.9, "Retry-After: 2 was honoured though the back-off is 0.2 s"
        sent = wait_until(lambda: messages(env.engine, status="sent"))[0]
        assert [r.status for r in receipts(env.engine, sent.id)] == statuses
        assert len(receiver.items()) == 2


def test_a_receiver_that_is_down_gets_trigger_then_resolve_when_it_is_back(tmp_path: Path, receiver: Receiver) -> None:
    # Ten minutes down at 1/100 scale: the default back-off (5 s doubling up to 900 s) becomes 0.05 s up to 9 s.
    receiver.stop()
    yaml = (f"channels:\n  - {{name: hook, url: \"json://127.0.0.1:{receiver.port}/x\"}}\n"
            "delivery: {poll_seconds: 0.2, backoff_seconds: 0.05, backoff_max_seconds: 9, timeout_seconds: 3,"
            " lease_seconds: 6}\n")
    with notify_app(tmp_path, yaml) as env:
        device = add_device(env.engine)
        fire(env.engine, device)
        trigger = wait_until(lambda: [m for m in messages(env.engine) if m.attempts >= 3], what="three failed attempts")[0]
        resolve(env.engine, device)
        # "10 minutes" of the worker's time pass without waiting them out: its clock runs ahead in steps of half a
        # second, a pass (or more) at each; a worker that did not back off would retry at every step.
        worker = env.svc.notify.worker
        assert worker is not None
        real, skew = worker.clock, [0.0]
        worker.clock = lambda: real() + skew[0]
        down_for = 6.0
        while skew[0] < down_for:
            skew[0] += 0.5
            env.passes(1)
        # An attempt the last pass started may still be out ('sending'): judge the attempts once none is in flight.
        def settled() -> list[Any]:
            found = receipts(env.engine, trigger.id)
            return [] if any(r.result == "sending" for r in found) else found

        tried = wait_until(settled, what="no attempt out")
        attempts = messages(env.engine, id=trigger.id)[0].attempts
        assert attempts <= 12, f"{attempts} attempts in {down_for:.0f}s: back-off must bound the retries"
        gaps = [b.ts - a.ts for a, b in itertools.pairwise(tried)]
        assert max(gaps) > min(gaps) * 3, f"the gaps between attempts grow: {gaps}"
        assert {r.result for r in tried} == {"retry"} and messages(env.engine, id=trigger.id)[0].status == "pending"
        assert messages(env.engine, kind="resolve")[0].attempts == 0, "the resolve waits behind the trigger"
        receiver.start()
        skew[0] += 9  # the longest back-off passes: the next retry is due
        receiver.wait_for(2, timeout=30)
        wait_until(lambda: len(messages(env.engine, status="sent")) == 2, what="both recorded as sent")
        env.settle()  # and nothing more is sent in the two minutes after
        kinds = [r.json["title"].split(" · ")[0] for r in receiver.items()]
        assert kinds == ["CRITICAL", "Resolved"], kinds


def test_a_failing_channel_is_marked_broken_and_announced_through_the_others(tmp_path: Path, receiver: Receiver) -> None:
    other = start_receiver()
    receiver.answer(503)
    try:
        yaml = (f"channels:\n  - {{name: flaky, url: \"{receiver.url}/flaky\"}}\n"
                f"  - {{name: backup, url: \"{other.url}/backup\"}}\n"
                "delivery: {poll_seconds: 0.2, backoff_seconds: 0.2, backoff_max_seconds: 0.5, timeout_seconds: 3,"
                " lease_seconds: 6,"
                " broken_after_failures: 3}\n")
        with notify_app(tmp_path, yaml) as env:
            token = env.user("viewer1", "viewer")
            operator = env.user("op1", "operator")
            fire(env.engine, add_device(env.engine))
            notices = other.wait_for(2, timeout=30)
            titles = [r.json["title"] for r in notices]
            assert "Notification channel flaky is failing" in titles
            channels = {c["name"]: c for c in env.client.get("/api/v1/channels", headers=bearer(token)).json()["items"]}
            assert channels["flaky"]["status"] == "broken" and channels["backup"]["status"] == "ok"
            assert "last_error" not in channels["flaky"], "a viewer sees health, not what the receiver answered"
            detailed = {c["name"]: c for c in env.client.get("/api/v1/channels", headers=bearer(operator)).json()["items"]}
            assert "HTTP 503" in detailed["flaky"]["last_error"]
            sign_in(env.client, "op1", "correct horse battery")
            page = env.client.get("/notify/channels").text
            assert 'ch-broken' in page and "broken since" in page and "HTTP 503" in page, "marked broken in the UI"
            receiver.answer(200)
            other.wait_for(1, lambda r: r.json["title"] == "Notification channel flaky is working again", timeout=30)
            with env.engine.connect() as conn:
                assert sql.scalar(conn, "SELECT status FROM notify_channels WHERE name = :name", name="flaky") == "ok"
    finally:
        other.stop()


@pytest.mark.parametrize("url", [
    "json://169.254.169.254/latest", "http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/x",
    "https://[fe80::1]/hook", "http://[::ffff:169.254.169.254]/", "http://0xA9FEA9FE/", "rsyslog://127.0.0.1",
    "file:///etc/passwd", "gopher://example.net/", "smtp://mail.example.net:25/?from=a@b.c&to=d@e.f&starttls=no",
])
def test_unsafe_channel_urls_are_refused_unless_an_admin_allows_them(tmp_path: Path, url: str) -> None:
    with notify_app(tmp_path) as env:
        admin = env.user("root", "admin")
        operator = env.user("op", "operator")
        body = {"name": "x", "url": url}
        assert env.client.post("/api/v1/channels", json=body, headers=bearer(operator)).status_code == 403
        refused = env.client.post("/api/v1/channels", json=body, headers=bearer(admin))
        assert refused.status_code == 422, refused.text
        if url.startswith(("gopher", "http://metadata", "file")):
            return  # not a usable URL (or a metadata name) even when allowed
        allowed = env.client.post("/api/v1/channels", json={**body, "allow_unsafe": True}, headers=bearer(admin))
        assert allowed.status_code == 201, allowed.text


def test_channel_urls_are_sealed_and_never_returned_whole(tmp_path: Path, receiver: Receiver) -> None:
    secret_url = f"json://hookuser:s3cr3t-pass@127.0.0.1:{receiver.port}/tok-abcdef123456?+X-Api-Key=k3y-zyxw"
    with notify_app(tmp_path) as env:
        admin = env.user("root", "admin")
        created = env.client.post("/api/v1/channels", json={"name": "hook", "url": secret_url}, headers=bearer(admin))
        assert created.status_code == 201
        listed = env.client.get("/api/v1/channels", headers=bearer(admin)).text
        for text in (created.text, listed):
            assert "s3cr3t-pass" not in text and "k3y-zyxw" not in text
        with env.engine.connect() as conn:
            row = sql.one(conn, "SELECT id, secret, display FROM notify_channels")
        assert b"s3cr3t" not in bytes(row.secret) and "s3cr3t" not in row.display
        test = env.client.post(f"/api/v1/channels/{row.id}/test", headers=bearer(admin))
        assert test.status_code == 202
        got = receiver.wait_for(1)[0]
        assert got.json["title"] == "pocketnoc test notification" and got.headers["x-api-key"] == "k3y-zyxw"
        audit = env.client.get("/api/v1/audit", headers=bearer(admin)).text
        assert "channel.create" in audit and "s3cr3t-pass" not in audit


def test_a_changed_secrets_key_keeps_messages_for_after_the_restart(tmp_path: Path, receiver: Receiver) -> None:
    """After a forced key rotation by another process, sealed channel URLs cannot be opened: retried, never dead."""
    with notify_app(tmp_path) as env:
        admin = env.user("root", "admin")
        url = f"json://127.0.0.1:{receiver.port}/hook"
        assert env.client.post("/api/v1/channels", json={"name": "hook", "url": url}, headers=bearer(admin)).status_code == 201
        notify = env.svc.notify
        assert isinstance(notify, Notify) and notify.worker is not None
        good = notify.worker.box
        notify.worker.box = SecretBox(Fernet.generate_key())  # what this process holds after `rotate --force`
        fire(env.engine, add_device(env.engine))
        held = wait_until(lambda: [m for m in messages(env.engine) if m.attempts >= 1], what="an attempt")[0]
        assert held.status == "pending" and "restart pocketnoc" in (held.last_error or ""), held
        assert {r.result for r in receipts(env.engine, held.id)} == {"retry"}
        notify.worker.box = good  # restarted with the new key
        with env.engine.begin() as conn:  # due now, instead of after its back-off
            sql.run(conn, "UPDATE notify_messages SET next_at = :now WHERE id = :id", now=time.time(), id=held.id)
        notify.worker.kick()
        receiver.wait_for(1, timeout=30)
        wait_until(lambda: messages(env.engine, id=held.id)[0].status == "sent", what="sent after the restart")
