"""Discovery scope and rate: ranges are checked (a /0 or a typo is a clear error, wide ranges need confirmation),
addresses stay inside them, and the token bucket holds the rate (an injected clock, no sleeping)."""

from __future__ import annotations

import asyncio

import pytest

from agents.discovery_scope import NeedsConfirmation, RangeError, TokenBucket, addresses, in_scope, parse_ranges


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0.0.0.0/0", "/0 range is the whole Internet"),
        ("::/0", "/0 range"),
        ("10.0.0.0/33", "not a CIDR range"),
        ("192.0.2.0/24; rm -rf /", "not a CIDR range"),
        ("\x1b[31m10.0.0.0/8", "\\x1b"),
        ("2001:db8::/64", "wider than a /112"),
        ("167772161", "not a CIDR range"),
        ("0.0.0.1", "no device has"),
        ("239.1.1.0/24", "no device has"),
        ("ff02::1", "no device has"),
        ("::/64", "wider than a /112"),  # the width is the problem, not the unspecified address :: inside it
        ("::ffff:224.0.0.0/120", "write it as IPv4"),  # IPv4-mapped: sent as IPv4 multicast by a dual-stack socket
        ("::ffff:0.0.0.0/126", "write it as IPv4"),
        ("::ffff:255.255.255.255", "write it as IPv4"),
        ("::ffff:127.0.77.0/120", "127.0.77.0/24"),
    ],
)
def test_bad_ranges_are_clear_errors(text: str, fragment: str) -> None:
    with pytest.raises(RangeError) as err:
        parse_ranges([text])
    assert fragment in str(err.value)
    assert "\x1b" not in str(err.value)


def test_a_range_wider_than_a_slash_16_needs_confirmation() -> None:
    assert parse_ranges(["10.1.0.0/16"])[0].num_addresses == 65_536
    with pytest.raises(NeedsConfirmation, match="confirm"):
        parse_ranges(["10.0.0.0/15"])
    assert parse_ranges(["10.0.0.0/15"], confirm_large=True)[0].prefixlen == 15
    with pytest.raises(RangeError, match="more than 1,048,576"):
        parse_ranges(["10.0.0.0/8"], confirm_large=True)


def test_addresses_are_the_hosts_of_the_ranges_once_each() -> None:
    nets = parse_ranges(["127.0.77.0/30", "127.0.77.1", "127.0.77.0/31"])
    assert list(addresses(nets)) == ["127.0.77.1", "127.0.77.2", "127.0.77.0"]
    assert in_scope("127.0.77.2", nets) and not in_scope("127.0.78.1", nets) and not in_scope("not an ip", nets)


def test_the_bucket_holds_the_rate_and_counts_every_probe() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(rate=100, burst=10, clock=lambda: now[0], sleep=sleep)

    async def take(n: int) -> None:
        for _ in range(n):
            await bucket.take()

    asyncio.run(take(210))
    assert bucket.sent == 210
    assert len(slept) == 200  # the burst goes at once, then one wait per probe
    assert now[0] == pytest.approx(2.0)  # 200 probes beyond the burst at 100/s
