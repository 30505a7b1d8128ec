"""Phone app pages on a real app (no browser): overview, device page and graphs, settings hub, inventory, rules, PWA files."""

from __future__ import annotations

import gzip
import json
import re
import struct
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.config.loader import load_config
from server.config.settings import Settings
from server.store.devices import load_device
from tests import sql
from tests.server.app_fleet import add_history, build_fleet
from tests.server.conftest import AppEnv, form_csrf, make_app_env, sign_in

NAMES = re.compile(r'<strong class="name">([^<]+)</strong>')
TILE = re.compile(r"<b>(\d+)</b><span>([a-z ]+)</span>")


def tiles(html: str) -> dict[str, int]:
    """The overview's counts at a glance: label -> number."""
    return {label.strip(): int(n) for n, label in TILE.findall(html)}


def signed_in(env: AppEnv, role: str) -> TestClient:
    env.user(role, role)
    sign_in(env.client, role)
    return env.client


def test_the_overview_shows_counts_then_alerts_then_one_page_of_devices_problems_first(app_env: AppEnv) -> None:
    fleet = build_fleet(app_env.svc.engine, app_env.svc.box, devices=120, alerts=8)
    client = signed_in(app_env, "operator")
    html = client.get("/").text
    assert tiles(html) == {
        "down": 3, "unreachable": 2, "degraded": 1, "up": 114, "critical": 5, "warning": 1, "info": 2, "all open": 8,
    }  # fmt: skip
    assert "of 120, problems first" in html
    assert html.index('data-region="summary"') < html.index('data-region="alerts"') < html.index('data-region="devices"')
    names = NAMES.findall(html)
    assert len(names) == 30
    states = re.findall(r'<li class="row s-(\w+)" id="dev-\d+">', html)
    assert states[:6] == ["down", "down", "down", "unreachable", "unreachable", "degraded"] and set(states[6:]) == {"up"}
    assert html.count('class="arow ') == 8
    assert html.count('action="/alerts/') == 16, "one-tap Ack and Snooze on every open alert"
    assert 'rel="next" href="/?page=2"' in html and "page 1 of 4" in html
    last = client.get("/", params={"page": 4}).text
    assert len(NAMES.findall(last)) == 30 and "91–120 of 120" in last
    assert client.get("/", params={"page": 99}).status_code == 200, "a page past the end shows the last one"
    assert fleet.down[0] == int(re.findall(r'id="dev-(\d+)"', html)[0])


def test_search_tag_and_state_filters_reach_every_device(app_env: AppEnv) -> None:
    build_fleet(app_env.svc.engine, app_env.svc.box, devices=120, alerts=2)
    client = signed_in(app_env, "viewer")
    assert NAMES.findall(client.get("/", params={"q": "printer-0119"}).text) == ["printer-0119"]
    assert NAMES.findall(client.get("/", params={"q": "PRINTER-0119.EXAMPLE"}).text) == ["printer-0119"], "sysName, any case"
    site = client.get("/", params={"tag": "site-3", "q": "ups"}).text
    assert NAMES.findall(site) == [n for n in NAMES.findall(site) if n.startswith("ups-")] and NAMES.findall(site)
    down = client.get("/", params={"state": "down"}).text
    assert set(re.findall(r'<li class="row s-(\w+)"', down)) == {"down"} and 'aria-current="true"' in down
    assert 'data-region="alerts"' not in down, "a filtered list is only the list"
    paged = client.get("/", params={"tag": "switch", "page": 1}).text
    assert "page 1 of 1" not in paged and len(NAMES.findall(paged)) == 24, "24 switches fit on one page"



