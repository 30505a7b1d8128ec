"""Target policy: every refusal case, written out as a table, plus what must stay allowed."""

from __future__ import annotations

import ipaddress

import pytest

from agents.safety import (
    UnsafeTarget,
    check_address,
    check_target,
    check_target_async,
    normalise_ip,
    parse_ipv4_loose,
    parse_target,
)

# (target, reason fragment) — refused with the default policy, without DNS.
REFUSED = [
    ("file:///etc/passwd", "scheme 'file'"),
    ("FILE:///etc/passwd", "scheme 'file'"),
    ("gopher://127.0.0.1:70/_GET%20/", "scheme 'gopher'"),
    ("ftp://example.com/", "scheme 'ftp'"),
    ("dict://127.0.0.1:11211/stat", "scheme 'dict'"),
    ("javascript:alert(1)", "scheme 'javascript'"),
    ("data:text/html,<script>alert(1)</script>", "scheme 'data'"),
    ("http:evil.example", "no '//'"),
    ("http:/evil.example", "no '//'"),
    ("http://user:pass@example.com/", "user information"),
    ("http://127.0.0.1@169.254.169.254/", "user information"),
    ("http://169.254.169.254#@example.com/", "metadata"),
    ("http://example.com\\@169.254.169.254/", "backslash"),
    ("http://exa\nmple.com/", "control characters"),
    ("http://exa mple.com/", "spaces"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://169.254.170.2/v2/credentials", "metadata"),
    ("http://100.100.100.200/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata host name"),
    ("http://METADATA.Google.Internal./", "metadata host name"),
    ("http://metadata.goog/", "metadata host name"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://2852039166/", "metadata"),
    ("http://0xA9FEA9FE/", "metadata"),
    ("http://0xa9.0xfe.0xa9.0xfe/", "metadata"),
    ("http://0251.0376.0251.0376/", "metadata"),
    ("http://169.254.43518/", "metadata"),
    ("http://169.16689662/", "metadata"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[::ffff:a9fe:a9fe]/", "metadata"),
    ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),
    ("http://[2002:a9fe:a9fe::1]/", "metadata"),
    ("http://[::169.254.169.254]/", "metadata"),
    ("http://\u2460\u2465\u2468.\u2461\u2464\u2463.\u2460\u2465\u2468.\u2461\u2464\u2463/", "metadata"),
    ("http://0.0.0.0:8080/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://0.1.2.3/", "reserved"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://255.255.255.255/", "reserved"),
    ("http://240.0.0.1/", "reserved"),
    ("http:///path", "empty host"),
    ("http://exa%6dple.com/", "percent-encoded"),
    ("http://example.com:99999/", "Port out of range"),
    ("http://example.com:0/", "port 0 out of range"),
    ("", "empty target"),
    ("   ", "empty target"),
    ("http://" + "a" * 5000 + ".com/", "longer than"),
    ("169.254.169.254", "metadata"),
    ("[fe80::1]:80", "link-local"),
    ("fe80::1", "link-local"),
    ("2852039166", "metadata"),
    ("metadata.google.internal:80", "metadata host name"),
    ("user@127.0.0.1", "'@'"),
    ("127.0.0.1/path", "'/'"),
    ("localhost:http", "scheme 'localhost'"),
]


@pytest.mark.parametrize(("target", "reason"), REFUSED)
def test_refused(target: str, reason: str) -> None:
    with pytest.raises(UnsafeTarget) as info:
        check_target(target, resolve=False)
    assert reason in str(info.value)


# (target, allow_private, allow_link_local) — allowed without DNS.
ALLOWED = [
    ("http://127.0.0.1:8080/x?y=1", True, False),
    ("https://192.0.2.10/", True, False),
    ("http://[::1]:80/", True, False),
    ("http://10.0.0.1/", True, False),
    ("http://[fd12:3456::1]/", True, False),
    ("10.1.2.3", True, False),
    ("[::1]:8443", True, False),
    ("::1", True, False),
    ("HTTPS://Example.COM./path", True, False),
    ("http://8.8.8.8/", False, False),
    ("http://[2606:4700::1111]/", False, False),
    ("http://169.254.169.254/latest/meta-data/", True, True),
    ("http://169.254.10.1/", True, True),
    ("http://[fe80::1%25eth0]/", True, True),
]


@pytest.mark.parametrize(("target", "allow_private", "allow_link_local"), ALLOWED)
def test_allowed(target: str, allow_private: bool, allow_link_local: bool) -> None:
    check_target(target, allow_private=allow_private, allow_link_local=allow_link_local, resolve=False)


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[fc00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
        "http://0x7f.1/",
    ],
)
def test_private_refused_when_not_allowed(target: str) -> None:
    with pytest.raises(UnsafeTarget, match=r"non-public|private"):
        check_target(target, allow_private=False, resolve=False)


def test_metadata_needs_link_local_even_with_private_allowed() -> None:
    with pytest.raises(UnsafeTarget, match="metadata"):
        check_target("http://100.100.100.200/", allow_private=True)
    check_target("http://100.100.100.200/", allow_link_local=True)


def test_custom_schemes_for_webhooks() -> None:
    check_target("https://127.0.0.1/hook", allowed_schemes=("https",))
    with pytest.raises(UnsafeTarget, match="scheme 'http'"):
        check_target("http://127.0.0.1/hook", allowed_schemes=("https",))


def test_checks_every_resolved_address() -> None:
    # localhost resolves (from /etc/hosts, no network) to loopback only: refused when private is off.
    check_target("http://localhost:8080/")
    with pytest.raises(UnsafeTarget, match="non-public"):
        check_target("http://localhost:8080/", allow_private=False)


async def test_async_variant_returns_checked_addresses() -> None:
    addresses = await check_target_async("http://localhost/")
    assert addresses and all(a.is_loopback for a in addresses)
    with pytest.raises(UnsafeTarget, match="non-public"):
        await check_target_async("localhost", allow_private=False)
    with pytest.raises(UnsafeTarget, match="metadata"):
        await check_target_async("http://0xA9FEA9FE/")


def test_unresolvable_name_is_refused() -> None:
    with pytest.raises(UnsafeTarget, match="cannot resolve"):
        check_target("http://does-not-exist.invalid/")


def test_unsafe_target_is_a_value_error() -> None:
    assert issubclass(UnsafeTarget, ValueError)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2852039166", "169.254.169.254"),
        ("0xA9FEA9FE", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("169.16689662", "169.254.169.254"),
        ("127.1", "127.0.0.1"),
        ("1.2.3.4.", "1.2.3.4"),
        ("0", "0.0.0.0"),
        ("08", None),
        ("0x", None),
        ("1.2.3.4.5", None),
        ("256.1.1.1", None),
        ("1.2.3.256", None),
        ("4294967296", None),
        ("example.com", None),
        ("1.2.3.4 junk", None),
        ("", None),
    ],
)
def test_loose_ipv4_forms(text: str, expected: str | None) -> None:
    result = parse_ipv4_loose(text)
    assert (str(result) if result is not None else None) == expected


def test_normalise_ip_keeps_zone_but_policy_ignores_it() -> None:
    scoped = normalise_ip("[fe80::1%25eth0]")
    assert isinstance(scoped, ipaddress.IPv6Address) and scoped.scope_id == "eth0"
    with pytest.raises(UnsafeTarget, match="metadata"):
        check_address("fd00:ec2::254%eth0")


def test_parse_target_normalises() -> None:
    parsed = parse_target("HTTP://0x7F000001:8080/x")
    assert (parsed.scheme, parsed.host, parsed.port) == ("http", "127.0.0.1", 8080)
    bare = parse_target("[::1]:161")
    assert (bare.scheme, bare.host, bare.port) == (None, "::1", 161)
