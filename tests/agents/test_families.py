"""Device families as data: the built-in files validate, bad files are refused by name and field, a dropped file works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agents.base import SnmpCredentials, Target
from agents.profiles import DeviceFacts
from agents.snmp import SnmpCollector
from agents.snmp_families import BUILTIN_DIR, FamilyError, family_kind, load_families, match_family, parse_family
from tests.peers.snmpsim import COUNTER32, INTEGER, OCTETS, SnmpsimPeer, start_snmpsim, system_records, write_snmprec

pytestmark = pytest.mark.timeout(120)

FAMILIES = load_families([])

# sysObjectID, sysDescr, answered probes -> family (public identifiers of each vendor's agents).
MATCHES = [
    ("1.3.6.1.4.1.9.1.2404", "Cisco Adaptive Security Appliance Version 9.12(2)", (), "cisco-asa"),
    ("1.3.6.1.4.1.9.1.634", "Cisco IOS Software, C3560 Software", (), "cisco-ios"),
    ("1.3.6.1.4.1.9.12.3.1.3.2193", "Cisco NX-OS(tm) Nexus9000", (), "cisco-ios"),
    ("1.3.6.1.4.1.9.6.1.95.10.3", "SG350-10 10-Port Gigabit Managed Switch", (), "cisco-sb"),
    ("1.3.6.1.4.1.8072.3.2.10", "UAP-nanoHD 5.43.36.12724", (), "ubiquiti-unifi"),
    ("1.3.6.1.4.1.8072.3.2.10", "Linux hostname 3.10.77 #8451 SMP x86_64", ("1.3.6.1.4.1.6574.1",), "synology-dsm"),
    ("1.3.6.1.4.1.8072.3.2.10", "Linux raspberrypi 5.4.51-v7+", (), None),  # plain Linux: the built-in rules
    ("1.3.6.1.4.1.8072.3.2.8", "FreeBSD fw 12.1-RELEASE-p19-HBSD FreeBSD 12.1", (), "opnsense"),
    ("1.3.6.1.4.1.12325.1.1.2.1.1", "pfSense 2.3.2-RELEASE pfSense FreeBSD 10.3", (), "pfsense"),
    ("1.3.6.1.4.1.674.10892.5", "", (), "dell-idrac"),
    ("1.3.6.1.4.1.318.1.3.27", "APC Web/SNMP Management Card", (), "apc-ups"),
    ("1.3.6.1.4.1.6876.4.1", "VMware ESXi 7.0.0", (), "vmware-esxi"),
]


@pytest.mark.parametrize(("object_id", "descr", "probes", "family"), MATCHES)
def test_families_recognise_devices(object_id: str, descr: str, probes: tuple[str, ...], family: str | None) -> None:
    found = match_family(FAMILIES, object_id, descr, frozenset(probes))
    assert (found.name if found else None) == family


def test_every_builtin_file_is_valid_and_named_after_its_family() -> None:
    files = sorted(BUILTIN_DIR.glob("*.yaml"))
    assert len(files) == len(FAMILIES) >= 25
    assert sorted(f.stem for f in files) == sorted(f.name for f in FAMILIES)


def test_a_network_family_lets_the_rules_pick_switch_or_router() -> None:
    ios = next(f for f in FAMILIES if f.name == "cisco-ios")
    assert family_kind(ios, DeviceFacts(bridge_ports=48)) == "switch"
    assert family_kind(ios, DeviceFacts(ip_forwarding=1)) == "router"
    assert family_kind(ios, DeviceFacts()) == "switch"  # never "generic" once the family is known
    assert family_kind(None, DeviceFacts()) == "generic"


GOOD = {"name": "acme-fw", "kind": "firewall", "match": {"object_id": "1.3.6.1.4.1.99999.7"}}


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"name": "Acme FW!"}, "name"),
        ({"kind": "toaster"}, "kind"),
        ({"match": {"object_id": "1.3.6.x"}}, "match[0].object_id"),
        ({"match": {"descr": "(unclosed"}}, "match[0].descr"),
        ({"match": {"sysdescr": "x"}}, "match[0]"),
        ({"cpu": {"load": {"scalar": "1.3.6.1.4.1.1.0", "column": "1.3.6.1.4.1.1"}}}, "cpu.load"),
        ({"cpu": {"load": {"scalar": "1.3.6.1.4.1.1.0", "pattern": "no group"}}}, "cpu.load.pattern"),
        ({"cpu": {"temperature": "1.3.6.1.4.1.1.0"}}, "cpu.temperature"),
        ({"battery": {"runtime": {"scalar": "1.3.6.1.4.1.1.0", "unit": "hours"}}}, "battery.runtime.unit"),
        ({"hardware": {"colour": "1.3.6.1.4.1.1"}}, "hardware"),
        ({"vendor": "acme"}, "top level"),
    ],
)
def test_a_bad_family_file_is_refused_by_file_and_field(tmp_path: Path, change: dict[str, object], where: str) -> None:
    path = tmp_path / "acme-fw.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    with pytest.raises(FamilyError) as caught:
        load_families([tmp_path])
    assert str(caught.value).startswith(f"{path}: {where}")
    assert parse_family(GOOD, "x").name == "acme-fw"


def test_a_missing_families_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FamilyError, match="families folder not found"):
        load_families([tmp_path / "nope"])


ACME = "1.3.6.1.4.1.99999.7"


@pytest.fixture(scope="module")
def acme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpsimPeer]:
    """A device nobody ships a family for: a firewall with its own CPU scalar and serial number."""
    root = tmp_path_factory.mktemp("acme")
    recs = system_records("Acme Firewall 3000", ACME, "acme1", services=72)
    recs += [("1.3.6.1.2.1.2.2.1.2.1", OCTETS, "wan"), ("1.3.6.1.2.1.2.2.1.8.1", INTEGER, 1)]
    recs += [("1.3.6.1.2.1.2.2.1.10.1", COUNTER32, 5), (ACME + ".1.0", OCTETS, "cpu: 37%"), (ACME + ".2.0", OCTETS, "AC-0042")]
    write_snmprec(root / "data" / "acme.snmprec", recs)
    peer = start_snmpsim(root / "data", workdir=root / "work")
    yield peer
    peer.stop()


async def test_a_dropped_family_file_teaches_a_new_device_without_code(acme: SnmpsimPeer, tmp_path: Path) -> None:
    target = Target(acme.address, acme.port, snmp=SnmpCredentials("2c", "acme"), timeout=2, retries=1)
    plain = SnmpCollector(families=FAMILIES)
    before = await plain.collect(target)
    await plain.close()
    assert before.facts["kind"] == "generic" and "hw_serial" not in before.facts
    (tmp_path / "acme-fw.yaml").write_text(
        yaml.safe_dump(
            {
                **GOOD,
                "cpu": {"load": {"scalar": ACME + ".1.0", "pattern": r"cpu: (\d+)%"}},
                "hardware": {"serial": ACME + ".2"},
            }
        )
    )
    taught = SnmpCollector(families=load_families([tmp_path]))
    for _ in range(2):
        after = await taught.collect(target)
        assert after.facts["kind"] == "firewall" and after.facts["family"] == "acme-fw"
        assert after.facts["hw_serial"] == "AC-0042"
        assert [s.value for s in after.samples if s.metric == "cpu_load_pct"] == [37.0]
        assert [r["name"] for r in after.tables["interfaces"]] == ["wan"]
    await taught.close()


def test_the_readme_example_family_is_valid() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("# /etc/pocketnoc/families/acme-fw.yaml\n", 1)[1].split("```", 1)[0]
    family = parse_family(yaml.safe_load(block), "README.md")
    assert family.name == "acme-fw" and family.kind == "firewall" and len(family.matches) == 3
    assert set(family.metrics) == {"cpu.load", "memory.used_pct"} and set(family.hardware) == {"model", "serial", "firmware"}
