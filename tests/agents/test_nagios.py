"""The nagios check kind: Debian's monitoring-plugins run for real, their output parsed, hostile plug-ins survived."""

from __future__ import annotations

import asyncio
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.base import CollectError, Reading, Target
from agents.nagios import NagiosCollector, option_problem
from agents.nagios_perf import outside, parse_output, threshold_state

PLUGINS = "/usr/lib/nagios/plugins"


def collect(command: str, args: list[str], plugin_dir: Path | None = None, timeout: float = 5.0) -> Reading:
    dirs = [PLUGINS] + ([str(plugin_dir)] if plugin_dir else [])
    options: dict[str, object] = {"command": command, "args": args, "plugin_dirs": dirs}

    async def run() -> Reading:
        collector = NagiosCollector()
        try:
            return await collector.collect(Target("127.0.0.1", 0, "host", timeout=timeout, options=options))
        finally:
            await collector.close()

    return asyncio.run(run())


def script(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(stat.S_IRWXU)
    return str(path)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    found = tmp_path / "plugins"
    found.mkdir()
    return found


@pytest.fixture
def listener() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


# ---------------------------------------------------------------- the output convention


def test_perfdata_with_quoted_labels_units_and_long_output() -> None:
    out = parse_output(
        "DISK WARNING - free space low | '/var lib'=80%;70;90;0;100 'it''s'=5s;;;\n"
        "first long line\nsecond long line | rx=1024KB;;;0 tx=17c\nrtt=12ms;100;200\n"
    )
    assert out.text == "DISK WARNING - free space low"
    assert out.long == ["first long line", "second long line"]
    perf = {p.label: p for p in out.perf}
    assert set(perf) == {"/var lib", "it's", "rx", "tx", "rtt"}
    assert (perf["/var lib"].metric, perf["/var lib"].value) == ("plugin_pct", 80.0)
    assert (perf["it's"].metric, perf["it's"].value) == ("plugin_ms", 5000.0)
    assert (perf["rx"].metric, perf["rx"].value) == ("plugin_bytes", 1024.0 * 1024)
    assert perf["tx"].counter and perf["tx"].metric == "plugin_count"
    assert perf["rtt"].warn == "100" and perf["rtt"].crit == "200"
    assert out.notes == []


def test_malformed_perfdata_is_skipped_with_a_note() -> None:
    out = parse_output("OK | good=1 =3 bad=abc noequals 'open=1 huge=1e999 unit=5parsecs;;; u=U")
    assert [p.label for p in out.perf] == ["good"]
    text = " ".join(out.notes)
    assert "'bad' has no number" in text and "not label=value" in text and "unterminated" in text


def test_nagios_ranges_and_threshold_state() -> None:
    assert outside("10", 11) and outside("10", -1) and not outside("10", 5)
    assert outside("10:", 9) and not outside("10:", 10)
    assert outside("~:10", 11) and not outside("~:10", -50)
    assert outside("10:20", 21) and not outside("10:20", 15)
    assert outside("@10:20", 15) and not outside("@10:20", 25)
    assert outside("junk", 1) is None
    notes: list[str] = []
    parsed = parse_output("OK | load=7;5;10 ok=1;5;10 bad=1;x;")
    assert threshold_state(parsed.perf, notes) == "warning"
    assert any("unreadable warning range" in n for n in notes)


def test_options_are_checked_before_anything_runs() -> None:
    assert option_problem({"command": "check_load"}) is not None  # not absolute
    assert "'..'" in str(option_problem({"command": "/usr/lib/nagios/plugins/../../../bin/sh"}))
    assert "list of strings" in str(option_problem({"command": f"{PLUGINS}/check_load", "args": "-w 1"}))
    assert "via" in str(option_problem({"command": f"{PLUGINS}/check_load", "via": "telnet"}))
    assert option_problem({"command": f"{PLUGINS}/check_load", "args": ["-w", "1"], "via": "ssh"}) is None
    with pytest.raises(CollectError, match="not inside an allowed plug-in directory"):
        collect("/bin/sh", ["-c", "echo hi"])


@pytest.mark.parametrize(
    ("wrapper", "args"),
    [
        ("negate", ["/bin/sh", "-c", "touch {mark}"]),  # runs its first argument: any command on the host
        ("urlize", ["http://x", "/bin/sh", "-c", "touch {mark}"]),  # the same, its output wrapped in a link
        ("check_by_ssh", ["-H", "127.0.0.1", "-o", "ProxyCommand=touch {mark}", "-C", "true"]),  # ssh -o runs locally
    ],
)
def test_plugins_that_run_other_commands_are_refused(wrapper: str, args: list[str], tmp_path: Path) -> None:
    """A command-running wrapper shipped in the plug-in directory would make the directory rule meaningless."""
    mark = tmp_path / "ran"
    argv = [a.format(mark=mark) for a in args]
    assert "runs other commands" in str(option_problem({"command": f"{PLUGINS}/{wrapper}", "args": argv}))
    with pytest.raises(CollectError, match="runs other commands"):
        collect(f"{PLUGINS}/{wrapper}", argv)
    assert not mark.exists()


# ---------------------------------------------------------------- Debian's monitoring-plugins-basic, run for real


def test_check_load_and_check_disk_give_state_and_metrics() -> None:
    load = collect(f"{PLUGINS}/check_load", ["-w", "500,500,500", "-c", "900,900,900"])
    assert load.facts["plugin_state"] == "ok" and load.problem is None
    assert {s.labels["perf"] for s in load.samples} >= {"load1", "load5", "load15"}
    disk = collect(f"{PLUGINS}/check_disk", ["-w", "0%", "-c", "0%", "-p", "/"])
    assert disk.facts["plugin_output"].startswith("DISK OK")
    (root,) = [s for s in disk.samples if s.labels["perf"] == "/"]
    assert root.metric == "plugin_bytes" and root.value > 1024**2
    # A threshold the disk cannot meet: free space must be 100 %, so it is critical.
    full = collect(f"{PLUGINS}/check_disk", ["-w", "100%", "-c", "100%", "-p", "/"])
    assert full.facts["plugin_state"] == "critical" and str(full.problem).startswith("DISK CRITICAL")


def test_check_tcp_against_a_local_listener_and_a_closed_port(listener: int) -> None:
    up = collect(f"{PLUGINS}/check_tcp", ["-H", "127.0.0.1", "-p", str(listener), "-w", "2", "-c", "4"])
    assert up.facts["plugin_state"] == "ok", up.facts
    (rt,) = [s for s in up.samples if s.labels["perf"] == "time"]
    assert rt.metric == "plugin_ms" and 0 <= rt.value < 2000
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    down = collect(f"{PLUGINS}/check_tcp", ["-H", "127.0.0.1", "-p", str(port)])
    assert down.facts["plugin_state"] == "critical" and "refused" in str(down.problem).lower()


@pytest.mark.parametrize(("code", "state"), [("0", "ok"), ("1", "warning"), ("2", "critical"), ("3", "unknown")])
def test_check_dummy_exit_codes_are_states(code: str, state: str) -> None:
    reading = collect(f"{PLUGINS}/check_dummy", [code, "text with spaces; $(touch /tmp/pn-never)"])
    assert reading.facts["plugin_state"] == state and reading.facts["plugin_exit"] == int(code)
    assert "$(touch /tmp/pn-never)" in reading.facts["plugin_output"]  # an argument, never shell text
    assert (reading.problem is None) == (state == "ok")


# ---------------------------------------------------------------- hostile plug-ins


def test_twenty_megabytes_of_output_are_read_bounded(plugin_dir: Path) -> None:
    flood = script(plugin_dir, "flood", "echo 'FLOOD OK | big=1'\nhead -c 20000000 /dev/zero | tr '\\0' x\nexit 0\n")
    started = time.monotonic()
    reading = collect(flood, [], plugin_dir, timeout=20)
    assert time.monotonic() - started < 10  # drained as it came, never blocked on a full pipe
    assert reading.facts["plugin_state"] == "ok" and reading.facts["plugin_output"] == "FLOOD OK"
    assert any("output was 20000017 bytes" in n for n in reading.facts["plugin_notes"])
    assert [s.value for s in reading.samples] == [1.0]


def test_binary_output_without_newline(plugin_dir: Path) -> None:
    binary = script(plugin_dir, "binary", "printf 'BIN \\033[31mOK\\001\\377\\376 | v=3'\nexit 1\n")
    reading = collect(binary, [], plugin_dir)
    assert reading.facts["plugin_state"] == "warning"
    assert "\x1b" not in reading.facts["plugin_output"] and "\x01" not in reading.facts["plugin_output"]
    assert reading.facts["plugin_output"].startswith("BIN OK")
    assert [s.value for s in reading.samples] == [3.0]


def test_a_plugin_that_never_exits_is_killed_with_its_children(plugin_dir: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hang = script(plugin_dir, "hang", f"sleep 300 &\necho $! > {pidfile}\necho 'STARTED'\nwait\n")
    started = time.monotonic()
    reading = collect(hang, [], plugin_dir, timeout=0.5)
    assert time.monotonic() - started < 3
    assert reading.facts["plugin_state"] == "unknown"
    assert reading.problem == "UNKNOWN: timed out after 0.5 s"
    child = int(pidfile.read_text())
    for _ in range(50):
        try:
            state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":  # killed, waiting for init to reap it
            break
        time.sleep(0.02)
    else:
        pytest.fail("the plug-in's child survived the timeout")


def test_malformed_perfdata_never_crashes_the_check(plugin_dir: Path) -> None:
    junk = script(plugin_dir, "junk", "echo \"OK | a=1 b= =2 'c=3 d=4;;;;;;;; e=1e999\"\nexit 0\n")
    reading = collect(junk, [], plugin_dir)
    assert reading.facts["plugin_state"] == "ok" and reading.facts["plugin_notes"]
    assert [s.labels["perf"] for s in reading.samples] == ["a"]


def test_not_found_not_executable_and_signals_are_unknown_with_a_reason(plugin_dir: Path) -> None:
    missing = collect(str(plugin_dir / "nothere"), [], plugin_dir)
    assert missing.problem == "UNKNOWN: the plug-in was not found (exit 127)"
    plain = plugin_dir / "plain"
    plain.write_text("not a program")
    assert collect(str(plain), [], plugin_dir).problem == "UNKNOWN: the plug-in is not executable (exit 126)"
    killed = script(plugin_dir, "killed", "echo 'half an answer'\nkill -9 $$\n")
    assert collect(killed, [], plugin_dir).problem == "UNKNOWN: the plug-in was killed by signal 9: half an answer"
    weird = script(plugin_dir, "weird", "echo 'what' >&2\nexit 42\n")
    assert collect(weird, [], plugin_dir).problem == "UNKNOWN: the plug-in exited 42, not 0-3: what"
