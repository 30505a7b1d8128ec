"""The JSON API on a real app and database: history, open routes, and odd queries, bodies and stored text answered
in JSON."""

from __future__ import annotations

import time
from typing import Any

import pytest

from server.store.metrics import SeriesCache, labels_key, write_samples
from tests import sql
from tests.server.api_helpers import Api
from tests.server.conftest import AppEnv

# ---------------------------------------------------------------- history


def test_history_returns_points_per_label_set(api: Api) -> None:
    device_id = api("POST", "/api/v1/devices", json={"name": "sw1", "address": "192.0.2.1"}).json()["id"]
    now = int(time.time())
    if1, if2 = labels_key({"ifIndex": "1", "ifName": "eth0"}), labels_key({"ifIndex": "2", "ifName": "eth1"})
    rows = [(device_id, "if_in_bps", lbl, now - s, float(s)) for s in (300, 200, 100) for lbl in (if1, if2)]
    rows.append((device_id, "if_in_bps", if1, now - 3 * 3600, 1.0))  # outside the 1h range
    with api.env.svc.engine.begin() as conn:
        write_samples(conn, SeriesCache(), rows)
    body = api("GET", f"/api/v1/devices/{device_id}/history", params={"metric": "if_in_bps", "range": "1h"}).json()
    assert body["metric"] == "if_in_bps" and body["range"] == "1h"
    by_if = {item["labels"]["ifIndex"]: item["points"] for item in body["items"]}
    assert by_if == {
        "1": [[now - 300, 300.0], [now - 200, 200.0], [now - 100, 100.0]],
        "2": [[now - 300, 300.0], [now - 200, 200.0], [now - 100, 100.0]],
    }
    one = api("GET", f"/api/v1/devices/{device_id}/history", params={"metric": "if_in_bps", "range": "6h", "ifIndex": "1"})
    assert [item["labels"] for item in one.json()["items"]] == [{"ifIndex": "1", "ifName": "eth0"}]
    assert len(one.json()["items"][0]["points"]) == 4
    default = api("GET", f"/api/v1/devices/{device_id}/history", params={"metric": "nothing"}).json()
    assert default == {"metric": "nothing", "range": "24h", "items": []}


@pytest.mark.parametrize(
    ("params", "status"),
    [({"metric": "m", "range": "2h"}, 422), ({}, 422), ({"metric": "x" * 65}, 422), ({"metric": "m", "ifIndex": "1" * 17}, 422)],
)
def test_history_validates_its_query(api: Api, params: dict[str, str], status: int) -> None:
    device_id = api("POST", "/api/v1/devices", json={"name": "sw1", "address": "192.0.2.1"}).json()["id"]
    assert api("GET", f"/api/v1/devices/{device_id}/history", params=params).status_code == status


def test_history_of_an_unknown_device(api: Api) -> None:
    assert api("GET", "/api/v1/devices/424242/history", params={"metric": "m"}).status_code == 404


# ---------------------------------------------------------------- open routes


def test_healthz_needs_no_sign_in(app_env: AppEnv) -> None:
    response = app_env.client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("status", "database", "polling")} == {"status": "ok", "database": "ok", "polling": False}
    assert body["storage"]["state"] == "ok" and body["storage"]["free_bytes"] > 0 and body["notify"]["outbox_backlog"] == 0


def test_openapi_is_served_and_lists_the_api(app_env: AppEnv) -> None:
    response = app_env.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["info"]["title"] == "pocketnoc"
    for path in ("/api/v1/devices", "/api/v1/devices/{device_id}", "/api/v1/devices/{device_id}/history", "/healthz", "/metrics"):
        assert path in schema["paths"], path
    assert "/login" not in schema["paths"] and "/" not in schema["paths"], "HTML pages stay out of the API schema"


