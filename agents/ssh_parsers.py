"""Pure parsers for the SSH collector's fixed command set, and the text sanitizer for device output."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

TEXT_MAX = 1024  # facts and table cells
OUTPUT_MAX = 4096  # custom command output kept in a row

# The fixed command set, run as one script; order puts the small, vital parts first so a
# truncated or timed-out run still yields them. Each is a fixed literal: nothing is interpolated.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("hostname", "hostname"),
    ("uname", "uname -sr"),
    ("uptime", "cat /proc/uptime"),
    ("loadavg", "cat /proc/loadavg"),
    ("meminfo", "cat /proc/meminfo"),
    ("stat", "cat /proc/stat"),
    ("systemd", "systemctl --failed --plain --no-legend --no-pager"),
    ("mounts", 'cut -d" " -f2,3 /proc/mounts'),
    ("df", "df -P"),
    ("dfi", "df -Pi"),
)

# Filesystems that say nothing about disk space (memory-backed, virtual, image layers, or
# read-only media that is always full).
PSEUDO_FS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devfs", "devpts",
        "devtmpfs", "efivarfs", "fdescfs", "fuse.gvfsd-fuse", "fuse.lxcfs", "fuse.portal", "fusectl",
        "hugetlbfs", "mqueue", "none", "nsfs", "nullfs", "overlay", "proc", "procfs", "pstore",
        "ramfs", "rpc_pipefs", "securityfs", "selinuxfs", "shm", "squashfs", "sysfs", "tmpfs",
        "tracefs", "aufs", "linprocfs", "linsysfs", "iso9660", "udf",
    }
)  # fmt: skip
_PSEUDO_DEVICES = frozenset({"tmpfs", "devtmpfs", "overlay", "none", "udev", "shm", "proc", "sysfs"})

_ESCAPES = re.compile(
    r"""
      \x1b\[[0-?]*[ -/]*[@-~]?                   # CSI ... final byte
    | \x1b[\]PX^_][^\x07\x1b\n]*(?:\x07|\x1b\\)? # OSC, DCS, SOS, PM, APC ... BEL or ST
    | \x1b[ -/]*[0-~]?                           # other ESC sequences (and a lone ESC)
    """,
    re.VERBOSE,
)
# C0 controls except \t \n, DEL, C1 controls, and bidi overrides that reorder what a reader sees.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def clean_text(raw: bytes | str, limit: int = TEXT_MAX) -> str:
    """Device bytes as safe display text: UTF-8, no terminal escapes or controls, \\r made visible, capped."""
    # Bound the work: a UTF-8 character is at most four bytes, and escapes only shrink the text.
    head = raw[: limit * 8 + 64]
    text = head.decode("utf-8", errors="replace") if isinstance(head, bytes) else head
    text = _ESCAPES.sub("", text)
    # A bare \r would let later text overwrite earlier text on a terminal: show it as a new line.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", text)[:limit]


def _float(token: str) -> float | None:
    # Length-capped: a 5,000-digit "number" is an overflow to inf, not a measurement.
    if len(token) > 40 or not _NUMBER.fullmatch(token):
        return None
    value = float(token)
    return value if math.isfinite(value) else None


def _int(token: str) -> int | None:
    # Python refuses int() of over 4,300 digits with ValueError; no real counter has over 20.
    return int(token) if len(token) <= 20 and token.isascii() and token.isdigit() else None


def first_line(text: str) -> str:
    """The first non-empty line, stripped."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def parse_loadavg(text: str) -> tuple[float, float, float] | None:
    """The three load averages of /proc/loadavg, or None if it does not look like one."""
    parts = text.split()
    values = [_float(p) for p in parts[:3]]
    if len(values) < 3 or any(v is None or v < 0 for v in values):
        return None
    return (values[0] or 0.0, values[1] or 0.0, values[2] or 0.0)


def parse_uptime(text: str) -> float | None:
    """Seconds since boot from /proc/uptime."""
    parts = text.split()
    value = _float(parts[0]) if parts else None
    return value if value is not None and value >= 0 else None


def parse_uname(text: str) -> tuple[str, str] | None:
    """(os, kernel) from `uname -sr`."""
    parts = first_line(text).split(None, 1)
    if not parts:
        return None
    return parts[0], parts[1] if len(parts) > 1 else ""


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as {field: value}, kB values converted to bytes."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or (value := _int(parts[0])) is None:
            continue
        unit = parts[1].lower() if len(parts) > 1 else ""
        out[name.strip()] = value * 1024 if unit == "kb" else value
    return out


