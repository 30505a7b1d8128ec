"""http collector against real HTTP and HTTPS servers on loopback: status, body, redirects, TLS, safety."""

from __future__ import annotations

import datetime as dt
import json
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from agents.base import CollectError, Reading, Target, Unreachable
from agents.net import HttpCollector
from agents.net_common import FACT_MAX_CHARS
from agents.net_http import MAX_BODY_BYTES, parse_expected_status
from tests.peers.http_servers import (
    HOSTILE_SERVER_HEADER,
    HttpPeer,
    HttpsPeer,
    closed_port,
    gzip_bomb,
    start_http_server,
    start_https_server,
)


def values(reading: Reading) -> dict[str, float]:
    return {s.metric: s.value for s in reading.samples}


@pytest.fixture(scope="module")
def http_peer() -> Iterator[HttpPeer]:
    peer = start_http_server()
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def https_peer() -> Iterator[HttpsPeer]:
    peer = start_https_server(days_valid=5)
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def expired_peer() -> Iterator[HttpsPeer]:
    peer = start_https_server(days_valid=-1)
    yield peer
    peer.stop()


@pytest.fixture
async def http() -> AsyncIterator[HttpCollector]:
    collector = HttpCollector()
    yield collector
    await collector.close()


async def fetch(collector: HttpCollector, url: str, **options: Any) -> Reading:
    return await collector.collect(Target("127.0.0.1", 0, timeout=10.0, options={"url": url} | options))


async def test_http_ok_with_body_match(http: HttpCollector, http_peer: HttpPeer) -> None:
    reading = await fetch(http, http_peer.base_url + "/ok", body_regex=r"pocketnoc-o[k]")
    v = values(reading)
    assert v["http_status"] == 200 and v["http_ok"] == 1 and v["http_body_match"] == 1
    assert 0 < v["http_latency_ms"] < 10000
    assert reading.facts["http_final_url"] == http_peer.base_url + "/ok"
    assert "http_error" not in reading.facts and "tls_cert_days_left" not in v


async def test_http_status_mismatch_is_reported_not_raised(http: HttpCollector, http_peer: HttpPeer) -> None:
    reading = await fetch(http, http_peer.base_url + "/status/503")
    assert values(reading)["http_status"] == 503 and values(reading)["http_ok"] == 0
    assert reading.facts["http_error"] == "status 503 not in expected 200-399"
    reading = await fetch(http, http_peer.base_url + "/status/503", expected_status=["200-299", 503])
    assert values(reading)["http_ok"] == 1


async def test_http_body_mismatch(http: HttpCollector, http_peer: HttpPeer) -> None:
    reading = await fetch(http, http_peer.base_url + "/ok", body_regex="^maintenance$")
    v = values(reading)
    assert v["http_status"] == 200 and v["http_body_match"] == 0 and v["http_ok"] == 0
    assert "body does not match" in reading.facts["http_error"]


async def test_http_methods_and_headers(http: HttpCollector, http_peer: HttpPeer) -> None:
    head = await fetch(http, http_peer.base_url + "/ok", method="head")
    assert values(head)["http_status"] == 200
    post = await fetch(http, http_peer.base_url + "/ok", method="POST", body_regex="pocketnoc-ok")
    assert values(post)["http_body_match"] == 1
    url = http_peer.base_url + "/echo-headers"
    echoed = await fetch(http, url, headers={"X-Pocketnoc": "yes"}, body_regex="X-Pocketnoc: yes")
    assert values(echoed)["http_body_match"] == 1


async def test_http_checks_keep_no_cookies(http: HttpCollector, http_peer: HttpPeer) -> None:
    url = http_peer.base_url + "/set-cookie"
    followed = await fetch(http, url, follow_redirects=True, body_regex="session=secret")
    assert values(followed)["http_body_match"] == 0
    later = await fetch(http, http_peer.base_url + "/echo-headers", body_regex="(?i)cookie")
    assert values(later)["http_body_match"] == 0


async def test_http_header_option_overrides_defaults(http: HttpCollector, http_peer: HttpPeer) -> None:
    url = http_peer.base_url + "/echo-headers"
    reading = await fetch(
        http, url, headers={"user-agent": "probe/1"}, body_regex="(?im)^user-agent: probe/1$"
    )
    assert values(reading)["http_body_match"] == 1
    default_too = await fetch(http, url, headers={"user-agent": "probe/1"}, body_regex="(?i)pocketnoc")
    assert values(default_too)["http_body_match"] == 0


async def test_http_redirect_not_followed_by_default(http: HttpCollector, http_peer: HttpPeer) -> None:
    reading = await fetch(http, http_peer.base_url + "/redirect")
    assert values(reading)["http_status"] == 302 and values(reading)["http_ok"] == 1
    assert reading.facts["http_location"] == "/ok"
    assert reading.facts["http_final_url"] == http_peer.base_url + "/redirect"
    strict = await fetch(http, http_peer.base_url + "/redirect", expected_status=200)
    assert values(strict)["http_ok"] == 0


