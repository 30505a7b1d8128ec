"""Notification config, routing windows, escalation steps, retry policy, message rendering, URL policy; docs complete."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from server.config.yamlsrc import ConfigError
from server.notify import escalation
from server.notify.channels import ChannelError, build, kind_of
from server.notify.config import Deadman, Delivery, NotifyConfig, Push, Route, TimeWindow, load_notify_config
from server.notify.message import alert_payload, build_note, clean, push_json
from server.notify.outcome import backoff, classify_http, parse_retry_after
from server.notify.summaries import compose

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "channels.example.yaml"


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# ---------------------------------------------------------------- the file


def test_the_example_file_validates_and_documents_every_option() -> None:
    config = load_notify_config(EXAMPLE)
    assert config.routes and config.escalations and config.deadman.url
    for channel in config.channels:
        build(channel.url, channel.allow_unsafe)  # every example URL is accepted by its channel kind
    text = EXAMPLE.read_text()
    for model in (Delivery, Push, Deadman):
        missing = [name for name in model.model_fields if f"{name}:" not in text]
        assert not missing, f"{model.__name__} options missing from channels.example.yaml: {missing}"


def test_the_readme_documents_notifications() -> None:
    readme = (REPO / "README.md").read_text()
    for needle in ("## Notifications", "channels_file", "HTTPS", "localhost", "Add to Home Screen", "escalation", "quiet_hours",
                   "dead-man", "ntfy://", "json://", "smtp://", "allow_unsafe", "/api/v1/push/action", "Retry-After"):
        assert needle in readme, f"README.md does not mention {needle!r}"
    for kind in ("webhook", "email", "apprise"):
        assert kind_of({"webhook": "https://x.example/", "email": "smtp://x.example/", "apprise": "ntfy://x/y"}[kind]) == kind


@pytest.mark.parametrize(("text", "problem"), [
    ("routes:\n  - name: a\n    escalation: nope\n", ":1: file: route 'a' names unknown escalation 'nope'"),
    ("channels:\n  - {name: a, url: 'json://x/y'}\n  - {name: a, url: 'json://x/z'}\n", "duplicate channel names: a"),
    ("routes:\n  - name: a\n    quiet_hours: {start: '25:00', end: '07:00'}\n", ":3: routes.0.quiet_hours.start:"),
    ("routes:\n  - name: a\n    when: {start: '08:00', end: '18:00', tz: Mars/Olympus}\n", "unknown time zone"),
    ("delivery:\n  lease_seconds: 5\n  timeout_seconds: 10\n", "lease_seconds must be longer than timeout_seconds"),
    ("escalations:\n  - name: e\n    steps:\n      - {after_minutes: 5}\n", "a step needs users or channels"),
    ("routs: []\n", ":1: routs: unknown key"),
    # a route naming a device or rule that no name could be never matches: refused, not silently accepted
    ("routes:\n  - name: a\n    match:\n      devices: ['bad name!']\n", ":4: routes.0.match.devices.0:"),
    ("routes:\n  - name: a\n    match:\n      rules: ['no such rule!']\n", ":4: routes.0.match.rules.0:"),
    ("- a list\n", "the notifications file is a mapping"),
])
def test_config_errors_name_the_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_notify_config(path)
    assert any(problem in p and p.startswith(str(path)) for p in caught.value.problems), caught.value.problems


# ---------------------------------------------------------------- time, routes, escalation


@pytest.mark.parametrize(("window", "moment", "inside"), [
    ({"start": "22:00", "end": "07:00"}, "2026-03-02T23:30:00", True),    # Monday night
    ({"start": "22:00", "end": "07:00"}, "2026-03-03T06:59:00", True),    # past midnight: still the night that began Monday
    ({"start": "22:00", "end": "07:00"}, "2026-03-03T07:00:00", False),
    ({"start": "22:00", "end": "07:00"}, "2026-03-03T12:00:00", False),
    ({"start": "22:00", "end": "07:00", "days": [4]}, "2026-03-07T03:00:00", True),   # Friday night, Saturday 03:00
    ({"start": "22:00", "end": "07:00", "days": [4]}, "2026-03-08T03:00:00", False),  # Saturday night is not a Friday
    ({"start": "08:00", "end": "18:00", "tz": "Europe/Berlin"}, "2026-03-02T07:30:00", True),   # 08:30 in Berlin
    ({"start": "08:00", "end": "18:00", "tz": "Europe/Berlin"}, "2026-03-02T17:30:00", False),  # 18:30 in Berlin
    ({"start": "00:00", "end": "00:00"}, "2026-03-02T12:00:00", True),    # the whole day
])
def test_time_windows(window: dict[str, Any], moment: str, inside: bool) -> None:
    assert TimeWindow.model_validate(window).contains(_ts(moment)) is inside


def test_quiet_hours_let_only_critical_alerts_through() -> None:
    route = Route.model_validate({"name": "r", "match": {"tags": ["core"]}, "users": ["*"],
                                  "quiet_hours": {"start": "22:00", "end": "07:00"}})
    night, day = _ts("2026-03-02T23:00:00"), _ts("2026-03-02T12:00:00")
    assert route.applies("critical", ["core"], "sw1", "device-down", night)
    assert not route.applies("warning", ["core"], "sw1", "cpu-high", night)
    assert route.applies("warning", ["core"], "sw1", "cpu-high", day)
    assert not route.applies("critical", ["edge"], "sw1", "device-down", day)


def test_escalation_plans_step_loop_and_finish() -> None:
    config = NotifyConfig.model_validate({
        "routes": [{"name": "r", "users": ["a"], "escalation": "e"}],
        "escalations": [{"name": "e", "loops": 2,
                         "steps": [{"after_minutes": 10, "users": ["b"]}, {"after_minutes": 5, "users": ["c"]}]}],
    })
    plan = escalation.start_plan(config.routes)
    escalation.arm(plan, config, 0)
    table = [(599, []), (600, [1]), (899, []), (900, [2]), (1500, [1]), (1800, [2]), (99999, [])]
    for now, steps in table:
        assert [n for _e, _s, n in escalation.take_due(plan, config, now)] == steps, now
    assert escalation.next_due(plan) is None and plan[0]["finished"]


# ---------------------------------------------------------------- retries


@pytest.mark.parametrize(("status", "ok", "permanent", "gone"), [
    (200, True, False, False), (201, True, False, False), (400, False, True, False), (401, False, True, False),
    (404, False, True, True), (410, False, True, True), (408, False, False, False), (429, False, False, False),
    (500, False, False, False), (503, False, False, False),
])
def test_http_answers_are_classified(status: int, ok: bool, permanent: bool, gone: bool) -> None:
    result = classify_http(status, None, "", gone_codes=frozenset({404, 410}))
    assert (result.ok, result.permanent, result.gone) == (ok, permanent, gone)


def test_retry_after_and_backoff_with_jitter() -> None:
    now = _ts("2026-03-02T12:00:00")
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Mon, 02 Mar 2026 12:01:30 GMT", now) == pytest.approx(90)
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None and parse_retry_after("-5") is None
    delays = [backoff(n, 5, 900) for n in range(1, 12) for _ in range(20)]
    assert all(2.5 <= d <= 900 for d in delays)
    assert max(backoff(1, 5, 900) for _ in range(50)) <= 5 and min(backoff(10, 5, 900) for _ in range(50)) >= 450
    assert backoff(1, 5, 900, retry_after=120) >= 120 and backoff(1, 5, 900, retry_after=10**9) <= 3600


# ---------------------------------------------------------------- messages


HOSTILE = "sw1 \x1b[2J\x1b]0;owned\x07 <script>alert(1)</script>\u202e\x00" + "é" * 5000


def _alert(**kw: Any) -> SimpleNamespace:
    base = {"id": 7, "episode": 3, "severity": "critical", "title": HOSTILE, "device_name": HOSTILE, "rule": "device-down",
            "started_at": 1.0e9, "resolved_at": None}
    return SimpleNamespace(**{**base, **kw})


def test_device_text_is_cleaned_bounded_and_escaped() -> None:
    assert clean("a\x1b[31mb\u202ec\x00d\ne", 100) == "a\\x1b[31mb\\u202ec\\x00d e"
    assert len(clean("x" * 10_000, 300)) == 300
    note = build_note(alert_payload("trigger", _alert()), "pocketnoc-7-3", "https://noc.example.net")
    assert "<script>" not in note.html and "&lt;script&gt;" in note.html
    assert "\x1b" not in note.text and "\x00" not in note.text and len(note.heading) < 200
    assert note.link == "https://noc.example.net/alerts/7" and "Key: pocketnoc-7-3" in note.text
    data = json.dumps(push_json(note, "t" * 43, True)).encode()
    assert len(data) < 3000, "a push payload stays under the 4 KB limit whatever the device said"
    assert push_json(note, "t" * 43, False)["actions"] == []


def test_a_summary_lists_the_worst_first_and_counts_resolved() -> None:
    def member(alert_id: int, kind: str, severity: str) -> SimpleNamespace:
        return SimpleNamespace(alert_id=alert_id, kind=kind, payload={"severity": severity, "title": f"alert {alert_id}",
                                                                      "device": f"d{alert_id}"})

    rows = [member(1, "trigger", "warning"), member(2, "trigger", "critical"), member(3, "trigger", "info"),
            member(3, "resolve", "info")] + [member(10 + i, "trigger", "warning") for i in range(20)]
    payload = compose(rows)
    assert payload["title"] == "22 alerts firing; 1 resolved" and payload["severity"] == "critical"
    assert payload["lines"][0] == "CRITICAL alert 2" and payload["lines"][-1].startswith("… and ")


# ---------------------------------------------------------------- URL policy


@pytest.mark.parametrize(("url", "kind"), [
    ("https://hooks.example.net/T0K", "webhook"), ("http://127.0.0.1:8080/x", "webhook"),
    ("smtps://u:p@mail.example.net/?from=a@example.net&to=b@example.net", "email"),
    ("smtp://127.0.0.1:2525/?from=a@example.net&to=b@example.net&starttls=no", "email"),
    ("ntfy://ntfy.example.net/ops", "apprise"), ("json://127.0.0.1:9000/x", "apprise"), ("tgram://123:abc/456/", "apprise"),
])
def test_good_channel_urls(url: str, kind: str) -> None:
    assert build(url).kind == kind


@pytest.mark.parametrize("url", [
    "", "no scheme", "https://x.example/\x00", "http://169.254.169.254/", "https://[fd00:ec2::254]/", "http://100.100.100.200/",
    "http://metadata.google.internal/", "json://169.254.10.10/x", "ntfy://[fe80::1%25eth0]/t", "http://0251.0376.0251.0376/",
    "smtp://mail.example.net/?from=a@example.net&to=b@example.net&starttls=no", "smtp://mail.example.net/?to=b@example.net",
    "smtp://mail.example.net/?from=a@example.net&to=b@example.net&verify=no", "mqtt://127.0.0.1/t", "windows://",
    "unknown-scheme://x",
])
def test_refused_channel_urls(url: str) -> None:
    with pytest.raises(ChannelError):
        build(url)


@pytest.mark.parametrize(("url", "secret"), [
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops", "TIiajkdnlazkcOXrIdevi7FQ"),
    ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "JHMHI8qBe7bk2ZwO5U711o3dV_js"),
    ("pover://uQiRzpo4DXghDmr9QzzfQu27cmVRsG@azGDORePK8gMaC0QOYAMyEEuzJnyUi", "azGDORePK8gMaC0QOYAMyEEuzJnyUi"),
    ("gotify://gotify.example.net/ABCDEFGHIJsecret", "ABCDEFGHIJsecret"),
    ("matrix://bot:s3cret@matrix.example.net/#ops", "s3cret"),
    ("workflows://prod-00.westus.logic.azure.com:443/aabbccddeeff00112233445566778899/Sig1234567890SECRET", "SECRET"),
    ("tgram://123456789:AABBCCDDEEFFaabbccddeeff-1234567/987654", "AABBCCDDEEFFaabbccddeeff"),
    ("ntfys://user:s3cret@ntfy.example.net/ops-topic", "s3cret"),
])
def test_apprise_services_are_accepted_and_shown_masked(url: str, secret: str) -> None:
    channel = build(url)
    assert channel.kind == "apprise" and secret not in channel.display()
