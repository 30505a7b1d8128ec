"""Pure parsers of the SSH collector, fed real and odd inputs."""

from __future__ import annotations

import base64
import time

import paramiko
import pytest

from agents.base import CollectError
from agents.ssh_checks import CommandResult, evaluate, parse_check
from agents.ssh_hostkeys import HostKeyMismatch, HostKeyUnknown, fingerprint, parse_pins, verify_host_key
from agents.ssh_parsers import (
    CpuTimes,
    Section,
    build_script,
    clean_text,
    cpu_percent,
    filesystems,
    memory_values,
    parse_df,
    parse_df_inodes,
    parse_failed_units,
    parse_loadavg,
    parse_meminfo,
    parse_mounts,
    parse_stat,
    parse_uname,
    parse_uptime,
    split_sections,
    usable,
)

# --- clean_text ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x1b[31mred\x1b[0m", "red"),
        (b"\x1b[2J\x1b[1;1Hclear", "clear"),
        (b"\x1b]0;evil title\x07after", "after"),
        (b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),
        (b"\x1bPq#0;2;0;0;0\x1b\\dcs", "dcs"),
        (b"a\x1bcb", "ab"),
        (b"\x1b(Bx", "x"),
        (b"trailing\x1b", "trailing"),
        (b"ok\rFAKE", "ok\nFAKE"),
        (b"line\r\nnext", "line\nnext"),
        (b"back\x08\x08\x08\x08fake", "backfake"),
        (b"nul\x00byte\x07bell\x7fdel", "nulbytebelldel"),
        (b"tab\tkept\nnewline", "tab\tkept\nnewline"),
        ("c1\u009b31mx\u0085".encode(), "c131mx"),
        ("bidi\u202eevil\u2066x\u2069".encode(), "bidievilx"),
        (b"\xff\xfeinvalid", "\ufffd\ufffdinvalid"),
        (b"<script>alert(1)</script>&amp;", "<script>alert(1)</script>&amp;"),
        ("ünïcödé ✓".encode(), "ünïcödé ✓"),
        (b"", ""),
    ],
)
def test_clean_text(raw: bytes, expected: str) -> None:
    assert clean_text(raw) == expected


def test_clean_text_caps_length_and_accepts_str() -> None:
    assert clean_text(b"x" * 10_000_000, 100) == "x" * 100
    assert clean_text("\x1b[1mbold\x1b[0m" * 1000, 8) == "boldbold"
    # Escape-heavy input must not eat the budget before the text it hides.
    assert clean_text(b"\x1b[0m" * 10 + b"text", 4) == "text"


# --- single-line parsers ------------------------------------------------------------------------


def test_loadavg() -> None:
    assert parse_loadavg("0.15 0.10 0.05 1/123 4567\n") == (0.15, 0.10, 0.05)
    assert parse_loadavg("12.00 8 3.5") == (12.0, 8.0, 3.5)
    for bad in ("", "garbage", "0.1 0.2", "nan nan nan", "-1 0 0", "1,5 2,0 3,0", "\x00\x01"):
        assert parse_loadavg(bad) is None


def test_uptime_and_uname() -> None:
    assert parse_uptime("350735.47 234388.90\n") == 350735.47
    assert parse_uptime("") is None
    assert parse_uptime("up 3 days") is None
    assert parse_uname("Linux 6.1.0-18-amd64\n") == ("Linux", "6.1.0-18-amd64")
    assert parse_uname("FreeBSD 13.2-RELEASE-p4") == ("FreeBSD", "13.2-RELEASE-p4")
    assert parse_uname("\n\nLinux") == ("Linux", "")
    assert parse_uname("   ") is None


# --- memory -------------------------------------------------------------------------------------

MEMINFO = """MemTotal:       16318412 kB
MemFree:         1203496 kB
MemAvailable:   10117724 kB
Buffers:          588940 kB
Cached:          8226320 kB
SwapTotal:       2097148 kB
SwapFree:        1048574 kB
HugePages_Total:       0
garbage line without colon
Broken:          notanumber kB
"""


