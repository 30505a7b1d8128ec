"""The fixed command set and custom checks: parsed and judged alone, then run on a real sshd (hostile, huge, endless)."""

from __future__ import annotations

import secrets
import subprocess
import time
import tracemalloc

import pytest

from agents.ssh import SshCollector
from agents.ssh_checks import CommandResult, evaluate, parse_check
from tests.agents.conftest import remote_pids, target, wait_for
from tests.peers.sshd import SshdPeer

pytestmark = pytest.mark.timeout(120)


# --- custom checks ------------------------------------------------------------------------------


def _result(stdout: bytes = b"", exit_code: int | None = 0, timed_out: bool = False) -> CommandResult:
    return CommandResult(exit_code, stdout, b"", 0.01, False, timed_out)


def test_check_exit_code_and_regex() -> None:
    spec = parse_check({"name": "c", "command": "true"}, 30.0)
    assert evaluate(spec, _result())["status"] == "ok"
    assert evaluate(spec, _result(exit_code=2))["status"] == "critical"
    assert evaluate(spec, _result(exit_code=None))["status"] == "critical"
    spec = parse_check({"name": "c", "command": "x", "expect_exit": None, "regex": "^ready"}, 30.0)
    assert evaluate(spec, _result(b"ready\n", exit_code=5))["ok"] is True
    row = evaluate(spec, _result(b"not ready", exit_code=0))
    assert row["status"] == "critical" and row["ok"] is False


def test_check_value_thresholds() -> None:
    high = parse_check({"name": "q", "command": "x", "value_regex": r"q=(\S+)", "warn": 10, "crit": 20}, 30)
    assert evaluate(high, _result(b"q=5"))["status"] == "ok"
    assert evaluate(high, _result(b"q=10.5"))["status"] == "warning"
    row = evaluate(high, _result(b"q=1e3"))
    assert row["status"] == "critical" and row["value"] == 1000.0
    assert evaluate(high, _result(b"q=abc"))["status"] == "error"
    assert evaluate(high, _result(b"q=nan"))["status"] == "error"
    assert evaluate(high, _result(b"nothing"))["status"] == "error"
    low = parse_check({"name": "f", "command": "x", "value_regex": r"(\d+)% fr", "warn": 20, "crit": 10}, 30)
    assert evaluate(low, _result(b"50% free"))["status"] == "ok"
    assert evaluate(low, _result(b"15% free"))["status"] == "warning"
    assert evaluate(low, _result(b"5% free"))["status"] == "critical"


def test_check_timeout_and_output_cap() -> None:
    spec = parse_check({"name": "s", "command": "sleep 9", "timeout": 5}, 30.0)
    assert spec.timeout == 5.0
    row = evaluate(spec, _result(timed_out=True, exit_code=None))
    assert row["status"] == "error" and row["exit_code"] is None
    row = evaluate(parse_check({"name": "big", "command": "x"}, 30), _result(b"\x1b[1m" + b"y" * 100_000))
    assert row["output"] == "y" * 4096


@pytest.mark.parametrize(
    "raw",
    [
        "not a mapping",
        {"command": "true"},
        {"name": "", "command": "true"},
        {"name": "x", "command": ""},
        {"name": "x", "command": "a\x00b"},
        {"name": "x", "command": "true", "regex": "("},
        {"name": "x", "command": "true", "value_regex": r"\d+"},
        {"name": "x", "command": "true", "warn": "high"},
        {"name": "x", "command": "true", "expect_exit": "0"},
        {"name": "x", "command": "true", "crit": float("inf")},
    ],
)
def test_invalid_checks(raw: object) -> None:
    with pytest.raises(ValueError):
        parse_check(raw, 30.0)


# --- the fixed command set ----------------------------------------------------------------------


