"""Host key pins: checked alone, and against a real sshd (or another in the middle) before anything is sent."""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from agents.base import CollectError
from agents.ssh import SshCollector
from agents.ssh_hostkeys import HostKeyMismatch, HostKeyUnknown, fingerprint, parse_pins, verify_host_key
from tests.agents.conftest import target, wait_for
from tests.peers.sshd import SshdPeer, start_sshd

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def other_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdPeer]:
    """A second server with its own host key: what an attacker in the middle would present."""
    peer = start_sshd(tmp_path_factory.mktemp("sshd-other"))
    yield peer
    peer.stop()


# --- host key pins ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def host_key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


def test_pins_accept_known_hosts_lines_and_fingerprints(host_key: paramiko.PKey) -> None:
    line = f"{host_key.get_name()} {host_key.get_base64()}"
    fp = fingerprint(host_key.asbytes())
    assert fp == host_key.fingerprint  # paramiko's own SHA256 form
    verify_host_key(host_key, [line])
    verify_host_key(host_key, [f"[10.0.0.1]:2222,web1 {line} root@web1"])
    verify_host_key(host_key, ["garbage", fp])
    blobs, prints, types = parse_pins([line, fp, "ssh-ed25519 !!!notbase64"])
    assert blobs == {host_key.asbytes()} and prints == {fp} and types == {host_key.get_name()}


def test_pins_refuse_unknown_and_other_keys(host_key: paramiko.PKey) -> None:
    with pytest.raises(HostKeyUnknown) as unknown:
        verify_host_key(host_key, [])
    assert unknown.value.key_line == f"{host_key.get_name()} {host_key.get_base64()}"
    assert unknown.value.fingerprint == fingerprint(host_key.asbytes())
    other = paramiko.ECDSAKey.generate()
    with pytest.raises(HostKeyMismatch) as mismatch:
        verify_host_key(host_key, [f"{other.get_name()} {other.get_base64()}"])
    assert mismatch.value.expected == [fingerprint(other.asbytes())]
    assert mismatch.value.offered == fingerprint(host_key.asbytes())
    # A blob whose inner type disagrees with the stated type is not a pin.
    forged = f"ssh-ed25519 {base64.b64encode(host_key.asbytes()).decode()}"
    with pytest.raises(CollectError, match="no valid host key pin"):
        verify_host_key(host_key, [forged])


# --- host keys ----------------------------------------------------------------------------------


def _ssh_keygen_fingerprint(key_line: str, tmp_path: Path) -> str:
    pub = tmp_path / "key.pub"
    pub.write_text(key_line + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


async def test_unpinned_host_key_is_offered_not_trusted(sshd: SshdPeer, collector: SshCollector, tmp_path: Path) -> None:
    before = sshd.count("Failed password") + sshd.count("Accepted")
    with pytest.raises(HostKeyUnknown) as unknown:
        await collector.run_command(target(sshd, pins=(), password=sshd.password), "true")
    assert unknown.value.key_line == sshd.host_key_line
    assert unknown.value.fingerprint == _ssh_keygen_fingerprint(sshd.host_key_line, tmp_path)
    assert sshd.count("Failed password") + sshd.count("Accepted") == before


async def test_pinned_fingerprint_is_accepted(sshd: SshdPeer, collector: SshCollector, tmp_path: Path) -> None:
    fp = _ssh_keygen_fingerprint(sshd.host_key_line, tmp_path)
    assert (await collector.run_command(target(sshd, pins=(fp,)), "echo ok")).stdout == b"ok\n"


async def test_substituted_host_key_refused_before_auth(sshd: SshdPeer, other_sshd: SshdPeer, collector: SshCollector) -> None:
    # The real password, sent to a server presenting another key: it must never leave.
    t = target(sshd, port=other_sshd.port, password=sshd.password)
    with pytest.raises(HostKeyMismatch) as mismatch:
        await collector.run_command(t, "true")
    assert mismatch.value.key_line == other_sshd.host_key_line
    assert mismatch.value.offered != mismatch.value.expected[0]
    # Wait until sshd has logged the end of that connection, then look for any auth attempt.
    assert await wait_for(lambda: "[preauth]" in other_sshd.log_text())
    log = other_sshd.log_text()
    assert "Connection from 127.0.0.1" in log
    assert not re.search(r"Failed|Accepted|Postponed|userauth|Invalid user", log)


async def test_pinned_key_of_another_type_is_refused(sshd: SshdPeer, collector: SshCollector, tmp_path: Path) -> None:
    rsa_server = start_sshd(tmp_path, host_key_type="rsa")
    try:
        with pytest.raises(HostKeyMismatch):
            await collector.run_command(target(sshd, port=rsa_server.port, password=sshd.password), "true")
        assert "Failed password" not in rsa_server.log_text()
        ok = await collector.run_command(target(rsa_server, pins=(rsa_server.host_key_line,)), "echo rsa")
        assert ok.stdout == b"rsa\n"
    finally:
        rsa_server.stop()