def memory_values(mem: dict[str, int]) -> dict[str, float]:
    """Memory and swap gauges; used = MemTotal - MemAvailable (estimated on old kernels)."""
    total = mem.get("MemTotal")
    out: dict[str, float] = {}
    if total:
        available = mem.get("MemAvailable")
        if available is None:
            parts = ("MemFree", "Buffers", "Cached", "SReclaimable")
            available = sum(mem.get(k, 0) for k in parts)
        used = max(0, min(total, total - available))
        out |= {"mem_total_bytes": total, "mem_used_bytes": used, "mem_used_pct": 100.0 * used / total}
    if "SwapTotal" in mem:
        swap = mem["SwapTotal"]
        out["swap_total_bytes"] = swap
        if swap > 0:
            free = min(swap, mem.get("SwapFree", swap))
            out["swap_used_pct"] = 100.0 * (swap - free) / swap
    return out


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Aggregate CPU jiffies from /proc/stat, kept between polls to compute percentages."""

    total: int
    idle: int
    iowait: int
    btime: int | None
    count: int


def parse_stat(text: str) -> CpuTimes | None:
    """The aggregate `cpu` line (user..steal; guest is already in user), boot time and CPU count."""
    cpu: list[int] | None = None
    btime: int | None = None
    count = 0
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "cpu":
            values = [_int(p) for p in parts[1:9]]
            if len(values) >= 4 and all(v is not None for v in values):
                cpu = [v or 0 for v in values]
        elif parts[0].startswith("cpu") and parts[0][3:].isdigit():
            count += 1
        elif parts[0] == "btime" and len(parts) > 1:
            btime = _int(parts[1])
    if cpu is None:
        return None
    iowait = cpu[4] if len(cpu) > 4 else 0
    return CpuTimes(total=sum(cpu), idle=cpu[3] + iowait, iowait=iowait, btime=btime, count=count)


def cpu_percent(prev: CpuTimes | None, cur: CpuTimes) -> tuple[float, float] | None:
    """(busy %, iowait %) between two readings, or None after a reboot, counter reset or no time."""
    if prev is None or (prev.btime is not None and cur.btime is not None and prev.btime != cur.btime):
        return None
    total, idle, iowait = cur.total - prev.total, cur.idle - prev.idle, cur.iowait - prev.iowait
    if total <= 0 or idle < 0 or iowait < 0 or idle > total:
        return None
    return 100.0 * (total - idle) / total, 100.0 * min(iowait, total) / total


def _unescape_mount(path: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as \040 \011 \012 \134.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def parse_mounts(text: str) -> dict[str, str]:
    """{mount point: fstype} from `mountpoint fstype` lines (later mounts shadow earlier ones)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[_unescape_mount(parts[0])] = parts[1]
    return out


_TOKEN = re.compile(r"\S+")
_COUNT = re.compile(r"\d{1,20}|-")
_AVAIL = re.compile(r"-?\d{1,20}|-")
_PERCENT = re.compile(r"\d{1,3}%|-")
_LINE_MAX = 8192  # a mount point is at most PATH_MAX (4096) bytes


def _df_rows(text: str) -> list[tuple[str, int | None, int | None, int | None, str]]:
    """(device, size or inodes, used, available, mount) per line; device and mount may hold spaces.

    Scans tokens left to right for "count count avail percent /mount" (linear: a backtracking
    regex over a hostile line of spaces takes quadratic time).
    """
    rows = []
    for line in text.splitlines():
        if len(line) > _LINE_MAX:
            continue
        tokens = list(_TOKEN.finditer(line))
        for i in range(1, len(tokens) - 4):
            a, b, c, pct, mount = (t.group() for t in tokens[i : i + 5])
            numeric = _COUNT.fullmatch(a) and _COUNT.fullmatch(b) and _AVAIL.fullmatch(c)
            if numeric and _PERCENT.fullmatch(pct) and mount.startswith("/"):
                nums = [None if v == "-" else int(v) for v in (a, b, c)]
                device = line[: tokens[i].start()].rstrip()
                rows.append((device, nums[0], nums[1], nums[2], line[tokens[i + 4].start() :].rstrip()))
                break
    return rows


def parse_df(text: str) -> list[dict[str, Any]]:
    """`df -P` rows as {device, mount, size_bytes, used_bytes, avail_bytes}; block size from the header."""
    header = re.search(r"(\d+)-blocks", text[:512])
    block = int(header.group(1)) if header else 1024
    out = []
    for dev, size, used, avail, mount in _df_rows(text):
        if size is None or used is None:
            continue
        avail_bytes = None if avail is None else max(0, avail) * block
        row = {"device": dev, "mount": mount, "size_bytes": size * block, "used_bytes": used * block}
        out.append(row | {"avail_bytes": avail_bytes})
    return out


