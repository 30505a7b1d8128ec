"""Config loading: one test per kind of error, each naming its file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.config.inventory import (
    HHMM_RE,
    KIND_RE,
    LOWER_NAME_RE,
    NAME_RE,
    PATTERN_WORDS,
    SSH_USER_RE,
    TAG_RE,
)
from server.config.loader import load_config
from tests.server.config_helpers import assert_reported, problems_of, write

# ---------------------------------------------------------------- one test per kind of error


@pytest.mark.parametrize(
    ("text", "line", "fragments"),
    [
        ("devices: []\nnotakey: 1\n", 2, ("unknown key 'notakey'", "allowed: devices, include, settings")),
        ("settings:\n  port: 8080\n  prot: 1\n", 3, ("settings.prot", "unknown key")),
        ("devices:\n  - name: a\n    address: 192.0.2.1\n    adress: x\n", 4, ("devices.0.adress", "unknown key")),
        (
            "devices:\n  - name: a\n    address: 192.0.2.1\n    snmp:\n      community: c\n      comunity: x\n",
            6,
            ("devices.0.snmp.comunity", "unknown key"),
        ),
        (
            "devices:\n  - name: a\n    address: 192.0.2.1\n    checks:\n      - type: ping\n        cnt: 3\n",
            6,
            ("devices.0.checks.0.cnt", "unknown key"),
        ),
    ],
    ids=["top-level", "settings", "device", "snmp", "check"],
)
def test_unknown_keys_are_reported_where_they_are(
    tmp_path: Path, text: str, line: int, fragments: tuple[str, ...]
) -> None:
    path = write(tmp_path, "c.yaml", text)
    assert_reported(problems_of(path), path, line, *fragments)


def test_duplicate_device_names_name_both_locations(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.yaml",
        "devices:\n"
        "  - name: sw1\n"
        "    address: 192.0.2.1\n"
        "  - name: sw2\n"
        "    address: 192.0.2.2\n"
        "  - name: sw1\n"
        "    address: 192.0.2.3\n",
    )
    assert_reported(problems_of(path), path, 6, "duplicate device name 'sw1'", f"first at {path}:2")


def test_duplicate_device_names_across_included_files(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yaml", "include: [inv.yaml]\ndevices:\n  - {name: sw1, address: 192.0.2.1}\n")
    inv = write(tmp_path, "inv.yaml", "devices:\n  - {name: other, address: 192.0.2.9}\n  - {name: sw1, address: 192.0.2.2}\n")
    assert_reported(problems_of(main), inv, 3, "duplicate device name 'sw1'", f"first at {main}:3")


@pytest.mark.parametrize(
    "address",
    ["http://192.0.2.1/", "192.0.2", "256.1.1.1", "host name", "-bad.example", "bad-.example", "a..b", "", "x" * 254,
     "host;rm -rf /", "host/path", "192.0.2.1:161"],
)
def test_bad_addresses_are_refused(tmp_path: Path, address: str) -> None:
    path = write(tmp_path, "c.yaml", f"devices:\n  - name: a\n    address: {address!r}\n")
    assert_reported(problems_of(path), path, 3, "devices.0.address")


@pytest.mark.parametrize(
    ("address", "stored"),
    [("192.0.2.1", "192.0.2.1"), ("2001:DB8::1", "2001:db8::1"), ("Web-01.Example.net", "web-01.example.net"),
     ("localhost", "localhost"), ("a.example.", "a.example")],
)
def test_good_addresses_are_normalised(tmp_path: Path, address: str, stored: str) -> None:
    path = write(tmp_path, "c.yaml", f"devices:\n  - name: a\n    address: {address!r}\n")
    assert load_config(path).devices[0].address == stored


@pytest.mark.parametrize(
    ("device", "line", "fragments"),
    [
        ("    interval: 0\n", 4, ("devices.0.interval", "greater than or equal to 5")),
        ("    snmp: {version: 2c}\n", 4, ("devices.0.snmp", "SNMP v2c needs a community")),
        ("    snmp:\n      version: 1\n      port: 161\n", 4, ("devices.0.snmp", "SNMP v1 needs a community")),
        (
            "    snmp:\n      version: 3\n      user: mon\n      auth_protocol: sha256\n      auth_key: short\n",
            4,
            ("devices.0.snmp", "at least 8 characters"),
        ),
        (
            "    snmp:\n      version: 3\n      user: mon\n      auth_protocol: sha\n      auth_key: long-enough\n"
            "      priv_protocol: aes128\n      priv_key: '1234567'\n",
            4,
            ("devices.0.snmp", "at least 8 characters"),
        ),
        ("    snmp: {version: 3, user: mon, auth_key: long-enough}\n", 4, ("auth_protocol and auth_key go together",)),
        ("    snmp: {version: '5', community: c}\n", 4, ("devices.0.snmp.version",)),
        ("    ssh: {user: mon}\n", 4, ("devices.0.ssh", "needs a password or a key_file")),
        ("    ssh: {user: mon, password: pw, host_key: nonsense}\n", 4, ("devices.0.ssh.host_key",)),
        ("    checks:\n      - type: tcp\n", 5, ("devices.0.checks.0", "a tcp check needs a port")),
        ("    checks:\n      - {type: http, url: 'ftp://x'}\n", 5, ("url must start with http",)),
        ("    tags: [ok, 'bad tag']\n", 4, ("devices.0.tags.1", "a tag is 1–32 letters, digits")),
        ("    kind: Switch\n", 4, ("devices.0.kind", "a kind is 1–32 lowercase letters")),
        (
            "    checks:\n      - type: tcp\n        port: 22\n        interval: 5\n        timeout: 30\n",
            8,
            ("devices.0.checks.0.timeout", "timeout 30 s must be shorter than the interval (5 s)"),
        ),
        (
            "    interval: 10\n    checks:\n      - {type: ping, timeout: 10}\n",
            6,
            ("devices.0.checks.0.timeout", "timeout 10 s must be shorter than the interval (10 s)"),
        ),
        ("    interval: 10\n    snmp: {community: c, timeout: 20}\n", 5, ("devices.0.snmp.timeout", "(10 s)")),
        ("    parent: a\n", 2, ("a device cannot be its own parent",)),
    ],
    ids=["interval-0", "v2c-no-community", "v1-no-community", "v3-auth-key-short", "v3-priv-key-short",
         "v3-auth-without-protocol", "bad-version", "ssh-no-auth", "bad-host-key", "tcp-no-port", "http-bad-url",
         "bad-tag", "bad-kind", "check-timeout-over-interval", "check-timeout-equals-interval", "snmp-timeout", "own-parent"],
)
def test_device_value_errors_point_at_the_value(
    tmp_path: Path, device: str, line: int, fragments: tuple[str, ...]
) -> None:
    path = write(tmp_path, "c.yaml", "devices:\n  - name: a\n    address: 192.0.2.1\n" + device)
    assert_reported(problems_of(path), path, line, *fragments)


def test_bad_names_are_worded_not_shown_as_a_regex(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "devices:\n  - name: -a\n    address: 192.0.2.1\n")
    problems = problems_of(path)
    assert_reported(problems, path, 2, "devices.0.name: a name is 1–64 letters, digits, dot, dash or underscore")
    assert not any("should match pattern" in p for p in problems)


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (NAME_RE, ["a", "A" * 64, "9.x_y-z", "sw1.example"], ["", "a" * 65, "-a", ".a", "_a", "a b", "a:b", "a/b"]),
        (TAG_RE, ["a", "a" * 32, "site:3", "a.b_c-d"], ["", "a" * 33, "-a", ":a", "a b", "a/b"]),
        (KIND_RE, ["a", "a" * 32, "a-b_c9"], ["", "a" * 33, "A", "9a", "-a", "a.b"]),
        (LOWER_NAME_RE, ["a", "9" * 64, "a.b_c-d"], ["", "a" * 65, "A", "-a", "a b"]),
        (HHMM_RE, ["00:00", "23:59", "09:30"], ["24:00", "9:30", "12:60", "12-30"]),
        (SSH_USER_RE, ["mon", ".x", "_x", "a-b.c"], ["-x", "a b", "a/b", ""]),
    ],
)
def test_each_pattern_in_words_matches_its_pattern(pattern: str, good: list[str], bad: list[str]) -> None:
    """The words shown instead of a regex describe exactly these edges (lengths, first character, alphabet)."""
    assert pattern in PATTERN_WORDS
    assert all(re.fullmatch(pattern, text) for text in good), good
    assert not any(re.fullmatch(pattern, text) for text in bad), bad


def test_bad_settings_values_point_at_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "settings:\n  host: 0.0.0.0\n  port: 0\n  log_level: chatty\n  config: /x.yaml\n")
    problems = problems_of(path)
    assert_reported(problems, path, 3, "settings.port")
    assert_reported(problems, path, 4, "settings.log_level", "DEBUG, INFO, WARNING, ERROR")
    assert_reported(problems, path, 5, "settings.config cannot be set in a file")


def test_a_missing_parent_is_reported_at_the_child(tmp_path: Path) -> None:
    path = write(
        tmp_path, "c.yaml", "devices:\n  - {name: a, address: 192.0.2.1}\n  - {name: b, address: 192.0.2.2, parent: nosuch}\n"
    )
    assert_reported(problems_of(path), path, 3, "parent 'nosuch' is not a device")


def test_a_broken_rules_file_is_reported_like_the_config(tmp_path: Path) -> None:
    """check-config (and serve, before it starts) names the rules file's lines, as for actions and channels."""
    rules = write(tmp_path, "rules.yaml", "rules:\n  - name: r\n    expr: 'x === 1'\n    severity: apocalyptic\n")
    path = write(tmp_path, "c.yaml", "settings:\n  rules_file: rules.yaml\n")
    problems = problems_of(path)
    assert_reported(problems, rules.resolve(), 3, "rules.0.expr")
    assert_reported(problems, rules.resolve(), 4, "rules.0.severity")
    missing = write(tmp_path, "m.yaml", "settings:\n  rules_file: gone.yaml\n")
    assert any("gone.yaml" in p and "file not found" in p for p in problems_of(missing))