async def test_full_reading(sshd: SshdPeer, collector: SshCollector) -> None:
    first = await collector.collect(target(sshd))
    metrics = {s.metric for s in first.samples}
    assert {"load1", "load5", "load15", "mem_total_bytes", "mem_used_bytes", "mem_used_pct"} <= metrics
    assert {"swap_total_bytes", "uptime_seconds", "fs_used_pct", "fs_size_bytes", "fs_used_bytes"} <= metrics
    assert "cpu_pct" not in metrics  # no previous /proc/stat yet
    facts = first.facts
    assert facts["hostname"] == subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    assert facts["os"] == "Linux" and facts["kernel"] and facts["uptime_seconds"] > 0
    rows = {r["mount"]: r for r in first.tables["filesystems"]}
    assert "/" in rows and rows["/"]["size_bytes"] > 0 and 0 <= rows["/"]["used_pct"] <= 100
    assert all(r["fstype"] not in ("tmpfs", "devtmpfs", "proc", "sysfs", "overlay") for r in rows.values())
    assert 0 < next(s.value for s in first.samples if s.metric == "mem_used_pct") < 100
    fs = [s for s in first.samples if s.metric == "fs_used_pct"]
    assert {s.labels["mount"] for s in fs} == set(rows)
    # This container runs no systemd: systemctl fails, so there is no failed-unit count to report.
    assert "systemd_failed_units" not in metrics and "failed_units" not in first.tables
    # Busy-loop a CPU between polls so the delta is measurable on a quiet machine.
    await collector.run_command(target(sshd), "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
    second = await collector.collect(target(sshd))
    cpu = {s.metric: s.value for s in second.samples if s.metric.startswith("cpu_")}
    assert 0 < cpu["cpu_pct"] <= 100 and 0 <= cpu["cpu_iowait_pct"] <= 100
    assert second.facts["cpu_count"] >= 1


# --- custom checks ------------------------------------------------------------------------------


async def test_custom_checks(sshd: SshdPeer, collector: SshCollector) -> None:
    queue = {"value_regex": r"queue=(\S+)", "warn": 10, "crit": 20}
    commands = [
        {"name": "exit-ok", "command": "exit 0"},
        {"name": "exit-bad", "command": "exit 3"},
        {"name": "exit-expected", "command": "exit 3", "expect_exit": 3},
        {"name": "regex-hit", "command": "echo service is running", "regex": "is running$"},
        {"name": "regex-miss", "command": "echo service is stopped", "regex": "is running"},
        {"name": "v-ok", "command": "echo queue=3", **queue},
        {"name": "v-warn", "command": "echo queue=12", **queue},
        {"name": "v-crit", "command": "echo queue=25.5", **queue},
        {"name": "v-none", "command": "echo nothing", "value_regex": r"queue=(\d+)"},
        {"name": "missing", "command": "no-such-command-pnoc"},
        {"name": "broken", "command": "true", "regex": "("},
    ]
    reading = await collector.collect(target(sshd, options={"commands": commands}))
    rows = {r["name"]: r for r in reading.tables["commands"]}
    status = {name: row["status"] for name, row in rows.items()}
    assert status == {
        "exit-ok": "ok",
        "exit-bad": "critical",
        "exit-expected": "ok",
        "regex-hit": "ok",
        "regex-miss": "critical",
        "v-ok": "ok",
        "v-warn": "warning",
        "v-crit": "critical",
        "v-none": "error",
        "missing": "critical",
        "broken": "error",
    }
    assert rows["missing"]["exit_code"] == 127 and "not found" in rows["missing"]["output"]
    assert rows["v-crit"]["value"] == 25.5 and rows["exit-bad"]["exit_code"] == 3
    assert all(row["ok"] == (row["status"] == "ok") for row in rows.values())
    assert all(row["duration_s"] >= 0 for row in rows.values())
    values = {s.labels["check"]: s.value for s in reading.samples if s.metric == "command_value"}
    assert values == {"v-ok": 3.0, "v-warn": 12.0, "v-crit": 25.5}
    oks = {s.labels["check"]: s.value for s in reading.samples if s.metric == "command_ok"}
    assert oks["exit-ok"] == 1.0 and oks["exit-bad"] == 0.0 and len(oks) == len(commands)
    assert "load1" in {s.metric for s in reading.samples}  # the fixed set ran alongside


async def test_hostile_output_is_sanitized(sshd: SshdPeer, collector: SshCollector) -> None:
    command = r"printf '\033[31mred\033[0m \033]0;pwned\007<b>bold</b> & ok\rFAKE\n\377\376\000end\033P+q\033\\'"
    reading = await collector.collect(target(sshd, options={"system": False, "commands": [{"name": "h", "command": command}]}))
    row = reading.tables["commands"][0]
    assert row["output"] == "red <b>bold</b> & ok\nFAKE\n\ufffd\ufffdend"
    assert row["status"] == "ok"


async def test_huge_output_is_capped(sshd: SshdPeer, collector: SshCollector) -> None:
    size = 100_000_000 + secrets.randbelow(1000)  # unique, to find this run's processes
    command = f"head -c {size} /dev/zero | tr '\\0' x"
    tracemalloc.start()
    start = time.monotonic()
    try:
        result = await collector.run_command(target(sshd), command, timeout=60, max_bytes=256 * 1024)
        reading = await collector.collect(
            target(sshd, options={"system": False, "commands": [{"name": "big", "command": command}]})
        )
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.truncated and not result.timed_out
    assert result.stdout == b"x" * (256 * 1024)
    assert reading.tables["commands"][0]["output"] == "x" * 4096
    assert reading.tables["commands"][0]["status"] == "error"  # stopped: its exit status is unknown
    assert time.monotonic() - start < 20
    assert peak < 32 * 1024 * 1024
    # The writer was killed, not left running on the server.
    assert await wait_for(lambda: not remote_pids(sshd, f"head -c {size}"))


async def test_endless_command_times_out_and_is_killed(sshd: SshdPeer, collector: SshCollector) -> None:
    seconds = 600 + secrets.randbelow(10_000)
    command = f"echo started; sleep {seconds}"
    start = time.monotonic()
    result = await collector.run_command(target(sshd), command, timeout=1.5)
    assert result.timed_out and result.exit_code is None and result.stdout == b"started\n"
    assert time.monotonic() - start < 10
    assert await wait_for(lambda: not remote_pids(sshd, f"sleep {seconds}"))
    reading = await collector.collect(
        target(sshd, options={"system": False, "commands": [{"name": "s", "command": command, "timeout": 1}]})
    )
    row = reading.tables["commands"][0]
    assert row["status"] == "error" and row["exit_code"] is None
    assert await wait_for(lambda: not remote_pids(sshd, f"sleep {seconds}"))
    # The connection survives a killed command.
    assert (await collector.run_command(target(sshd), "echo alive")).stdout == b"alive\n"
