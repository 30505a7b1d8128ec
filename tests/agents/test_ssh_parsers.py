"""Pure parsers of the SSH collector, fed real and odd inputs."""

from __future__ import annotations

import time

import pytest

from agents.ssh_parsers import (
    CpuTimes,
    Section,
    build_script,
    clean_text,
    cpu_percent,
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


# --- hostile input to every parser ---------------------------------------------------------------

HEADER = "Filesystem 1024-blocks Used Available Capacity Mounted on\n"


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