def test_a_parent_loop_names_every_member(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.yaml",
        "devices:\n"
        "  - {name: a, address: 192.0.2.1, parent: c}\n"
        "  - {name: b, address: 192.0.2.2, parent: a}\n"
        "  - {name: c, address: 192.0.2.3, parent: b}\n"
        "  - {name: d, address: 192.0.2.4, parent: a}\n",
    )
    problems = problems_of(path)
    for line, name in ((2, "a"), (3, "b"), (4, "c")):
        assert_reported(problems, path, line, f"device {name!r} is part of a parent loop")
    assert not any("'d'" in p for p in problems), "d hangs off the loop but is not part of it"


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "devices:\n  - name: a\n    address: 192.0.2.1\n    name: b\n")
    assert_reported(problems_of(path), path, 4, "duplicate key 'name'")


def test_duplicate_top_level_keys_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "devices: []\nsettings: {}\ndevices: []\n")
    assert_reported(problems_of(path), path, 3, "duplicate key 'devices'")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("devices:\n  - name: a\n    address: [192.0.2.1\n", 4),
        ("devices:\n  - name: a\n   address: 192.0.2.1\n", 3),
        ("settings:\n\tport: 1\n", 2),
        ("devices:\n  - name: 'a\n", 3),
    ],
    ids=["unclosed-flow", "bad-indent", "tab", "unclosed-quote"],
)
def test_invalid_yaml_syntax_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, "c.yaml", text)
    problems = problems_of(path)
    assert len(problems) == 1
    assert re.match(rf"{re.escape(str(path))}:{line}: \S", problems[0]), problems