async def test_http_redirect_followed(http: HttpCollector, http_peer: HttpPeer) -> None:
    url = http_peer.base_url + "/redirect"
    reading = await fetch(http, url, follow_redirects=True, body_regex="pocketnoc-ok")
    assert values(reading)["http_status"] == 200 and values(reading)["http_body_match"] == 1
    assert reading.facts["http_final_url"] == http_peer.base_url + "/ok"
    assert reading.facts["http_redirects"] == 1


async def test_http_redirect_loop_is_an_error(http: HttpCollector, http_peer: HttpPeer) -> None:
    with pytest.raises(CollectError, match="more than 5 redirects") as info:
        await fetch(http, http_peer.base_url + "/redirect-loop", follow_redirects="true")
    assert not isinstance(info.value, Unreachable)


async def test_http_timeout_is_bounded(http: HttpCollector, http_peer: HttpPeer) -> None:
    started = time.monotonic()
    with pytest.raises(Unreachable, match="within 1 s"):
        await fetch(http, http_peer.base_url + "/slow", timeout=1)
    assert time.monotonic() - started < 10


async def test_http_big_body_reads_only_one_megabyte(http: HttpCollector, http_peer: HttpPeer) -> None:
    tracemalloc.start()
    try:
        started = time.monotonic()
        reading = await fetch(http, http_peer.base_url + "/big", body_regex="never-there")
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert values(reading)["http_body_match"] == 0
    assert f"first {MAX_BODY_BYTES} bytes" in reading.facts["http_error"]
    assert elapsed < 30
    assert peak < 12 * MAX_BODY_BYTES  # the 50 MB body never sits in memory


async def test_http_gzip_bomb_is_capped(http: HttpCollector, http_peer: HttpPeer) -> None:
    assert len(gzip_bomb()) < 100_000  # built (and cached) by the server before memory is traced
    tracemalloc.start()
    try:
        reading = await fetch(http, http_peer.base_url + "/gzip-bomb", body_regex="never-there")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"first {MAX_BODY_BYTES} bytes" in reading.facts["http_error"]
    assert peak < 12 * MAX_BODY_BYTES


async def test_http_hostile_body_and_header(http: HttpCollector, http_peer: HttpPeer) -> None:
    reading = await fetch(http, http_peer.base_url + "/hostile", body_regex="pocketnoc-hostile")
    assert values(reading)["http_body_match"] == 1
    server = reading.facts["http_server"]
    assert server.startswith("<script>") and "\ufffd" in server  # kept as text: escaping is the UI's job
    assert not any(ch in server for ch in "\x00\x1b\r\n")
    assert len(server) <= FACT_MAX_CHARS and server != HOSTILE_SERVER_HEADER.decode("latin-1")
    json.dumps(reading.facts)


async def test_http_illegal_header_is_a_collect_error(http: HttpCollector, http_peer: HttpPeer) -> None:
    with pytest.raises(CollectError) as info:
        await fetch(http, http_peer.base_url + "/hostile-header")
    assert not isinstance(info.value, Unreachable) and "\x1b" not in str(info.value)


async def test_http_connection_refused_is_unreachable(http: HttpCollector) -> None:
    with pytest.raises(Unreachable, match="refused"):
        await fetch(http, f"http://127.0.0.1:{closed_port()}/ok")


async def test_http_default_url_from_target(http: HttpCollector, http_peer: HttpPeer) -> None:
    port = int(http_peer.base_url.rsplit(":", 1)[1])
    reading = await http.collect(Target("127.0.0.1", port))
    assert values(reading)["http_status"] == 404
    assert reading.facts["http_final_url"] == f"http://127.0.0.1:{port}/"


async def test_http_bad_options(http: HttpCollector, http_peer: HttpPeer) -> None:
    url = http_peer.base_url + "/ok"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"method": "TRACE"}, "method"),
        ({"expected_status": "abc"}, "expected_status"),
        ({"expected_status": 700}, "outside 100-599"),
        ({"body_regex": "("}, "not a valid regular expression"),
        ({"body_regex": "x", "method": "HEAD"}, "not HEAD"),
        ({"headers": ["X: y"]}, "headers"),
        ({"follow_redirects": "maybe"}, "true or false"),
        ({"timeout": "soon"}, "number"),
    ]
    for options, message in cases:
        with pytest.raises(CollectError, match=message):
            await fetch(http, url, **options)


def test_expected_status_forms() -> None:
    assert parse_expected_status(None) == ((200, 399),)
    assert parse_expected_status(204) == ((204, 204),)
    assert parse_expected_status("200-299, 301") == ((200, 299), (301, 301))
    assert parse_expected_status([200, "401-403"]) == ((200, 200), (401, 403))