def test_meminfo() -> None:
    mem = parse_meminfo(MEMINFO)
    assert mem["MemTotal"] == 16318412 * 1024
    assert mem["HugePages_Total"] == 0
    assert "Broken" not in mem
    values = memory_values(mem)
    assert values["mem_total_bytes"] == 16318412 * 1024
    assert values["mem_used_bytes"] == (16318412 - 10117724) * 1024
    assert values["mem_used_pct"] == pytest.approx(100 * (16318412 - 10117724) / 16318412)
    assert values["swap_total_bytes"] == 2097148 * 1024
    assert values["swap_used_pct"] == pytest.approx(50.0, abs=0.01)


def test_meminfo_old_kernel_without_memavailable_and_no_swap() -> None:
    text = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 100 kB\nCached: 200 kB\n"
    text += "SwapTotal: 0 kB\nSwapFree: 0 kB\n"
    values = memory_values(parse_meminfo(text))
    assert values["mem_used_bytes"] == 600 * 1024
    assert values["swap_total_bytes"] == 0
    assert "swap_used_pct" not in values


def test_meminfo_garbage() -> None:
    assert memory_values(parse_meminfo("")) == {}
    assert memory_values(parse_meminfo("MemTotal: 0 kB\n")) == {}
    # MemAvailable above MemTotal (seen on broken containers) must not give negative use.
    values = memory_values(parse_meminfo("MemTotal: 100 kB\nMemAvailable: 500 kB\n"))
    assert values["mem_used_bytes"] == 0


# --- cpu ----------------------------------------------------------------------------------------

STAT = """cpu  1000 10 500 8000 200 0 50 0 0 0
cpu0 500 5 250 4000 100 0 25 0 0 0
cpu1 500 5 250 4000 100 0 25 0 0 0
intr 123456 1 2 3
ctxt 999
btime 1700000000
"""


def test_stat_and_cpu_percent() -> None:
    first = parse_stat(STAT)
    assert first == CpuTimes(total=9760, idle=8200, iowait=200, btime=1700000000, count=2)
    later = parse_stat(STAT.replace("cpu  1000 10 500 8000 200", "cpu  1100 10 550 8300 250"))
    assert later is not None
    busy, iowait = cpu_percent(first, later) or (None, None)
    # deltas: total 500 (100 user, 50 system, 300 idle, 50 iowait): busy 150/500, iowait 50/500
    assert busy == pytest.approx(30.0)
    assert iowait == pytest.approx(10.0)
    assert cpu_percent(None, later) is None
    assert cpu_percent(later, later) is None  # no time passed


def test_cpu_percent_after_reboot_or_reset() -> None:
    before = CpuTimes(total=10_000, idle=9_000, iowait=10, btime=100, count=1)
    assert cpu_percent(before, CpuTimes(total=20_000, idle=10_000, iowait=20, btime=200, count=1)) is None
    assert cpu_percent(before, CpuTimes(total=500, idle=400, iowait=1, btime=100, count=1)) is None


def test_stat_old_kernel_and_garbage() -> None:
    old = parse_stat("cpu 10 0 10 80\n")
    assert old == CpuTimes(total=100, idle=80, iowait=0, btime=None, count=0)
    assert parse_stat("") is None
    assert parse_stat("cpu a b c d\n") is None
    assert parse_stat("\xff\xfe garbage\ncpu 1 2\n") is None


# --- filesystems --------------------------------------------------------------------------------

DF = """Filesystem              1024-blocks     Used Available Capacity Mounted on
udev                        8124532        0   8124532       0% /dev
tmpfs                       1631844     1928   1629916       1% /run
/dev/nvme0n1p2            490617784 96154812 369467476      21% /
/dev/sdb1                 960302096 480151048 431297704     53% /mnt/my backup disk
//nas/share with space    100000000 25000000  75000000      25% /mnt/nas
overlay                    490617784 96154812 369467476      21% /var/lib/docker/overlay2/abc/merged
/dev/loop3                     56960    56960         0     100% /snap/core18/2812
/dev/sdc1                         0        0         0        - /mnt/empty
this line is garbage
/dev/sdd1                 1000        -1000      2000      -  /mnt/weird
"""

DFI = """Filesystem               Inodes   IUsed    IFree IUse% Mounted on
udev                    2031133     532  2030601    1% /dev
/dev/nvme0n1p2         31227904 1146032 30081872    4% /
/dev/sdb1              61046784      12 61046772    1% /mnt/my backup disk
//nas/share with space        -       -        -     - /mnt/nas
"""

