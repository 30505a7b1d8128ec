"""Real SNMP peers for the agents tests: one snmpd and one snmpsim serving several simulated devices."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peers.snmpd import SnmpdPeer, start_snmpd
from tests.peers.snmpsim import (
    SnmpsimPeer,
    copy_recorded,
    printer_records,
    start_snmpsim,
    switch_records,
    ups_records,
    write_snmprec,
)


@pytest.fixture(scope="session")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpdPeer]:
    """A net-snmp snmpd on 127.0.0.1 with communities public/private and v3 users (see DEFAULT_USERS)."""
    peer = start_snmpd(tmp_path_factory.mktemp("snmpd"))
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def snmpsim_devices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpsimPeer]:
    """snmpsim serving communities linux-full-walk, winxp-full-walk, switch48, ups, ups-onbattery, printer."""
    root = tmp_path_factory.mktemp("snmpsim")
    data = root / "data"
    copy_recorded(data, "linux-full-walk", "winxp-full-walk")
    write_snmprec(data / "switch48.snmprec", switch_records(48))
    write_snmprec(data / "ups.snmprec", ups_records())
    write_snmprec(data / "ups-onbattery.snmprec", ups_records(on_battery=True))
    write_snmprec(data / "printer.snmprec", printer_records())
    peer = start_snmpsim(data, workdir=root / "work")
    yield peer
    peer.stop()