def test_unsafe_yaml_tags_are_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = write(tmp_path, "c.yaml", f"devices:\n  - !!python/object/apply:os.system ['touch {marker}']\n")
    assert_reported(problems_of(path), path, 2, "python/object/apply")
    assert not marker.exists()


def test_a_non_utf8_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"devices:\n  - name: a\n    address: 192.0.2.1\n    tags: [caf\xe9]\n")
    assert_reported(problems_of(path), path, 4, "not UTF-8")


def test_a_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "- name: a\n  address: 192.0.2.1\n")
    assert_reported(problems_of(path), path, 1, "must be a mapping")


def test_devices_must_be_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "settings: {}\ndevices:\n  name: a\n")
    assert_reported(problems_of(path), path, 2, "devices must be a list")


def test_a_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert problems_of(path) == [f"{path}: file not found"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.yaml",
        "devices:\n"
        "  - {name: a, address: 'not an address'}\n"
        "  - {name: b, address: 192.0.2.2, interval: 1}\n"
        "  - {name: c, address: 192.0.2.3, parent: ghost}\n",
    )
    problems = problems_of(path)
    assert_reported(problems, path, 2, "devices.0.address")
    assert_reported(problems, path, 3, "devices.1.interval")
    assert_reported(problems, path, 4, "parent 'ghost'")
