"""HTML pages on a real app: hostile device data is escaped, problems come first, roles shape the page."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.config.inventory import DeviceSpec
from server.store.devices import create_device
from tests import sql
from tests.server.conftest import AppEnv, sign_in

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)", re.IGNORECASE)
BIG = "A" * 65_536
HOSTILE_FACTS = {
    "sys_descr": "<script>alert(1)</script>",
    "sys_name": "{{7*7}}",
    "sys_location": "\x1b[2J\x1b[31mred alert\x1b[0m",
    "sys_contact": BIG,
    "hostname": "bad \ud800 surrogate",
    "os": "</dd></dl><iframe src=//evil.example>",
    "uptime_seconds": 90061,
}


def add_device(env: AppEnv, name: str, tags: list[str] | None = None, **status: Any) -> int:
    with env.svc.engine.begin() as conn:
        device_id = create_device(conn, DeviceSpec(name=name, address="192.0.2.1", tags=tags or []), env.svc.box, 60)
        if status:
            sql.update(conn, "device_status", "device_id = :d", status, d=device_id)
    return device_id


def signed_in(env: AppEnv, role: str) -> TestClient:
    env.user(role, role)
    sign_in(env.client, role)
    return env.client


def assert_safe(html: str) -> None:
    """No injected markup survived unescaped, nothing was evaluated as a template."""
    assert "<script>alert(1)</script>" not in html
    assert "<iframe" not in html and "<img src=x" not in html
    assert 'onmouseover="' not in html
    assert not INLINE_SCRIPT.search(html), "an inline script would be blocked by our own CSP anyway"


def test_pages_need_a_sign_in(app_env: AppEnv) -> None:
    response = app_env.client.get("/")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/"
    response = app_env.client.get("/devices/1?range=7d")
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=/devices/1")


def test_the_login_page_renders_with_security_headers(app_env: AppEnv) -> None:
    response = app_env.client.get("/login")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<form method="post" action="/login"' in response.text
    assert 'name="viewport"' in response.text
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert_safe(response.text)


def test_hostile_facts_are_escaped_on_the_device_page(app_env: AppEnv) -> None:
    client = signed_in(app_env, "viewer")
    now = time.time()
    device_id = add_device(
        app_env,
        "victim",
        state="down",
        state_since=now - 60,
        last_polled=now,
        last_error="<img src=x onerror=alert(1)>",
        facts=HOSTILE_FACTS,
        tables={
            "interfaces": [
                {"index": 1, "name": "<b>eth0</b>", "alias": '"><script>alert(1)</script>', "admin": "up",
                 "oper": '" onmouseover="alert(1)', "speed_bps": 1e9},
                "not a row",
                {"index": "x", "name": BIG},
            ],
            "storage": [{"descr": "<script>alert(1)</script>", "type": "fixed", "used_pct": 50.0, "size_bytes": 1000}],
            "commands": [{"name": "c", "status": "ok", "value": None, "output": "<script>alert(1)</script>"}],
        },
        checks={"snmp": {"ok": False, "answered": True, "fails": 3, "error": "<script>alert(1)</script>", "ts": now, "ms": 1.0}},
        metrics={"snmp": [["cpu_load_pct", "", 12.0], ["if_in_bps", '{"ifIndex":"1"}', 1000.0]]},
    )
    sql.insert(app_env.svc.engine, "state_events", device_id=device_id, ts=now, old_state="up", new_state="down",
               reason="<script>alert(1)</script>")
    response = client.get(f"/devices/{device_id}")
    assert response.status_code == 200
    html = response.text
    assert_safe(html)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "{{7*7}}" in html, "template syntax in data is shown as text, never evaluated"
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;eth0&lt;/b&gt;" in html
    assert "red alert" in html
    assert "surrogate" in html
    assert "1d 1h" in html  # uptime 90061 s


def test_hostile_facts_are_escaped_in_the_device_list(app_env: AppEnv) -> None:
    client = signed_in(app_env, "viewer")
    add_device(app_env, "victim", state="down", last_error="<script>alert(1)</script>" + BIG, facts=HOSTILE_FACTS)
    sql.update(app_env.svc.engine, "devices", "1 = 1", {"tags": ['"><script>alert(1)</script>', "ok"]})
    response = client.get("/")
    assert response.status_code == 200
    assert_safe(response.text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert len(response.text) < 100_000, "long device text is truncated in the list"
    tag = client.get("/", params={"tag": '"><script>alert(1)</script>'})
    assert tag.status_code == 200 and "victim" in tag.text
    assert_safe(tag.text)


def test_reflected_search_text_is_escaped(app_env: AppEnv) -> None:
    client = signed_in(app_env, "viewer")
    response = client.get("/", params={"q": '"><script>alert(1)</script>', "state": "<x>"})
    assert response.status_code == 200
    assert_safe(response.text)
    assert "No devices match" in response.text


def test_problems_come_first(app_env: AppEnv) -> None:
    client = signed_in(app_env, "viewer")
    for name, state in (("aa-up", "up"), ("bb-unknown", "unknown"), ("cc-degraded", "degraded"), ("dd-down", "down"),
                        ("ee-unreachable", "unreachable"), ("ff-down", "down")):
        add_device(app_env, name, state=state)
    html = client.get("/").text
    names = re.findall(r'<strong class="name">([^<]+)</strong>', html)
    assert names == ["dd-down", "ff-down", "ee-unreachable", "cc-degraded", "bb-unknown", "aa-up"]


def test_search_and_tag_filter(app_env: AppEnv) -> None:
    client = signed_in(app_env, "viewer")
    add_device(app_env, "core-sw1", tags=["core", "site-a"])
    add_device(app_env, "edge-rtr1", tags=["edge", "site-a"])
    add_device(app_env, "web-01", tags=["servers"], facts={"sys_name": "www.example"})

    def shown(**params: str) -> list[str]:
        response = client.get("/", params=params)
        assert response.status_code == 200
        return re.findall(r'<strong class="name">([^<]+)</strong>', response.text)

    assert shown() == ["core-sw1", "edge-rtr1", "web-01"]
    assert shown(q="CORE") == ["core-sw1"]
    assert shown(q="site-a") == ["core-sw1", "edge-rtr1"]
    assert shown(q="www") == ["web-01"]
    assert shown(tag="edge") == ["edge-rtr1"]
    assert shown(tag="site-a", q="edge") == ["edge-rtr1"]
    assert shown(tag="nope") == []
    html = client.get("/", params={"tag": "edge"}).text
    assert '<option value="edge" selected>' in html


@pytest.mark.parametrize(("role", "can_poll"), [("viewer", False), ("operator", True), ("admin", True)])
def test_poll_now_is_shown_only_to_operators(app_env: AppEnv, role: str, can_poll: bool) -> None:
    client = signed_in(app_env, role)
    device_id = add_device(app_env, "sw1")
    html = client.get(f"/devices/{device_id}").text
    assert ("Poll now" in html) is can_poll
    assert f"{role} ({role})" in html


def test_a_viewer_cannot_post_poll_now(app_env: AppEnv) -> None:
    client = signed_in(app_env, "viewer")
    device_id = add_device(app_env, "sw1")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert csrf
    response = client.post(f"/devices/{device_id}/poll", data={"csrf_token": csrf.group(1)})
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")


def test_unknown_device_gives_a_404_page(app_env: AppEnv) -> None:
    client = signed_in(app_env, "viewer")
    response = client.get("/devices/999999")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "No such device" in response.text
    assert response.headers["content-security-policy"]


def test_bad_page_parameters_give_an_error_page(app_env: AppEnv) -> None:
    client = signed_in(app_env, "viewer")
    device_id = add_device(app_env, "sw1")
    for path in (f"/devices/{device_id}?range=<script>", "/devices/<script>alert(1)</script>"):
        response = client.get(path)
        assert 400 <= response.status_code < 500, path
        assert response.headers["content-type"].startswith("text/html")
        assert_safe(response.text)


def test_unknown_pages_are_html_404s(app_env: AppEnv) -> None:
    client = signed_in(app_env, "viewer")
    response = client.get("/no/such/<script>alert(1)</script>")
    assert response.status_code == 404
    assert_safe(response.text)


def test_device_page_without_any_data_yet(app_env: AppEnv) -> None:
    client = signed_in(app_env, "viewer")
    device_id = add_device(app_env, "fresh")
    response = client.get(f"/devices/{device_id}")
    assert response.status_code == 200
    assert "Not polled yet" in response.text
    for range_ in ("1h", "24h", "7d", "30d"):
        assert client.get(f"/devices/{device_id}", params={"range": range_}).status_code == 200


def test_static_files_are_served(app_env: AppEnv) -> None:
    response = app_env.client.get("/static/app.css")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/css")


def test_the_device_page_shows_hardware_family_and_what_could_not_be_read(app_env: AppEnv) -> None:
    client = signed_in(app_env, "viewer")
    facts = {
        "sys_name": "fw1",
        "family": "fortinet-fortigate",
        "hw_model": "FGT_60F",
        "hw_serial": "<b>FGT60F0000</b>",
        "hw_firmware": "v7.2.6,build1575",
        "warnings": ["no answer for hr_system_uptime, even asked alone; the rest was read"],
    }
    sensors = [
        {
            "index": "38488",
            "name": "module-1 <CPU>",
            "metric": "sensor_celsius",
            "unit": "°C",
            "value": 44.0,
            "thresholds": [
                {"relation": ">=", "severity": "minor", "value": 80.0},
                {"relation": ">=", "severity": "major", "value": 90.0},
            ],
        }
    ]
    device_id = add_device(app_env, "fw1", state="up", facts=facts, tables={"sensors": sensors})
    html = client.get(f"/devices/{device_id}").text
    assert "<h2>Sensors</h2>" in html and "<strong>module-1 &lt;CPU&gt;</strong> 44.0 °C" in html
    assert "minor &gt;= 80.0 · major &gt;= 90.0" in html
    assert "<dt>Family</dt><dd>fortinet-fortigate</dd>" in html and "<dt>Model</dt><dd>FGT_60F</dd>" in html
    assert "<dt>Serial</dt><dd>&lt;b&gt;FGT60F0000&lt;/b&gt;</dd>" in html and "v7.2.6,build1575" in html
    assert '<p class="warn">Partly read: no answer for hr_system_uptime' in html


def test_a_linux_hosts_two_memory_figures_say_which_counts_the_cache(app_env: AppEnv) -> None:
    """UCD's figure leaves out cache and buffers; HOST-RESOURCES' RAM row includes them: side by side, each says so."""
    client = signed_in(app_env, "viewer")
    device_id = add_device(
        app_env, "linux-1", state="up", last_polled=time.time(),
        tables={"storage": [{"descr": "Physical memory", "type": "ram", "used_pct": 56.0, "size_bytes": 8 * 2**30},
                            {"descr": "/", "type": "fixed", "used_pct": 40.0, "size_bytes": 2**36}]},
        metrics={"snmp": [["mem_used_pct", "", 35.0], ["mem_total_bytes", "", 8.0 * 2**30]]},
    )  # fmt: skip
    html = client.get(f"/devices/{device_id}").text
    assert "Memory used <span class=\"sub\">(excl. cache/buffers)</span>" in html
    assert "Physical memory (incl. cache)" in html
    same = add_device(
        app_env, "windows-1", state="up", last_polled=time.time(),
        tables={"storage": [{"descr": "Physical Memory", "type": "ram", "used_pct": 35.0, "size_bytes": 8 * 2**30}]},
        metrics={"snmp": [["mem_used_pct", "", 35.0]]},
    )  # fmt: skip
    html = client.get(f"/devices/{same}").text
    assert "excl. cache" not in html and "incl. cache" not in html  # one figure, nothing to tell apart
