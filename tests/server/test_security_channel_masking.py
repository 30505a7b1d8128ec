"""Channel URLs: one masking rule for every kind; viewers see a channel's name and kind only (finding 7 of issue 13)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.notify.channels import build
from server.store.notify_targets import VIEWER_FIELDS
from tests import sql
from tests.peers.receiver import Receiver, start_receiver
from tests.server.conftest import sign_in
from tests.server.notify_helpers import bearer, notify_app, wait_until


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    peer = start_receiver()
    yield peer
    peer.stop()


# Every channel kind (webhook, email, Apprise) with secrets in the user, password, host, path and query parts:
# (name, URL, the server an operator may see or "" when the host part itself is a token, the secrets).
CHANNELS = [
    ("hook", "https://hookuser:hookpass@hooks.example.net/tok-path-secret?key=query-secret", "hooks.example.net",
     ["hookuser", "hookpass", "tok-path-secret", "query-secret"]),
    ("mail", "smtp://smtplogin:smtppass@mail.example.net/?from=noc@example.net&to=oncall@example.net", "mail.example.net",
     ["smtplogin", "smtppass"]),
    ("ntfy-cloud", "ntfy://ntfytopicsecret", "", ["ntfytopicsecret"]),
    ("ntfys-cloud", "ntfys://othertopicsecret?priority=high", "", ["othertopicsecret"]),
    ("ntfy-own", "ntfys://ntfyuser:ntfypass@ntfy.example.net/owntopicsecret", "ntfy.example.net",
     ["ntfyuser", "ntfypass", "owntopicsecret"]),
    ("matrix", "matrixs://matrixuser:matrixpass@matrix.example.net/#roomsecret", "matrix.example.net",
     ["matrixuser", "matrixpass", "roomsecret"]),
    ("mailto", "mailtos://mailtouser:mailtopass@example.net?to=someone@example.net", "example.net",
     ["mailtouser", "mailtopass", "someone"]),
    ("telegram", "tgram://123456789:AAbottokensecret/-100777", "", ["123456789", "AAbottokensecret", "100777"]),
    ("discord", "discord://987654321/webhooktokensecret", "", ["987654321", "webhooktokensecret"]),
    ("slack", "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#opschan", "", ["T1JJ3T3L2", "TIiajkdnlazkcOXrIdevi7FQ"]),
    ("gotify", "gotify://gotify.example.net/gotifyapptokensecret", "gotify.example.net", ["gotifyapptokensecret"]),
    ("json", "json://jsonuser:jsonpass@hooks.example.net/json-path-secret", "hooks.example.net",
     ["jsonuser", "jsonpass", "json-path-secret"]),
    ("pushover", "pover://userkeysecret@apptokensecret", "", ["userkeysecret", "apptokensecret"]),
]


def test_every_kind_masks_each_secret_bearing_part_for_admins_and_shows_viewers_no_url(tmp_path: Path) -> None:
    with notify_app(tmp_path) as env:
        admin = env.user("root", "admin")
        operator = env.user("op", "operator")
        viewer = env.user("watcher", "viewer")
        kinds = set()
        for name, url, _server, _secrets in CHANNELS:
            answer = env.client.post("/api/v1/channels", json={"name": name, "url": url}, headers=bearer(admin))
            assert answer.status_code == 201, answer.text
            kinds.add(answer.json()["kind"])
        assert kinds == {"webhook", "email", "apprise"}, "every kind the product has is covered"
        for token in (admin, operator):
            listed = env.client.get("/api/v1/channels", headers=bearer(token))
            by_name = {c["name"]: c for c in listed.json()["items"]}
            for name, _url, server, secrets in CHANNELS:
                shown = by_name[name]["url"]
                assert shown.startswith(_url.split("://")[0] + "://"), shown
                if server:
                    assert server in shown, (name, shown)
                for secret in secrets:
                    assert secret not in listed.text, (name, secret)
        seen = env.client.get("/api/v1/channels", headers=bearer(viewer))
        for item in seen.json()["items"]:
            assert set(item) == set(VIEWER_FIELDS), "a viewer sees name, kind and health only"
        for _name, _url, server, secrets in CHANNELS:
            for piece in [*secrets, *([server] if server else [])]:
                assert piece not in seen.text, piece
        audit = env.client.get("/api/v1/audit", headers=bearer(admin)).text
        sign_in(env.client, "watcher", "correct horse battery")
        viewer_page = env.client.get("/notify/channels").text
        env.client.cookies.clear()
        sign_in(env.client, "root", "correct horse battery")
        admin_page = env.client.get("/notify/channels").text
        assert "ntfy.example.net" in admin_page and "ntfy.example.net" not in viewer_page
        for _name, _url, _server, secrets in CHANNELS:
            for secret in secrets:
                for text in (viewer_page, admin_page, audit):
                    assert secret not in text, secret


def test_a_channel_stored_under_the_old_rule_is_masked_again_at_start(tmp_path: Path) -> None:
    with notify_app(tmp_path) as env:
        admin = env.user("root", "admin")
        assert env.client.post("/api/v1/channels", json={"name": "n", "url": "ntfy://oldtopicsecret"},
                               headers=bearer(admin)).status_code == 201
        with env.engine.begin() as conn:
            sql.run(conn, "UPDATE notify_channels SET display = :display", display="ntfy://oldtopicsecret/")
    with notify_app(tmp_path) as env:
        with env.engine.connect() as conn:
            assert sql.scalar(conn, "SELECT display FROM notify_channels") == build("ntfy://oldtopicsecret").display()
        assert "oldtopicsecret" not in env.client.get("/api/v1/channels", headers=bearer(admin)).text


@pytest.mark.parametrize("answer", [400, 503])
def test_a_receivers_echo_of_the_topic_never_reaches_the_channel_error(tmp_path: Path, receiver: Receiver,
                                                                      answer: int) -> None:
    receiver.answer(answer)
    with notify_app(tmp_path) as env:
        admin = env.user("root", "admin")
        url = f"ntfy://127.0.0.1:{receiver.port}/echoedtopicsecret"
        created = env.client.post("/api/v1/channels", json={"name": "n", "url": url}, headers=bearer(admin))
        assert created.status_code == 201, created.text
        assert env.client.post(f"/api/v1/channels/{created.json()['id']}/test", headers=bearer(admin)).status_code == 202
        receiver.wait_for(1)
        item = wait_until(lambda: [c for c in env.client.get("/api/v1/channels", headers=bearer(admin)).json()["items"]
                                   if c["last_error"]], what="the failure recorded")[0]
        assert "error=" in item["last_error"] and "echoedtopicsecret" not in item["last_error"], item
        messages = env.client.get("/api/v1/notify/messages", headers=bearer(admin)).text
        assert "echoedtopicsecret" not in messages
