"""Nagios plug-in checks end to end: inventory -> poller -> writer -> state, metrics and the device page.

Debian's monitoring-plugins run here and on the test sshd (over the pinned SSH login); a hostile plug-in
(in a temp plug-in directory the settings allow) floods, hangs and misprints without losing anything.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from server.cli.main import main
from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.store.devices import load_device
from tests.peers.sshd import SshdPeer
from tests.server.conftest import AppEnv, bearer, form_csrf, make_app_env, sign_in

PLUGINS = "/usr/lib/nagios/plugins"


@pytest.fixture
def plugin_dir() -> Iterator[Path]:
    """Hostile plug-ins in a directory the sshd test user can reach too (pytest's tmp dirs are 0700)."""
    found = Path(tempfile.mkdtemp(prefix="pnoc-plugins-"))
    found.chmod(0o755)
    run = found / "run"
    run.mkdir()
    run.chmod(0o1777)
    scripts = {
        "hang": "echo 'never says'\nexec sleep 300\n",
        "remote-hang": f"sleep 300 &\necho $! > {run / 'remote.pid'}\nwait\n",
        "counter": f"n=$(cat {run / 'count'} 2>/dev/null || echo 0)\nn=$((n + 100))\necho $n > {run / 'count'}\n"
                   "echo \"REQUESTS OK | requests=${n}c\"\n",
        "flood": "echo \"SPAM WARNING - <b>loud</b> | 'big one'=42%;40;90 bad=x\"\nhead -c 20000000 /dev/zero\n",
    }
    for name, body in scripts.items():
        path = found / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    yield found
    shutil.rmtree(found, ignore_errors=True)


@pytest.fixture
def env(tmp_path: Path, plugin_dir: Path) -> Iterator[AppEnv]:
    settings = Settings(
        data_dir=tmp_path / "data", writer_batch_seconds=0.05, down_after_failures=1, plugin_dirs=[PLUGINS, str(plugin_dir)]
    )
    yield from make_app_env(settings, poll=True)


def _check(name: str, command: str, args: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "nagios", "name": name, "timeout": 5, "interval": 60, "options": {"command": command, "args": args, **extra}}


def _create_and_poll(env: AppEnv, name: str, checks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Add the device through the API, poll it now (the real poller and writer), return its API view."""
    headers = bearer(env.token(f"admin-{name}", "admin"))
    spec = {"name": name, "address": "127.0.0.1", "interval": 3600, "checks": checks, **extra}
    created = env.client.post("/api/v1/devices", json=spec, headers=headers)
    assert created.status_code == 201, created.text
    device_id = created.json()["id"]
    r = env.client.post(f"/api/v1/devices/{device_id}/poll", headers=headers)
    assert r.status_code == 200, r.text
    device = dict(env.client.get(f"/api/v1/devices/{device_id}", headers=headers).json())
    checks_now = device["checks"]
    device["by_check"] = {c["name"]: c for c in checks_now} if isinstance(checks_now, list) else checks_now
    return device


def _page(env: AppEnv, device: dict[str, Any]) -> str:
    env.user("viewer", "viewer")
    sign_in(env.client, "viewer")
    page = env.client.get(f"/devices/{device['id']}")
    assert page.status_code == 200
    return page.text


def test_local_plugins_give_state_metrics_and_graphs(env: AppEnv, plugin_dir: Path) -> None:
    checks = [
        _check("load", f"{PLUGINS}/check_load", ["-w", "500,500,500", "-c", "900,900,900"]),
        _check("disk-root", f"{PLUGINS}/check_disk", ["-w", "0%", "-c", "0%", "-p", "/"]),
    ]
    device = _create_and_poll(env, "noc-host", checks)
    assert device["state"] == "up", device["last_error"]
    checks = device["by_check"]
    assert checks["load"]["facts"]["plugin_state"] == "ok"
    metrics = {(m["metric"], m["labels"].get("perf"), m["labels"].get("check")) for m in device["metrics"]}
    assert ("plugin_value", "load1", "load") in metrics and ("plugin_bytes", "/", "disk-root") in metrics
    page = _page(env, device)
    assert "LOAD OK - total load average" in page and "DISK OK" in page
    assert "Plug-in value · load · load1" in page and "Plug-in size · disk-root · /" in page


def test_hostile_plugins_are_unknown_or_warning_and_nothing_is_lost(env: AppEnv, plugin_dir: Path) -> None:
    checks = [
        {**_check("hang", str(plugin_dir / "hang"), []), "timeout": 1},
        _check("flood", str(plugin_dir / "flood"), []),
        _check("outside", "/usr/bin/id", []),
        _check("dummy", f"{PLUGINS}/check_dummy", ["0", "fine"]),
    ]
    device = _create_and_poll(env, "hostile", checks)
    assert device["state"] == "degraded"
    checks = device["by_check"]
    assert checks["hang"]["error"] == "UNKNOWN: timed out after 1 s"
    assert checks["flood"]["error"] == "SPAM WARNING - <b>loud</b>"
    assert any("20000" in n for n in checks["flood"]["facts"]["plugin_notes"])
    assert "not inside an allowed plug-in directory" in checks["outside"]["error"]
    assert checks["dummy"]["ok"]
    flood = [m for m in device["metrics"] if m["labels"].get("check") == "flood"]
    assert [(m["metric"], m["labels"]["perf"], m["value"]) for m in flood] == [("plugin_pct", "big one", 42.0)]
    page = _page(env, device)
    assert "&lt;b&gt;loud&lt;/b&gt;" in page and "<b>loud</b>" not in page


def test_plugins_run_over_ssh_with_the_pinned_key(env: AppEnv, sshd: SshdPeer, plugin_dir: Path) -> None:
    ssh = {"port": sshd.port, "user": sshd.user, "key_file": sshd.key_path, "host_key": sshd.host_key_line, "timeout": 10}
    checks = [
        _check("remote-load", f"{PLUGINS}/check_load", ["-w", "500,500,500", "-c", "900,900,900"], via="ssh"),
        # A shell would run the $(...) and the ;: quoted, it is check_dummy's text, nothing more.
        _check("remote-dummy", f"{PLUGINS}/check_dummy", ["2", "it's; $(id) `id`"], via="ssh"),
        _check("remote-missing", f"{PLUGINS}/check_not_installed", [], via="ssh"),
        {**_check("remote-hang", str(plugin_dir / "remote-hang"), [], via="ssh"), "timeout": 1},
        _check("remote-flood", str(plugin_dir / "flood"), [], via="ssh"),
    ]
    device = _create_and_poll(env, "remote", checks, ssh=ssh)
    checks = device["by_check"]
    assert checks["remote-load"]["ok"], checks["remote-load"]
    assert checks["remote-dummy"]["error"] == "CRITICAL: it's; $(id) `id`"
    assert checks["remote-missing"]["error"].startswith("UNKNOWN: the plug-in was not found (exit 127)")
    assert any(m["metric"] == "plugin_value" and m["labels"].get("check") == "remote-load" for m in device["metrics"])
    assert checks["remote-hang"]["error"] == "UNKNOWN: timed out after 1 s"
    assert checks["remote-flood"]["error"] == "UNKNOWN: output over 64 KiB; the remote plug-in was stopped"
    pid = int((plugin_dir / "run" / "remote.pid").read_text())
    for _ in range(20):  # sshd kills the plug-in's process group, its children too, when pocketnoc gives up
        if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the remote plug-in's child was left running")


def test_plugins_over_ssh_share_the_ssh_collectors_login(env: AppEnv, sshd: SshdPeer) -> None:
    ssh = {"port": sshd.port, "user": sshd.user, "key_file": sshd.key_path, "host_key": sshd.host_key_line, "timeout": 10}
    checks = [_check("remote-load", f"{PLUGINS}/check_load", ["-w", "500,500,500", "-c", "900,900,900"], via="ssh"),
              _check("remote-dummy", f"{PLUGINS}/check_dummy", ["0", "fine"], via="ssh")]
    before = sshd.count("Accepted publickey")
    device = _create_and_poll(env, "shared", checks, ssh=ssh)  # the SSH collector's own check and two plug-ins
    assert device["by_check"]["remote-load"]["ok"] and device["by_check"]["remote-dummy"]["ok"], device["by_check"]
    assert device["facts"].get("kernel") or device["tables"], "the SSH collector's check ran too"
    headers = bearer(env.token("admin-again", "admin"))
    assert env.client.post(f"/api/v1/devices/{device['id']}/poll", headers=headers).status_code == 200  # a next interval
    assert sshd.count("Accepted publickey") - before == 1, "one login for both kinds, kept across intervals"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"command": "check_load"}, "normalised absolute path"),
        ({"command": f"{PLUGINS}/check_load", "args": ["-w", 5]}, "string"),
        ({"command": f"{PLUGINS}/check_load", "plugin_dirs": ["/"]}, "unknown nagios option(s): plugin_dirs"),
        ({"command": f"{PLUGINS}/check_load", "via": "ssh"}, "needs the device's ssh block"),
    ],
)
def test_bad_nagios_checks_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DeviceSpec.model_validate({"name": "x", "address": "127.0.0.1", "checks": [{"type": "nagios", "options": options}]})


def test_editing_a_device_in_the_admin_form_keeps_its_plugin_checks(env: AppEnv) -> None:
    checks = [{"type": "ping"}, _check("load", f"{PLUGINS}/check_load", ["-w", "500,500,500", "-c", "900,900,900"])]
    device = _create_and_poll(env, "keeper", checks)
    env.user("boss", "admin")
    sign_in(env.client, "boss")
    page = env.client.get(f"/admin/devices/{device['id']}")
    assert "Kept as they are" in page.text and "load (nagios)" in page.text
    form = {"csrf_token": form_csrf(page.text), "name": "keeper", "address": "127.0.0.1", "tags": "lab", "enabled": "on",
            "snmp_version": "none", "ping": "1"}
    saved = env.client.post(f"/admin/devices/{device['id']}", data=form)
    assert saved.status_code == 303, saved.text
    with env.svc.reader.connect() as conn:
        stored = load_device(conn, env.svc.box, device["id"])
    assert stored is not None and stored.spec.tags == ["lab"]
    kept = [c for c in stored.spec.checks if c.type == "nagios"]
    assert len(kept) == 1 and kept[0].options["args"] == ["-w", "500,500,500", "-c", "900,900,900"]


def test_counter_perfdata_becomes_a_rate_on_the_second_run(env: AppEnv, plugin_dir: Path) -> None:
    device = _create_and_poll(env, "counting", [_check("requests", str(plugin_dir / "counter"), [])])
    assert not [m for m in device["metrics"] if m["metric"].startswith("plugin_count")]  # a counter's first sight
    headers = bearer(env.token("admin-counting"))
    assert env.client.post(f"/api/v1/devices/{device['id']}/poll", headers=headers).status_code == 200
    again = env.client.get(f"/api/v1/devices/{device['id']}", headers=headers).json()
    (rate,) = [m for m in again["metrics"] if m["metric"] == "plugin_count_rate"]
    assert rate["labels"] == {"check": "requests", "perf": "requests"} and rate["value"] > 0


def test_check_config_says_in_one_line_what_is_wrong_with_a_nagios_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "devices:\n  - name: host\n    address: 192.0.2.5\n    checks:\n"
        "      - {type: nagios, name: load, options: {command: /usr/lib/nagios/plugins/check_load, args: ['-w', '5']}}\n"
    )
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("args: ['-w', '5']", "args: [-w, 5]"))
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    why = "options.args must be a list of strings: quote numbers, e.g. ['-w', '5']"
    assert err == [f"{bad}:5: devices.0.checks.0.options: {why}"]
