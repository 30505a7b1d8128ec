"""Filesystem parsers of the SSH collector (df, df -i, /proc/mounts), fed real and odd inputs."""

from __future__ import annotations

import pytest

from agents.ssh_parsers import (
    filesystems,
    parse_df,
    parse_df_inodes,
    parse_mounts,
)

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


def test_df_garbage() -> None:
    assert parse_df("") == []
    assert parse_df("\x00\xff" * 100) == []
    assert parse_df_inodes("df: /proc/sys/fs/binfmt_misc: Permission denied\n") == {}