def parse_df_inodes(text: str) -> dict[str, float]:
    """{mount: inode use %} from `df -Pi`; filesystems without inode counts are left out."""
    out: dict[str, float] = {}
    for _dev, inodes, iused, _ifree, mount in _df_rows(text):
        if inodes and iused is not None:
            out[mount] = 100.0 * min(iused, inodes) / inodes
    return out


def filesystems(df: list[dict[str, Any]], inodes: dict[str, float], mounts: dict[str, str]) -> list[dict[str, Any]]:
    """Real filesystems (pseudo and empty ones skipped), one row per mount point, as table rows."""
    rows: dict[str, dict[str, Any]] = {}
    for r in df:
        mount, device = r["mount"], r["device"]
        fstype = mounts.get(mount)
        pseudo = fstype in PSEUDO_FS if fstype else device in _PSEUDO_DEVICES
        if pseudo or r["size_bytes"] <= 0:
            continue
        used, avail = r["used_bytes"], r["avail_bytes"]
        # df's Capacity: used of what non-root users can have (reserved blocks excluded).
        usable = used + avail if avail is not None and used + avail > 0 else r["size_bytes"]
        rows[mount] = {
            "mount": clean_text(mount),
            "device": clean_text(device),
            "fstype": clean_text(fstype) if fstype else None,
            "size_bytes": r["size_bytes"],
            "used_bytes": used,
            "used_pct": round(min(100.0, 100.0 * used / usable), 2),
            "inodes_used_pct": round(inodes[mount], 2) if mount in inodes else None,
        }
    return list(rows.values())


def parse_failed_units(text: str) -> list[dict[str, str]]:
    """`systemctl --failed --plain --no-legend` rows as {unit, load, active, sub, description}."""
    out = []
    for line in text.splitlines():
        # Older systemctl ignores --plain and prefixes a status bullet.
        parts = line.strip().lstrip("●*× ").split(None, 4)
        if len(parts) < 4 or "." not in parts[0]:
            continue
        parts += [""] * (5 - len(parts))
        keys = ("unit", "load", "active", "sub", "description")
        out.append({k: clean_text(v) for k, v in zip(keys, parts, strict=True)})
    return out


def build_script(nonce: str) -> str:
    """One sh line running every section with begin/status markers; nonce is our own random hex."""
    if not re.fullmatch(r"[0-9a-f]{8,64}", nonce):
        raise ValueError("nonce must be hex")
    mark = f"@@{nonce}:"
    steps = [f'printf "{mark}{name}\\n"; {cmd}; printf "\\n{mark}rc:%s\\n" "$?"' for name, cmd in SECTIONS]
    # The fixed commands run under sh with the C locale, whatever the login shell and its locale.
    return "exec env LC_ALL=C sh -c '" + "; ".join(s.replace("'", "'\\''") for s in steps) + "'"


@dataclass(frozen=True, slots=True)
class Section:
    """One section's output and exit status (None when the run was cut off inside it)."""

    rc: int | None
    text: str


def split_sections(stdout: bytes, nonce: str) -> dict[str, Section]:
    """Cut the script's output at its markers; a forged marker needs the nonce, which output cannot know."""
    begin, end = f"@@{nonce}:".encode(), f"@@{nonce}:rc:".encode()
    out: dict[str, Section] = {}
    name: str | None = None
    body: list[bytes] = []
    for line in stdout.split(b"\n"):
        if line.startswith(end) and name is not None:
            rc = _int(line[len(end) :].decode("ascii", "replace"))
            text = b"\n".join(body[:-1] if body and body[-1] == b"" else body)
            out[name] = Section(rc, text.decode("utf-8", "replace"))
            name, body = None, []
        elif line.startswith(begin) and not line.startswith(end):
            name, body = line[len(begin) :].decode("ascii", "replace"), []
        elif name is not None:
            body.append(line)
    if name is not None:
        # Cut off mid-section: keep only complete lines.
        out[name] = Section(None, b"\n".join(body[:-1]).decode("utf-8", "replace"))
    return out


def usable(section: Section | None) -> str | None:
    """A section's text if its command existed and finished; missing commands (126/127) give None."""
    if section is None or section.rc is None or section.rc in (126, 127):
        return None
    return section.text
