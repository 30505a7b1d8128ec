"""Plug-ins through entry points: the example package is installed for real (pip), then found, validated and run.

The example (tests/plugins/pocketnoc-example) adds a `banner` check kind (tried against the real sshd of
the suite) and a `jsonl` notification channel.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from agents import builtin, plugins
from agents.base import REGISTRY
from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.notify import channels
from server.notify.message import Note
from server.polling.jobs import jobs_for
from server.polling.poller import Poller
from server.store.devices import DeviceRow
from server.store.status import CheckOutcome
from tests.peers.sshd import SshdPeer, start_sshd

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "tests" / "plugins" / "pocketnoc-example"


def _reset() -> None:
    REGISTRY.pop("banner", None)
    channels.REGISTRY.pop("jsonl", None)
    channels.SCHEMES.pop("jsonl", None)
    for name in [m for m in sys.modules if m.startswith("pocketnoc_example")]:
        del sys.modules[name]
    plugins.forget(plugins.COLLECTORS)
    plugins.forget(plugins.CHANNELS)
    importlib.invalidate_caches()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The example plug-in installed with pip into its own directory, put on sys.path like site-packages."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target),
         str(EXAMPLE)],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    assert list(target.glob("pocketnoc_example-*.dist-info/entry_points.txt")), "pip wrote no entry points"
    sys.path.insert(0, str(target))
    _reset()
    yield target
    sys.path.remove(str(target))
    _reset()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdPeer]:
    peer = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield peer
    peer.stop()


def _device(checks: list[dict[str, object]]) -> DeviceSpec:
    return DeviceSpec.model_validate({"name": "bastion", "address": "127.0.0.1", "checks": checks})


def test_without_the_plug_in_its_check_kind_is_refused_in_words() -> None:
    _reset()
    with pytest.raises(ValidationError) as caught:
        _device([{"type": "banner", "port": 22}])
    assert "unknown check type 'banner'" in str(caught.value)
    assert "no check plug-in is installed" in str(caught.value)


def test_built_ins_load_through_the_same_door_as_plug_ins(installed: Path) -> None:
    loaded = {(item.name, item.source) for item in builtin.load()}
    assert ("snmp", "built-in") in loaded and ("net", "built-in") in loaded
    assert ("banner", "pocketnoc-example") in loaded
    assert {"snmp", "ssh", "ping", "tcp", "http", "banner"} <= set(REGISTRY)


def test_options_are_only_for_plug_in_kinds(installed: Path) -> None:
    with pytest.raises(ValidationError, match="options are for plug-in check types"):
        _device([{"type": "tcp", "port": 22, "options": {"expect": "x"}}])


async def test_a_plug_in_check_polls_a_real_service(installed: Path, sshd: SshdPeer, tmp_path: Path) -> None:
    spec = _device([{"type": "banner", "port": sshd.port, "options": {"expect": "SSH-2.0"}},
                    {"type": "banner", "name": "wrong", "port": sshd.port, "options": {"expect": "SMTP"}}])  # fmt: skip
    row = DeviceRow(1, "bastion", "127.0.0.1", None, [], None, 60, True, "config", spec)
    jobs = {j.check: j for j in jobs_for(row, Settings(data_dir=tmp_path))}
    assert jobs["banner"].kind == "banner" and jobs["banner"].target.options["expect"] == "SSH-2.0"
    outcomes: list[CheckOutcome] = []
    poller = Poller(Settings(data_dir=tmp_path), outcomes.append)
    try:
        good = await poller.run_check(jobs["banner"], force=True)
        bad = await poller.run_check(jobs["wrong"], force=True)
    finally:
        await poller.close()
    assert good is not None and good.ok, good
    assert str(good.facts["banner"]).startswith("SSH-2.0-OpenSSH")
    assert any(s[0] == "banner_seconds" for s in good.samples)
    assert bad is not None and not bad.ok and "does not contain 'SMTP'" in (bad.error or "")


async def test_a_plug_in_channel_delivers(installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "notes.jsonl"
    channel = channels.build(f"jsonl://{out}")
    assert channel.kind == "jsonl" and channel.display() == f"jsonl://{out}"
    note = Note("trigger", "core-sw1 is down", "no answer", "<p>no answer</p>", "critical", "alert-7-1", "", {})
    outcome = await channel.send(note, 5.0)
    assert outcome.ok
    line = json.loads(out.read_text().splitlines()[0])
    assert line == {"dedup_key": "alert-7-1", "kind": "trigger", "severity": "critical", "title": "core-sw1 is down",
                    "text": "no answer"}  # fmt: skip


def test_check_config_knows_installed_plug_ins(installed: Path, tmp_path: Path) -> None:
    config = tmp_path / "pocketnoc.yaml"
    config.write_text("devices:\n  - name: bastion\n    address: 127.0.0.1\n    checks:\n      - {type: banner, port: 22}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETNOC_")}
    cmd = [sys.executable, "-m", "server.cli.main", "check-config", "--config", str(config), "--data-dir", str(tmp_path / "d")]
    without = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert without.returncode != 0
    assert f"{config}:5" in without.stdout + without.stderr and "unknown check type 'banner'" in without.stdout + without.stderr
    env["PYTHONPATH"] = os.pathsep.join([str(installed), str(REPO)])
    with_it = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=REPO)
    assert with_it.returncode == 0, with_it.stdout + with_it.stderr