MOUNTS = """/dev devtmpfs
/run tmpfs
/ ext4
/mnt/my\\040backup\\040disk ext4
/mnt/nas cifs
/var/lib/docker/overlay2/abc/merged overlay
/snap/core18/2812 squashfs
/mnt/empty ext4
"""


def test_df_rows_with_spaces_dashes_and_garbage() -> None:
    rows = {r["mount"]: r for r in parse_df(DF)}
    assert rows["/"]["size_bytes"] == 490617784 * 1024
    assert rows["/"]["used_bytes"] == 96154812 * 1024
    assert rows["/mnt/my backup disk"]["device"] == "/dev/sdb1"
    assert rows["/mnt/nas"]["device"] == "//nas/share with space"
    assert "/mnt/weird" not in rows  # negative used is not a df row
    assert len(rows) == 8


def test_df_block_size_from_header() -> None:
    text = "Filesystem 512-blocks Used Available Capacity Mounted on\n/dev/sda1 2000 1000 1000 50% /\n"
    assert parse_df(text)[0]["size_bytes"] == 2000 * 512


def test_df_other_locale_header_is_ignored() -> None:
    text = "Dateisystem 1K-Blöcke Benutzt Verfügbar Verw% Eingehängt auf\n/dev/sda1 100 50 50 50% /\n"
    assert parse_df(text) == [
        {"device": "/dev/sda1", "mount": "/", "size_bytes": 102400, "used_bytes": 51200, "avail_bytes": 51200}
    ]


def test_filesystems_skip_pseudo_and_empty() -> None:
    rows = filesystems(parse_df(DF), parse_df_inodes(DFI), parse_mounts(MOUNTS))
    by_mount = {r["mount"]: r for r in rows}
    assert sorted(by_mount) == ["/", "/mnt/my backup disk", "/mnt/nas"]
    root = by_mount["/"]
    assert root["fstype"] == "ext4"
    assert root["used_pct"] == pytest.approx(100 * 96154812 / (96154812 + 369467476), abs=0.01)
    assert root["inodes_used_pct"] == pytest.approx(100 * 1146032 / 31227904, abs=0.01)
    assert by_mount["/mnt/nas"]["inodes_used_pct"] is None
    assert by_mount["/mnt/nas"]["fstype"] == "cifs"


def test_filesystems_without_mount_types_use_device_names() -> None:
    rows = filesystems(parse_df(DF), {}, {})
    mounts = {r["mount"] for r in rows}
    assert "/dev" not in mounts and "/run" not in mounts
    assert "/var/lib/docker/overlay2/abc/merged" not in mounts
    assert "/" in mounts and all(r["fstype"] is None for r in rows)


HEADER = "Filesystem 1024-blocks Used Available Capacity Mounted on\n"


def test_filesystems_duplicate_mount_keeps_last() -> None:
    text = HEADER + "/dev/a 100 10 90 10% /x\n/dev/b 200 20 180 10% /x\n"
    rows = filesystems(parse_df(text), {}, {})
    assert rows == [
        {
            "mount": "/x",
            "device": "/dev/b",
            "fstype": None,
            "size_bytes": 204800,
            "used_bytes": 20480,
            "used_pct": 10.0,
            "inodes_used_pct": None,
        }
    ]


def test_filesystems_hostile_names_are_cleaned() -> None:
    text = HEADER + "/dev/\x1b[31ma 100 10 90 10% /m\x07nt\n"
    rows = filesystems(parse_df(text), {}, {})
    assert rows[0]["device"] == "/dev/a" and rows[0]["mount"] == "/mnt"


def test_giant_numbers_are_garbage_not_crashes() -> None:
    giant = "9" * 5000
    assert parse_loadavg(f"{giant} 1 1") is None
    assert parse_uptime(giant) is None
    assert parse_meminfo(f"MemTotal: {giant} kB\n") == {}
    assert parse_stat(f"cpu {giant} 1 1 1\n") is None
    assert parse_df(f"{HEADER}/dev/a {giant} 1 1 1% /\n") == []
    assert parse_df_inodes(f"{HEADER}/dev/a 10 {giant} 1 1% /\n") == {}
    assert split_sections(f"@@{NONCE}:df\nx\n@@{NONCE}:rc:{giant}\n".encode(), NONCE)["df"].rc is None