def test_security_headers_on_api_responses(app_env: AppEnv) -> None:
    response = app_env.client.get("/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in response.headers["content-security-policy"]


def test_errors_inside_the_api_are_json(api: Api) -> None:
    response = api("GET", "/api/v1/no-such-route")
    assert response.status_code == 404 and response.headers["content-type"].startswith("application/json")


def test_unknown_query_values_do_not_crash_listing(api: Api) -> None:
    api("POST", "/api/v1/devices", json={"name": "sw1", "address": "192.0.2.1"})
    for params in ({"q": "<script>"}, {"tag": "\u202e"}, {"q": "%00"}):
        response = api("GET", "/api/v1/devices", params=params)
        assert response.status_code == 200 and response.json()["items"] == []


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [
        ("/api/v1/devices", {"state": "bogus"}, ["query", "state"]),
        ("/api/v1/alerts", {"state": "bogus"}, ["query", "state"]),
        ("/api/v1/alerts", {"severity": "urgent"}, ["query", "severity"]),
        ("/api/v1/notify/messages", {"status": "bogus"}, ["query", "status"]),
    ],
)
def test_enum_query_values_are_validated_not_silently_empty(
    api: Api, path: str, params: dict[str, str], loc: list[str]
) -> None:
    response = api("GET", path, params=params)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == loc and error["type"] == "literal_error" and "Input should be" in error["msg"]
    assert "^(" not in error["msg"], "the allowed values, not a regex"
    assert api("GET", "/api/v1/devices", params={"state": "down"}).status_code == 200


def test_a_body_sent_without_the_json_content_type_gets_415_saying_what_to_send(api: Api) -> None:
    body = b'{"name": "sw1", "address": "192.0.2.1"}'
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
        response = api("POST", "/api/v1/devices", content=body, headers=headers)
        assert response.status_code == 415, (headers, response.text)
        assert response.json()["detail"] == "send JSON with Content-Type: application/json"
    assert api("POST", "/api/v1/rules", content=b'{"name": "r1", "expr": "cpu_pct > 1"}').status_code == 415
    sent = api("POST", "/api/v1/devices", content=body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert sent.status_code == 201
    bad = api("POST", "/api/v1/devices", content=b"[1]", headers={"Content-Type": "application/json"})
    assert bad.status_code == 422, "JSON of the wrong shape stays a 422"


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"name": "-core", "address": "192.0.2.1"}, ["body", "name"], "a name is 1–64 letters, digits, dot, dash or underscore"),
        ({"name": "sw1", "address": "192.0.2.1", "tags": ["ok", "bad tag"]}, ["body", "tags", "1"], "a tag is 1–32"),
        ({"name": "sw1", "address": "192.0.2.1", "parent": "a/b"}, ["body", "parent"], "a name is 1–64"),
        ({"name": "sw1", "address": "192.0.2.1", "kind": "Switch"}, ["body", "kind"], "a kind is 1–32 lowercase"),
    ],
)
def test_pattern_errors_are_worded_for_people_with_a_structured_loc(
    api: Api, body: dict[str, Any], loc: list[str], words: str
) -> None:
    response = api("POST", "/api/v1/devices", json=body)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == loc and words in error["msg"] and error["type"] == "string_pattern_mismatch"
    assert "should match pattern" not in response.text and "[A-Za-z" not in response.text
    device_id = api("POST", "/api/v1/devices", json={"name": "sw9", "address": "192.0.2.9"}).json()["id"]
    patched = api("PATCH", f"/api/v1/devices/{device_id}", json={"name": "bad name"})
    assert patched.status_code == 422 and patched.json()["detail"][0]["loc"] == ["name"]
    assert patched.json()["detail"][0]["msg"].startswith("a name is 1–64")
    silence = api("POST", "/api/v1/silences", json={"tag": "no spaces", "duration_minutes": 10, "comment": "x"})
    assert silence.status_code == 422 and "a tag is 1–32" in silence.text and "[A-Za-z" not in silence.text


def test_stored_bad_text_never_breaks_json_answers(api: Api) -> None:
    device_id = api("POST", "/api/v1/devices", json={"name": "sw1", "address": "192.0.2.1"}).json()["id"]
    facts = {"sys_descr": "a\ud800b", "sys_name": "n\udfff", "load": float("nan")}
    # sql.update encodes JSON as the store does (NaN becomes null; lone surrogates are kept as escapes)
    sql.update(api.env.svc.engine, "device_status", "device_id = :d", {"facts": facts, "state": "down"}, d=device_id)
    detail = api("GET", f"/api/v1/devices/{device_id}")
    assert detail.status_code == 200
    assert detail.json()["facts"] == {"sys_descr": "a?b", "sys_name": "n?", "load": None}
    listed = api("GET", "/api/v1/devices")
    assert listed.status_code == 200 and listed.json()["items"][0]["sys_name"] == "n?"