async def test_http_client_reusable_after_close(http: HttpCollector, http_peer: HttpPeer) -> None:
    await fetch(http, http_peer.base_url + "/ok")
    await http.close()
    assert values(await fetch(http, http_peer.base_url + "/ok"))["http_ok"] == 1


# ---------------------------------------------------------------- TLS


async def test_tls_days_left_without_verification(http: HttpCollector, https_peer: HttpsPeer) -> None:
    reading = await fetch(http, https_peer.base_url + "/ok", verify_tls=False)
    days = values(reading)["tls_cert_days_left"]
    assert 4.9 < days <= 5.0
    assert "CN=localhost" in reading.facts["tls_subject"] and "CN=localhost" in reading.facts["tls_issuer"]
    not_after = dt.datetime.fromisoformat(reading.facts["tls_not_after"])
    assert abs((not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400 - days) < 0.01


async def test_tls_days_left_with_verification_by_ca_file(http: HttpCollector, https_peer: HttpsPeer) -> None:
    for url in (https_peer.base_url, https_peer.base_url.replace("127.0.0.1", "localhost")):
        reading = await fetch(http, url + "/ok", ca_file=https_peer.cert_pem_path, body_regex="pocketnoc-ok")
        assert values(reading)["http_ok"] == 1
        assert 4.9 < values(reading)["tls_cert_days_left"] <= 5.0


async def test_tls_untrusted_certificate_is_collect_error(http: HttpCollector, https_peer: HttpsPeer) -> None:
    with pytest.raises(CollectError, match="TLS certificate verification failed: self-signed") as info:
        await fetch(http, https_peer.base_url + "/ok")
    assert not isinstance(info.value, Unreachable)


async def test_tls_expired_certificate(http: HttpCollector, expired_peer: HttpsPeer) -> None:
    with pytest.raises(CollectError, match="certificate has expired") as info:
        await fetch(http, expired_peer.base_url + "/ok", ca_file=expired_peer.cert_pem_path)
    assert not isinstance(info.value, Unreachable)
    reading = await fetch(http, expired_peer.base_url + "/ok", verify_tls=False)
    assert -1.01 < values(reading)["tls_cert_days_left"] < -0.99


async def test_tls_missing_ca_file(http: HttpCollector, https_peer: HttpsPeer) -> None:
    with pytest.raises(CollectError, match="cannot load ca_file"):
        await fetch(http, https_peer.base_url + "/ok", ca_file="/nonexistent/ca.pem")


# ---------------------------------------------------------------- safety in the http collector


async def test_http_refuses_file_url(http: HttpCollector) -> None:
    with pytest.raises(CollectError, match="scheme 'file' is not allowed"):
        await fetch(http, "file:///etc/passwd")


@pytest.mark.parametrize("route", ["/redirect-metadata", "/redirect-decimal"])
async def test_http_refuses_metadata_hop(http: HttpCollector, http_peer: HttpPeer, route: str) -> None:
    with pytest.raises(CollectError, match=r"redirect hop 1 .*cloud metadata address") as info:
        await fetch(http, http_peer.base_url + route, follow_redirects=True)
    assert not isinstance(info.value, Unreachable)


async def test_http_refuses_file_redirect_hop(http: HttpCollector, http_peer: HttpPeer) -> None:
    with pytest.raises(CollectError, match=r"redirect hop 1 .*scheme 'file'"):
        await fetch(http, http_peer.base_url + "/redirect-file", follow_redirects=True)


async def test_http_checks_resolved_addresses_at_connect(http: HttpCollector, http_peer: HttpPeer) -> None:
    url = http_peer.base_url.replace("127.0.0.1", "localhost") + "/ok"
    assert values(await fetch(http, url))["http_ok"] == 1
    with pytest.raises(CollectError, match="non-public"):
        await fetch(http, url, allow_private=False)
    with pytest.raises(CollectError, match="non-public"):
        await fetch(http, http_peer.base_url + "/ok", allow_private=False)


async def test_a_catastrophic_pattern_answers_at_once_against_the_body_built_to_stall_it(
    http: HttpCollector, http_peer: HttpPeer
) -> None:
    """`^(a+)+$` over 28 × 'a' + '!' took Python's re 9.4 s (doubling per byte) on the event loop; RE2 is linear."""
    start = time.monotonic()
    reading = await fetch(http, http_peer.base_url + "/redos", body_regex=r"^(a+)+$")
    assert time.monotonic() - start < 2.0
    assert values(reading)["http_body_match"] == 0 and "body does not match" in reading.facts["http_error"]


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [("(?=pocketnoc)ok", "lookahead"), (r"(?<!x)ok", "negative lookbehind"), (r"(a)\1", "backreference"), ("a++", "possessive")],
)
async def test_patterns_that_need_backtracking_are_refused_in_words(http: HttpCollector, pattern: str, feature: str) -> None:
    with pytest.raises(CollectError) as caught:
        await fetch(http, "http://127.0.0.1:1/ok", body_regex=pattern)
    assert feature in str(caught.value) and "body_regex" in str(caught.value)