def test_a_too_long_search_is_cut_and_said_so_not_an_error_page(app_env: AppEnv) -> None:
    build_fleet(app_env.svc.engine, app_env.svc.box, devices=20, alerts=0)
    client = signed_in(app_env, "admin")
    needle = "printer-0019" + " " * 188  # 200 characters: stripped, still found
    assert NAMES.findall(client.get("/", params={"q": needle}).text) == ["printer-0019"]
    assert "limited to 200 characters" not in client.get("/", params={"q": needle}).text
    long = client.get("/", params={"q": "x" * 201})
    assert long.status_code == 200 and "Search text is limited to 200 characters" in long.text
    assert f'value="{"x" * 200}"' in long.text and "x" * 201 not in long.text
    assert "String should have" not in long.text
    assert client.get("/admin/devices", params={"q": "y" * 5000}).status_code == 200


def test_pages_are_compressed_and_assets_are_versioned_and_immutable(app_env: AppEnv) -> None:
    build_fleet(app_env.svc.engine, app_env.svc.box, devices=200, alerts=10)
    client = signed_in(app_env, "viewer")
    response = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["cache-control"] == "no-store"
    assert "server-timing" in response.headers
    raw = client.get("/", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    for name in ("app.css", "app.js"):
        url = re.search(rf'"(/static/{name}\?v=[0-9a-f]{{10}})"', response.text)
        assert url, name
        asset = client.get(url.group(1), headers={"Accept-Encoding": "gzip"})
        assert asset.status_code == 200
        assert "immutable" in asset.headers["cache-control"]
        assert asset.headers["content-encoding"] == "gzip"


def test_the_manifest_icons_and_service_worker_make_an_installable_app(app_env: AppEnv) -> None:
    manifest = app_env.client.get("/manifest.webmanifest")
    assert manifest.status_code == 200
    assert manifest.headers["content-type"].startswith("application/manifest+json")
    data = json.loads(manifest.text)
    assert data["start_url"] == "/" and data["display"] == "standalone" and data["scope"] == "/"
    sizes = set()
    for icon in data["icons"]:
        got = app_env.client.get(icon["src"])
        assert got.status_code == 200, icon
        if icon["type"] == "image/png":
            width, height = struct.unpack(">II", got.content[16:24])
            assert f"{width}x{height}" == icon["sizes"]
            sizes.add(icon["sizes"])
    assert {"192x192", "512x512"} <= sizes
    worker = app_env.client.get("/sw.js")
    assert worker.status_code == 200 and "sw-offline.js" in worker.text
    offline = app_env.client.get("/static/sw-offline.js").text
    assert 'addEventListener("fetch"' in offline
    page = app_env.client.get("/offline")
    assert page.status_code == 200 and "You are offline" in page.text


def test_the_device_page_has_alerts_graphs_interfaces_and_checks(app_env: AppEnv) -> None:
    fleet = build_fleet(app_env.svc.engine, app_env.svc.box, devices=5, alerts=0)
    client = signed_in(app_env, "operator")
    device = fleet.graphed
    html = client.get(f"/devices/{device}").text
    assert f'data-device="{device}"' in html
    graphs = re.findall(r'<svg class="spark" [^>]*data-t0="(\d+)" data-t1="(\d+)"', html)
    assert len(graphs) == 3, "CPU, memory and the ping check's round trip"
    since, until = map(int, graphs[0])
    assert 86000 < until - since < 86800, "24 hours by default"
    assert 'aria-current="true">24h<' in html
    assert "CPU %" in html and "min " in html and "max " in html
    assert "Gi1/0/1" in html and "↓ " in html and "Interfaces" in html
    assert "Recent changes" in html and "down → <strong>up</strong>" in html
    assert re.search(r"<strong>ping</strong> <span class=\"badge ok\">ok</span>", html), "checks with their outcome"
    port2 = re.search(r"<strong>Gi1/0/2</strong>.*?<span class=\"rates\">(.*?)</span>\n", html, re.S)
    assert port2 and "↓ 1.2 Mb/s" in port2.group(1) and "errors 0.50/s" in port2.group(1), "interfaces with rates and errors"
    assert "Cisco IOS Software, C2960X" in html and "Rack 4, room 2.17" in html and "41d 5h" in html, "facts"
    assert '<section class="card actions" id="actions">' in html, "the actions panel (its contents: test_actions_pages)"
    for rng in ("7d", "30d"):  # a day of history: drawn over that day, and the axis says it is all there is
        page = client.get(f"/devices/{device}", params={"range": rng}).text
        assert page.count('<svg class="spark"') == 3, f"{rng}: read from the rollups"
        assert len(re.findall(r"<span>−(1d|23h)</span><span>\1 of history · min ", page)) == 3, rng
        t0, t1 = map(int, re.findall(r'data-t0="(\d+)" data-t1="(\d+)"', page)[0])
        assert 82000 < t1 - t0 < 90000 and abs(t1 - time.time()) < 300
    hour = client.get(f"/devices/{device}", params={"range": "1h"}).text
    assert hour.count("<polyline") >= 3
    assert client.get(f"/devices/{device}", params={"range": "2y"}).status_code == 400
    iface = client.get(f"/devices/{device}/interfaces/1").text
    assert "Interface Gi1/0/1" in iface and "Traffic in" in iface and "Traffic out" in iface and "Errors in" in iface
    index = client.get(f"/devices/{device}/metrics").text
    assert "if_in_bps" in index and "2 series" in index
    graph = client.get(f"/devices/{device}/graph", params={"metric": "if_in_bps", "range": "30d"}).text
    assert graph.count('<svg class="spark"') == 1 and "No history in this range yet." in graph, "only one port has history"
    for path in ("/devices/99999", "/devices/99999/metrics", "/devices/99999/interfaces/1", "/devices/99999/graph?metric=x"):
        assert client.get(path).status_code == 404, path
    assert client.get(f"/devices/{device}/graph", params={"metric": "<script>"}).status_code == 400


def test_the_device_page_lists_its_open_alerts_with_one_tap_actions(app_env: AppEnv) -> None:
    fleet = build_fleet(app_env.svc.engine, app_env.svc.box, devices=60, alerts=3)
    client = signed_in(app_env, "operator")
    html = client.get(f"/devices/{fleet.down[0]}").text
    assert "Open alerts (1)" in html
    csrf = form_csrf(html)
    alert_id = int(re.findall(r'action="/alerts/(\d+)/ack"', html)[0])
    back = f"/devices/{fleet.down[0]}"
    response = client.post(f"/alerts/{alert_id}/ack", data={"csrf_token": csrf, "back": back})
    # Back to the same page, at the alert's row, saying what was done (with Undo).
    assert response.status_code == 303 and response.headers["location"] == f"{back}?done=ack&alert={alert_id}#alert-{alert_id}"
    after = client.get(response.headers["location"]).text
    assert f'action="/alerts/{alert_id}/ack"' not in after and "ack operator" in after
    assert f'action="/alerts/{alert_id}/undo"' in after and "Acknowledged: " in after


def test_a_crafted_link_does_not_say_an_alert_was_handled(app_env: AppEnv) -> None:
    fleet = build_fleet(app_env.svc.engine, app_env.svc.box, devices=10, alerts=3)
    client = signed_in(app_env, "operator")
    html = client.get(f"/devices/{fleet.down[0]}").text
    alert_id = int(re.findall(r'action="/alerts/(\d+)/ack"', html)[0])
    for path in ("/", f"/alerts/{alert_id}", f"/devices/{fleet.down[0]}"):
        for action, words in (("ack", "Acknowledged: "), ("snooze", "Snoozed: ")):
            page = client.get(f"{path}?done={action}&alert={alert_id}").text  # firing, neither acked nor snoozed
            assert words not in page and f'action="/alerts/{alert_id}/undo"' not in page, (path, action)
    client.post(f"/alerts/{alert_id}/ack", data={"csrf_token": form_csrf(html), "back": "/"})
    assert "Acknowledged: " in client.get(f"/?done=ack&alert={alert_id}").text  # and once it is, it says so


def test_the_alert_page_shows_a_value_only_for_thresholds_in_its_unit_with_coloured_badges(app_env: AppEnv) -> None:
    fleet = build_fleet(app_env.svc.engine, app_env.svc.box, devices=10, alerts=4)
    memory, battery, port, gone = fleet.alerts
    with app_env.svc.engine.begin() as conn:
        for alert_id, rule, value in ((memory, "memory-high", 96.42), (battery, "ups-on-battery", 1.0),
                                      (port, "interface-down", 0.0), (gone, "no-such-rule", 7.0)):
            sql.update(conn, "alerts", "id = :id", {"rule": rule, "last_value": value}, id=alert_id)
    client = signed_in(app_env, "viewer")
    html = client.get(f"/alerts/{memory}").text
    assert "<dt>Memory %</dt>" in html
    assert "96.4 % <span class=\"sub\">(alerts above 95 %)</span>" in html
    for alert_id in (battery, port, gone):
        page = client.get(f"/alerts/{alert_id}").text
        assert "data-value" not in page and "<dt>Value</dt>" not in page, "a yes/no condition has no value worth showing"
    assert re.search(r'class="badge sevb sevb-(critical|warning|info)"', html)
    assert re.search(r'class="badge stb stb-firing"', html)


def test_silence_and_alert_list_errors_are_worded_for_people(app_env: AppEnv) -> None:
    client = signed_in(app_env, "operator")
    page = client.get("/silences")
    form = {"scope": "tag", "target": "site a", "comment": "works", "hours": "2", "csrf_token": form_csrf(page.text)}
    refused = client.post("/silences", data=form)
    assert refused.status_code in (400, 422) and "a tag is 1–32 letters, digits, dot, dash, underscore or colon" in refused.text
    assert "should match pattern" not in refused.text
    bogus = client.get("/alerts", params={"severity": "urgent"})
    assert bogus.status_code == 400 and "&#39;critical&#39;" in bogus.text and "^(" not in bogus.text


def test_graphs_downsample_long_histories_and_stay_small(app_env: AppEnv) -> None:
    fleet = build_fleet(app_env.svc.engine, app_env.svc.box, devices=1, alerts=0)
    add_history(app_env.svc.engine, fleet.graphed, time.time(), hours=24, step=10)  # 8,640 points per series
    client = signed_in(app_env, "viewer")
    html = client.get(f"/devices/{fleet.graphed}").text
    points = re.findall(r'<polyline points="([^"]+)"', html)
    assert points and all(len(p.split()) <= 302 for p in points)
    assert len(gzip.compress(html.encode())) < 20_000


def test_a_graph_of_a_new_device_says_since_when_it_has_history(app_env: AppEnv) -> None:
    fleet = build_fleet(app_env.svc.engine, app_env.svc.box, devices=2, alerts=0)
    newcomer = fleet.graphed + 1
    add_history(app_env.svc.engine, newcomer, time.time(), hours=2, step=60)
    client = signed_in(app_env, "viewer")
    day = client.get(f"/devices/{newcomer}").text
    assert day.count('<svg class="spark"') == 3
    assert len(re.findall(r"<span>−(1h|2h|11\dm)</span><span>\1 of history · min ", day)) == 3, "the axis says so"
    t0, t1 = map(int, re.findall(r'data-t0="(\d+)" data-t1="(\d+)"', day)[0])
    assert 2 * 3600 - 200 < t1 - t0 < 2 * 3600 + 200, "drawn over the two hours there are, not squeezed into a corner"
    assert " of history" not in client.get(f"/devices/{newcomer}", params={"range": "1h"}).text
    assert " of history" not in client.get(f"/devices/{fleet.graphed}").text, "a full day of history needs no note"


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
def test_the_settings_hub_reaches_the_pages_a_role_may_open(app_env: AppEnv, role: str) -> None:
    client = signed_in(app_env, role)
    html = client.get("/settings").text
    links = set(re.findall(r'<a href="(/[^"]+)"><span class="ifn">', html))
    assert {"/account", "/account/password", "/account/totp", "/account/passkeys", "/admin/rules", "/silences"} <= links
    admin_only = {"/admin/devices", "/admin/users", "/admin/audit"}
    assert (admin_only <= links) is (role == "admin")
    assert not (admin_only & links) or role == "admin"
    for link in links:
        assert client.get(link).status_code in (200, 303), link
    assert 'href="/settings"' in client.get("/").text, "the menu reaches the hub"


def test_the_inventory_pages_add_edit_and_delete_through_the_api_logic(app_env: AppEnv) -> None:
    client = signed_in(app_env, "admin")
    page = client.get("/admin/devices")
    assert page.status_code == 200 and "Add a device" in page.text
    csrf = form_csrf(page.text)
    form = {
        "csrf_token": csrf, "name": "edge-9", "address": "192.0.2.9", "tags": "edge, site-a", "interval": "120",
        "enabled": "1", "snmp_version": "2c", "snmp_port": "161", "snmp_community": "s3cret-Community", "ping": "1",
        "tcp_ports": "22, 443", "http_urls": "https://192.0.2.9/health",
    }  # fmt: skip
    created = client.post("/admin/devices", data=form)
    assert created.status_code == 303
    # After adding, the admin lands on the new device's status page (not its edit form), told it was added.
    landing = created.headers["location"]
    assert re.fullmatch(r"/devices/\d+\?done=created", landing), landing
    device_id = int(landing.split("?")[0].rsplit("/", 1)[1])
    status = client.get(landing).text
    assert 'role="status">Device added' in status and f'href="/admin/devices/{device_id}"' in status
    edit_url = f"/admin/devices/{device_id}"
    with app_env.svc.reader.connect() as conn:
        row = load_device(conn, app_env.svc.box, device_id)
        actions = sql.scalars(conn, "SELECT action FROM audit")
    assert row is not None and row.spec.snmp and row.spec.snmp.community == "s3cret-Community"
    assert [c.check_name for c in row.spec.checks] == ["ping", "tcp-22", "tcp-443", "http"]
    assert row.spec.tags == ["edge", "site-a"] and row.interval == 120
    assert "device.create" in actions
    edit = client.get(edit_url).text
    assert "s3cret-Community" not in edit and "stored; empty keeps it" in edit
    changed = {**form, "tags": "edge", "snmp_community": "", "tcp_ports": "22"}
    assert client.post(edit_url, data=changed).status_code == 303
    with app_env.svc.reader.connect() as conn:
        row = load_device(conn, app_env.svc.box, device_id)
    assert row is not None and row.spec.snmp and row.spec.snmp.community == "s3cret-Community", "an empty secret is kept"
    assert row.spec.tags == ["edge"] and [c.check_name for c in row.spec.checks] == ["ping", "tcp-22", "http"]
    v3 = {**changed, "snmp_version": "3", "snmp_user": "mon", "snmp_auth_protocol": "sha", "snmp_auth_key": "authkey-123"}
    assert client.post(edit_url, data=v3).status_code == 303
    with app_env.svc.reader.connect() as conn:
        row = load_device(conn, app_env.svc.box, device_id)
    assert row is not None and row.spec.snmp and row.spec.snmp.version == "3" and row.spec.snmp.community is None
    bad = client.post(edit_url, data={**v3, "address": "http://not a host"})
    assert bad.status_code == 422 and "neither an IP address nor a valid DNS name" in bad.text
    refused = client.post("/admin/devices", data={**form, "address": "192.0.2.10"})
    assert refused.status_code == 409 and "already" in refused.text.lower()
    assert "s3cret-Community" not in refused.text, "secrets are not echoed back"
    unconfirmed = client.post(f"{edit_url}/delete", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 400
    deleted = client.post(f"{edit_url}/delete", data={"csrf_token": csrf, "confirm": "yes"})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/admin/devices?done=deleted"
    with app_env.svc.reader.connect() as conn:
        assert not sql.rows(conn, "SELECT id FROM devices WHERE id = :id", id=device_id)
        assert "device.delete" in sql.scalars(conn, "SELECT action FROM audit")


def test_the_add_form_defaults_to_a_ping_only_device_and_words_its_errors(app_env: AppEnv) -> None:
    client = signed_in(app_env, "admin")
    page = client.get("/admin/devices").text
    assert '<option value="none" selected>no SNMP</option>' in page, "a bare device is pinged, as the API and README say"
    assert "gets a ping check" in page
    csrf = form_csrf(page)
    # What the browser sends for a name and an address only, with every other field at its default
    bare = {"csrf_token": csrf, "name": "nas-1", "address": "192.0.2.44", "enabled": "1", "snmp_version": "none",
            "snmp_port": "161", "ssh_port": "22"}  # fmt: skip
    created = client.post("/admin/devices", data=bare)
    assert created.status_code == 303, created.text
    with app_env.svc.reader.connect() as conn:
        row = load_device(conn, app_env.svc.box, int(created.headers["location"].split("?")[0].rsplit("/", 1)[1]))
    assert row is not None and row.spec.snmp is None and row.spec.ssh is None
    no_community = client.post("/admin/devices", data={**bare, "name": "nas-2", "snmp_version": "2c"})
    assert no_community.status_code == 422
    assert "SNMP v2c needs a community: fill in Community, or choose “no SNMP”" in no_community.text
    bad = client.post("/admin/devices", data={**bare, "name": "_nas", "tags": "ok, not/ok"})
    assert bad.status_code == 422
    assert "name: a name is 1–64 letters, digits, dot, dash or underscore, starting with a letter or digit" in bad.text
    assert "tags.1: a tag is 1–32 letters" in bad.text
    assert "should match pattern" not in bad.text and "[A-Za-z0-9]" not in bad.text.split("<form")[0]
    edit_url = "/admin" + created.headers["location"].split("?")[0]
    edited = client.post(edit_url, data={**bare, "snmp_version": "3"})
    assert edited.status_code == 422 and "SNMP v3 needs a user: fill in User (v3)" in edited.text


def test_config_managed_devices_are_read_only_and_only_admins_manage_the_inventory(tmp_path: Path) -> None:
    conf = tmp_path / "pocketnoc.yaml"
    conf.write_text("devices:\n  - name: core-1\n    address: 192.0.2.1\n    snmp: {version: 2c, community: public}\n")
    from server.web.app import create_app

    app = create_app(Settings(data_dir=tmp_path / "data"), load_config(conf), poll=False)
    with TestClient(app, follow_redirects=False) as client:
        env = AppEnv(app, client, app.state.services)
        signed_in(env, "admin")
        with env.svc.reader.connect() as conn:
            device_id = int(sql.one(conn, "SELECT id FROM devices").id)
        page = client.get(f"/admin/devices/{device_id}").text
        assert "comes from the configuration file" in page and f'action="/admin/devices/{device_id}"' not in page
        csrf = form_csrf(page)
        refused = client.post(f"/admin/devices/{device_id}", data={"csrf_token": csrf, "name": "core-1", "address": "192.0.2.2"})
        assert refused.status_code == 409 and "config file" in refused.text
    for env in make_app_env(Settings(data_dir=tmp_path / "other")):
        client = signed_in(env, "operator")
        assert client.get("/admin/devices").status_code == 403
        assert client.post("/admin/devices", data={"csrf_token": form_csrf(client.get("/").text)}).status_code == 403


def test_the_rules_page_lists_the_rules_in_force(app_env: AppEnv) -> None:
    client = signed_in(app_env, "viewer")
    html = client.get("/admin/rules").text
    names = re.findall(r"</span></span> <strong>([^<]+)</strong>", html)
    severities = re.findall(r'<li class="card rule sev-(\w+)', html)
    assert {"device-down", "interface-down", "cpu-high"} <= set(names)
    assert severities == sorted(severities, key=["critical", "warning", "info"].index), "the most severe first"
    assert "state in (down, unreachable)" in html and "Built-in defaults" in html
    assert "cpu_load_pct &gt; 90" in html and "for 5m" in html
    assert "once <code>if_oper_up == 1</code> has held" in html  # interface-down watches ports seen up
