"""/metrics: token required, and the text is valid Prometheus exposition, parsed line by line."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.store.device_state import STATES
from server.store.devices import create_device
from server.store.metrics import labels_key
from tests import sql
from tests.server.conftest import AppEnv, bearer, make_app_env

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
LABEL = re.compile(r'(?P<name>[^=,{}"\s]+)="(?P<value>(?:[^"\\\n]|\\[\\"n])*)"')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


@dataclass
class Exposition:
    """A parsed /metrics text."""

    types: dict[str, str] = field(default_factory=dict)
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, tuple(sorted(labels.items())))]

    def of(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for (n, labels) in self.samples if n == name]


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def _labels(text: str, line: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = LABEL.match(text, pos)
        assert match, f"bad label set at {text[pos:pos + 40]!r} in {line!r}"
        name = match.group("name")
        assert LABEL_NAME.fullmatch(name) and not name.startswith("__"), f"bad label name {name!r}"
        pairs.append((name, _unescape(match.group("value"))))
        pos = match.end()
        if pos < len(text):
            assert text[pos] == ",", f"expected ',' at {text[pos:pos + 20]!r}"
            pos += 1
    names = [n for n, _ in pairs]
    assert len(names) == len(set(names)), f"repeated label name in {line!r}"
    return tuple(sorted(pairs))


def parse(text: str) -> Exposition:
    """Check the exposition format strictly: one TYPE per name before its samples, grouped, no duplicates."""
    assert text.endswith("\n")
    out = Exposition()
    seen_names: list[str] = []
    for line in text[:-1].split("\n"):
        assert line, "no empty lines"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            assert parts[0] == "#" and parts[1] in ("HELP", "TYPE"), line
            assert NAME.fullmatch(parts[2]), line
            if parts[1] == "TYPE":
                assert parts[3] in TYPES, line
                assert parts[2] not in out.types, f"second TYPE for {parts[2]}"
                assert parts[2] not in seen_names, f"TYPE after samples of {parts[2]}"
                out.types[parts[2]] = parts[3]
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name = match.group("name")
        if seen_names and seen_names[-1] != name:
            assert name not in seen_names, f"samples of {name} are not grouped together"
        if not seen_names or seen_names[-1] != name:
            seen_names.append(name)
        key = (name, _labels(match.group("labels") or "", line))
        assert key not in out.samples, f"duplicate series {key}"
        out.samples[key] = float(match.group("value"))  # Go's ParseFloat accepts what Python's float() does here
    return out


def add_device(env: AppEnv, name: str, state: str, metrics: dict[str, list[list[object]]]) -> int:
    with env.svc.engine.begin() as conn:
        device_id = create_device(conn, DeviceSpec(name=name, address="192.0.2.1"), env.svc.box, 60)
        # sql.update encodes JSON as the store does: a non-finite number becomes null
        sql.update(conn, "device_status", "device_id = :d", {"state": state, "metrics": metrics}, d=device_id)
    return device_id


def test_metrics_needs_a_token(app_env: AppEnv) -> None:
    response = app_env.client.get("/metrics")
    assert response.status_code == 401
    assert app_env.client.get("/metrics", headers=bearer("pnt_not-a-token")).status_code == 401


def test_an_empty_install_exposes_a_valid_text(app_env: AppEnv) -> None:
    response = app_env.client.get("/metrics", headers=bearer(app_env.token("prom", "viewer")))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    exposition = parse(response.text)
    assert exposition.types == {"pocketnoc_device_state": "gauge"}
    assert exposition.samples == {}


HOSTILE_IFNAME = 'ge-0/0/1 "uplink" \\ back\nslash é ✓'


def test_device_states_and_latest_metrics(app_env: AppEnv) -> None:
    if_hostile = labels_key({"ifIndex": "1", "ifName": HOSTILE_IFNAME})
    if_plain = labels_key({"ifIndex": "2", "ifName": "eth1"})
    add_device(
        app_env,
        "core-sw1",
        "up",
        {
            "snmp": [["if_in_bps", if_hostile, 1234.5], ["if_in_bps", if_plain, 0.0], ["cpu_load_pct", "", 7]],
            "ping": [["ping_rtt_ms", "", 0.25]],
        },
    )
    add_device(
        app_env,
        "web-01",
        "down",
        {"ssh": [["command_ok", labels_key({"check": "nginx-config"}), 1.0], ["fs_used_pct", labels_key({"mount": "/"}), 93.5]]},
    )
    add_device(app_env, "new-one", "unknown", {})
    text = app_env.client.get("/metrics", headers=bearer(app_env.token("prom", "viewer"))).text
    exposition = parse(text)

    for device, state in (("core-sw1", "up"), ("web-01", "down"), ("new-one", "unknown")):
        values = {s: exposition.value("pocketnoc_device_state", device=device, state=s) for s in STATES}
        assert values == {s: float(s == state) for s in STATES}

    assert exposition.value("pocketnoc_if_in_bps", device="core-sw1", check="snmp", ifIndex="1", ifName=HOSTILE_IFNAME) == 1234.5
    assert exposition.value("pocketnoc_if_in_bps", device="core-sw1", check="snmp", ifIndex="2", ifName="eth1") == 0.0
    assert exposition.value("pocketnoc_cpu_load_pct", device="core-sw1", check="snmp") == 7.0
    assert exposition.value("pocketnoc_ping_rtt_ms", device="core-sw1", check="ping") == 0.25
    assert exposition.value("pocketnoc_fs_used_pct", device="web-01", check="ssh", mount="/") == 93.5
    # a sample label that clashes with ours is kept as exported_<name> (the Prometheus convention)
    assert exposition.of("pocketnoc_command_ok") == [{"device": "web-01", "check": "ssh", "exported_check": "nginx-config"}]
    for name in ("pocketnoc_if_in_bps", "pocketnoc_cpu_load_pct", "pocketnoc_ping_rtt_ms", "pocketnoc_fs_used_pct"):
        assert exposition.types[name] == "gauge"


def test_stored_non_finite_values_stay_parseable(app_env: AppEnv) -> None:
    # Stored now, a non-finite number becomes JSON null (valid JSON, which PostgreSQL's json needs): no sample.
    add_device(app_env, "odd", "up", {"snmp": [["weird", "", math.inf], ["huge", "", 1e308], ["tiny", "", -5e-324]]})
    # Stored by an older release, as json.dumps wrote it: an Infinity token, still read and exported.
    legacy = add_device(app_env, "legacy", "up", {})
    sql.run(app_env.svc.engine, "UPDATE device_status SET metrics = :m WHERE device_id = :d",
            m='{"snmp": [["weird", "", Infinity], ["nan", "", NaN]]}', d=legacy)
    exposition = parse(app_env.client.get("/metrics", headers=bearer(app_env.token("prom", "viewer"))).text)
    assert exposition.value("pocketnoc_huge", device="odd", check="snmp") == 1e308
    assert exposition.value("pocketnoc_tiny", device="odd", check="snmp") == -5e-324
    assert {"device": "odd", "check": "snmp"} not in exposition.of("pocketnoc_weird")
    assert math.isinf(exposition.value("pocketnoc_weird", device="legacy", check="snmp"))
    assert math.isnan(exposition.value("pocketnoc_nan", device="legacy", check="snmp"))


@pytest.fixture
def polling_env(tmp_path: Path) -> Iterator[AppEnv]:
    yield from make_app_env(Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05), poll=True)


def test_the_pollers_own_figures(polling_env: AppEnv) -> None:
    exposition = parse(polling_env.client.get("/metrics", headers=bearer(polling_env.token("prom", "viewer"))).text)
    for result in ("ok", "failed", "skipped_overlap", "skipped_backoff"):
        assert exposition.value("pocketnoc_poller_checks_total", result=result) == 0
    assert exposition.types["pocketnoc_poller_checks_total"] == "counter"
    assert exposition.value("pocketnoc_poller_in_flight") == 0
    assert exposition.value("pocketnoc_writer_errors_total") == 0
    assert exposition.value("pocketnoc_poller_waited_for_writer_total") == 0
    assert exposition.types["pocketnoc_writer_backlog"] == "gauge"
    assert exposition.types["pocketnoc_writer_batches_total"] == "counter"
    assert exposition.value("pocketnoc_dispatch_queued") == 0  # due turns waiting for a worker
    assert exposition.value("pocketnoc_dispatch_missed_turns_total") == 0
    assert exposition.value("pocketnoc_writer_batch_seconds", quantile="0.99") >= 0
    # while the poller runs, the start-up heap is frozen: full collections no longer walk it
    assert exposition.value("pocketnoc_gc_frozen_objects") > 10_000
    assert exposition.types["pocketnoc_gc_collections_total"] == "counter"
    assert exposition.value("pocketnoc_gc_collections_total", generation="2") >= 0


def test_the_process_scope_leaves_the_devices_out(polling_env: AppEnv) -> None:
    add_device(polling_env, "core-sw1", "up", {"snmp": [["cpu_load_pct", "", 7.0]]})
    token = polling_env.token("prom", "viewer")
    whole = parse(polling_env.client.get("/metrics", headers=bearer(token)).text)
    response = polling_env.client.get("/metrics?scope=process", headers=bearer(token))
    assert response.status_code == 200
    own = parse(response.text)
    assert whole.value("pocketnoc_cpu_load_pct", device="core-sw1", check="snmp") == 7.0
    assert not any(name in ("pocketnoc_device_state", "pocketnoc_cpu_load_pct") for name, _ in own.samples)
    assert own.value("pocketnoc_poller_checks_total", result="ok") == whole.value("pocketnoc_poller_checks_total", result="ok")
    assert polling_env.client.get("/metrics?scope=everything", headers=bearer(token)).status_code == 422