@pytest.mark.parametrize(
    "line",
    [
        "a" + " " * 260_000 + "1",
        "a " + "1 " * 130_000,
        "/dev/x " + "1 1 1 1% " * 28_000,
        ("x 1" + " " * 5) * 30_000,
        "x" * 262_144,
        "/dev/a 1 1 1 1% /" + " " * 8000 + "x",
    ],
)
def test_hostile_lines_parse_in_linear_time(line: str) -> None:
    start = time.perf_counter()
    parse_df(line)
    parse_df_inodes(line)
    parse_failed_units(line)
    parse_meminfo(line)
    parse_mounts(line)
    clean_text(line.encode(), 256 * 1024)
    split_sections(line.encode(), NONCE)
    assert time.perf_counter() - start < 2.0


def test_df_garbage() -> None:
    assert parse_df("") == []
    assert parse_df("\x00\xff" * 100) == []
    assert parse_df_inodes("df: /proc/sys/fs/binfmt_misc: Permission denied\n") == {}


# --- systemd ------------------------------------------------------------------------------------


def test_failed_units() -> None:
    text = (
        "ssh.service     loaded failed failed OpenBSD Secure Shell server\n"
        "● nginx.service loaded failed failed A high performance web server\n"
        "\n"
        "logrotate.timer loaded failed failed\n"
        "garbage\n"
        "0 loaded units listed.\n"
    )
    units = parse_failed_units(text)
    assert [u["unit"] for u in units] == ["ssh.service", "nginx.service", "logrotate.timer"]
    assert units[0] == {
        "unit": "ssh.service",
        "load": "loaded",
        "active": "failed",
        "sub": "failed",
        "description": "OpenBSD Secure Shell server",
    }
    assert units[2]["description"] == ""
    assert parse_failed_units("") == []


# --- the script and its markers -----------------------------------------------------------------

NONCE = "0123456789abcdef"


def _out(*parts: tuple[str, bytes, int | None]) -> bytes:
    chunks = []
    for name, body, rc in parts:
        chunks.append(f"@@{NONCE}:{name}\n".encode() + body)
        if rc is not None:
            chunks.append(f"\n@@{NONCE}:rc:{rc}\n".encode())
    return b"".join(chunks)


def test_split_sections() -> None:
    out = _out(("hostname", b"web1\n", 0), ("uname", b"no newline", 0), ("systemd", b"", 127))
    sections = split_sections(out, NONCE)
    assert sections["hostname"] == Section(0, "web1")
    assert sections["uname"] == Section(0, "no newline")
    assert sections["systemd"] == Section(127, "")
    assert usable(sections["systemd"]) is None
    assert usable(sections.get("df")) is None
    assert usable(sections["hostname"]) == "web1"


def test_split_sections_cut_off_and_forged_markers() -> None:
    forged = b"@@deadbeefdeadbeef:rc:0\n@@deadbeefdeadbeef:df\n/dev/evil 1 1 0 100% /\n"
    out = _out(("hostname", forged + b"\xff\xfe", 0), ("df", b"line1\nline2\npartial li", None))
    sections = split_sections(out, NONCE)
    assert "deadbeefdeadbeef" in sections["hostname"].text
    assert "\ufffd" in sections["hostname"].text
    assert sections["df"] == Section(None, "line1\nline2")
    assert usable(sections["df"]) is None
    assert split_sections(b"", NONCE) == {}
    assert split_sections(b"\x00" * 1000, NONCE) == {}


def test_build_script_is_a_fixed_literal() -> None:
    script = build_script(NONCE)
    assert script.startswith("exec env LC_ALL=C sh -c '")
    assert script.count("'") == 2  # one quoted argument: nothing can break out
    assert "df -P;" in script and "df -Pi;" in script
    with pytest.raises(ValueError):
        build_script("x'; rm -rf /; '")


def test_mounts_unescape() -> None:
    assert parse_mounts("/a\\040b ext4\n/c\\011d xfs\nbad\n") == {"/a b": "ext4", "/c\td": "xfs"}


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
