"""Neighbour parsing: LLDP from real devices (the LibreNMS corpus, skipped when absent), CDP and the forwarding
table from the lab's authored recordings, and hostile names stored safe."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from agents.neighbours import BINARY, CDP, FDB, IF_NAME, LLDP, LLDP_LOCAL, parse_cdp, parse_fdb, parse_lldp, safe
from agents.snmp_values import Value, hexstr
from tests.peers.lab_network import HOSTILE, OUTSIDE, core_sw1, dist_sw1

# ../shared/corpus/librenms beside the checkout or any folder above it (a worktree), or POCKETNOC_CORPUS.
_PLACES = [Path(os.environ.get("POCKETNOC_CORPUS") or "/nonexistent")]
_PLACES += [p.parent / "shared" / "corpus" / "librenms" for p in Path(__file__).resolve().parents]
CORPUS = next((c for c in _PLACES if (c / "expected.json").is_file()), Path("/nonexistent"))
MAN = "1.0.8802.1.1.2.1.4.2.1"


def _value(tag: str, raw: str, binary: bool) -> Value:
    """A recorded value as the SNMP client hands it over (text, hex for binary columns, int)."""
    if tag in ("2", "65", "66", "67", "70"):
        return int(raw)
    data = bytes.fromhex(raw) if tag == "4x" else raw.encode("utf-8")
    if binary:
        return hexstr(data)
    return data.decode("utf-8", errors="replace")


def columns(records: Iterable[tuple[str, str, object]], wanted: Iterable[str]) -> dict[str, dict[str, Value]]:
    """Walked columns {column OID: {index: value}} out of (oid, tag, value) records."""
    out: dict[str, dict[str, Value]] = {c: {} for c in wanted}
    for oid, tag, raw in records:
        for col in out:
            if oid.startswith(col + "."):
                out[col][oid[len(col) + 1 :]] = _value(tag, str(raw), col in BINARY)
    return out


def recording(name: str) -> list[tuple[str, str, object]]:
    path = CORPUS / f"{name}.snmprec"
    if not path.exists():
        pytest.skip(f"{path} is absent (the LibreNMS corpus is measurement data, not part of the repo)")
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        oid, _, rest = line.partition("|")
        tag, _, value = rest.partition("|")
        rows.append((oid, tag, value))
    return rows


def lldp_of(records: list[tuple[str, str, object]]) -> list[dict[str, str]]:
    rem = columns(records, LLDP.values())
    man = columns(records, [MAN])[MAN]
    return [n.public() for n in parse_lldp(rem, man, columns(records, LLDP_LOCAL.values()), columns(records, IF_NAME.values()))]


def test_lldp_of_an_aruba_cx_switch() -> None:
    found = lldp_of(recording("arubaos-cx_10.10"))
    by_name = {n["remote_name"]: n for n in found}
    assert set(by_name) == {"XXap01", "XXam01", "XXgw01"}
    gateway = by_name["XXgw01"]
    assert gateway["remote_port"] == "GE0/0/1" and gateway["remote_address"] == "192.0.2.1"
    assert by_name["XXap01"]["remote_address"] == "192.168.100.102"
    assert gateway["local_port"] == "1/1/14"  # lldpLocPortId of local port 14
    assert by_name["XXap01"]["remote_port"] == "eth0"  # a MAC port id: the description names the port


def test_lldp_of_routeros_puts_the_address_in_a_column() -> None:
    found = lldp_of(recording("routeros_rb750gr3"))
    by_name = {n["remote_name"]: n for n in found}
    assert by_name["sw11.mzmol"]["remote_address"] == "169.254.9.11"
    assert by_name["r1.soada"]["remote_address"] == "fdfd:0:2:1::1"


@pytest.mark.parametrize("name", ["dell-os10", "dlink_dgs-1510-28", "edgeswitch_es-24-250w", "junos_qfx5100", "routeros_crs317"])
def test_every_lldp_recording_parses_to_named_neighbours(name: str) -> None:
    found = lldp_of(recording(name))
    assert found, name
    for n in found:
        assert n["local_port"] and (n["remote_name"] or n["remote_chassis"]), n
        assert all(len(v) <= 256 and "\x1b" not in v for v in n.values())


def test_cdp_and_lldp_of_the_lab_core_switch() -> None:
    records = core_sw1()
    names = columns(records, IF_NAME.values())
    lldp = lldp_of(records)
    assert [(n["local_port"], n["remote_name"], n["remote_address"]) for n in lldp] == [
        ("Gi1/0/1", "dist-sw1.lab.test", "127.0.77.2"),
        ("Gi1/0/2", "db1", "127.0.77.9"),
    ]
    cdp = [n.public() for n in parse_cdp(columns(records, CDP.values()), names)]
    assert cdp == [{
        "protocol": "cdp", "local_port": "Gi0/3", "remote_name": "ap1.lab.test", "remote_port": "eth0",
        "remote_address": "127.0.77.3", "remote_chassis": "", "remote_descr": "AIR-AP2802I",
    }]


def test_a_hostile_neighbour_name_is_stored_safe() -> None:
    found = {n["local_port"]: n for n in lldp_of(dist_sw1())}
    evil = found["ge-0/0/0"]
    assert "\x1b" not in evil["remote_name"] and "\x07" not in evil["remote_name"] and "\u202e" not in evil["remote_name"]
    assert evil["remote_name"].startswith("[31mEVIL") and len(evil["remote_name"]) == 128
    assert evil["remote_port"] == "port" and evil["remote_address"] == ""
    assert found["ge-0/0/1"]["remote_address"] == OUTSIDE
    assert safe(HOSTILE, 10) == "[31mEVILAA"


def test_the_forwarding_table_names_ports_by_interface() -> None:
    records = dist_sw1()
    fdb = parse_fdb(columns(records, FDB.values()), columns(records, ["1.3.6.1.2.1.17.1.4.1.2"])["1.3.6.1.2.1.17.1.4.1.2"],
                    columns(records, IF_NAME.values()))
    assert [(n.local_port, n.remote_chassis, n.protocol) for n in fdb] == [("Gi0/1", "02:00:00:00:a0:ff", "fdb")]


def test_bridge_fdb_of_real_switches_parses(tmp_path: Path) -> None:
    for name in ("procurve_2520", "tplink_sg2008", "dlink_dgs-1510-28"):
        records = recording(name)
        ports: Mapping[str, Value] = columns(records, ["1.3.6.1.2.1.17.1.4.1.2"])["1.3.6.1.2.1.17.1.4.1.2"]
        fdb = parse_fdb(columns(records, FDB.values()), ports, columns(records, IF_NAME.values()))
        assert fdb, name
        assert all(len(n.remote_chassis) == 17 for n in fdb)
