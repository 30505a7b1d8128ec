"""HTTP(S) collector: status, latency, body regex, redirect policy and TLS certificate expiry.

Every redirect hop is checked by agents.safety, and every connection goes through a network backend that
resolves the host, checks every address and connects to the checked address (no DNS-rebinding window).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpcore
import httpx

from agents.base import CollectError, Reading, Sample, Target, Unreachable, register
from agents.net_common import clean_text, find_cause, host_of, opt_bool, os_reason, timeout_of
from agents.net_tls import certificate_facts, peer_certificate_der, ssl_context
from agents.safety import UnsafeTarget, check_target, resolve_checked
from agents.userregex import RegexError, UserRegex, compile_user_regex

MAX_BODY_BYTES = 1024 * 1024
MAX_REDIRECTS = 5
MAX_REGEX_CHARS = 1000
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DEFAULT_STATUS: tuple[tuple[int, int], ...] = ((200, 399),)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, check every address against the safety policy, then connect to a checked address."""

    def __init__(self, *, allow_private: bool, allow_link_local: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private
        self._allow_link_local = allow_link_local

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface passes it by name
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to the first reachable checked address; UnsafeTarget if any address is refused."""
        try:
            addresses = await resolve_checked(
                host, port, allow_private=self._allow_private, allow_link_local=self._allow_link_local
            )
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        error: Exception = httpcore.ConnectError(f"{host!r} resolved to no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface passes it by name
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Refuse: checks only ever speak TCP."""
        raise UnsafeTarget("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        """Sleep without blocking the loop."""
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx transport whose connections go through a GuardedBackend, with no keep-alive and no proxies."""

    def __init__(self, context: Any, backend: GuardedBackend) -> None:
        super().__init__(verify=context, trust_env=False)
        # httpx has no public way to pass a network backend: swap in an equivalent pool that has one.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context, max_connections=100, max_keepalive_connections=0, network_backend=backend
        )


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """Validated per-check options of the http collector."""

    url: str
    method: str
    expected: tuple[tuple[int, int], ...]
    body_regex: UserRegex | None
    timeout: float
    follow_redirects: bool
    verify_tls: bool
    ca_file: str | None
    headers: tuple[tuple[str, str], ...]
    allow_private: bool
    allow_link_local: bool


def parse_expected_status(raw: Any) -> tuple[tuple[int, int], ...]:
    """Accept 200, "200-299", "200,301-302" or a list of those; returns inclusive ranges."""
    if raw is None:
        return DEFAULT_STATUS
    items = raw if isinstance(raw, list | tuple) else [raw]
    ranges: list[tuple[int, int]] = []
    for item in items:
        parts = item.split(",") if isinstance(item, str) else [item]
        for part in parts:
            if isinstance(part, bool) or not isinstance(part, int | str):
                raise CollectError(f"option 'expected_status': not a status code: {str(part)[:50]!r}")
            low, _, high = str(part).strip().partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                raise CollectError(f"option 'expected_status': not a status code: {str(part)[:50]!r}")
            span = (int(low), int(high or low))
            if not 100 <= span[0] <= span[1] <= 599:
                raise CollectError(f"option 'expected_status': {str(part)[:50]!r} is outside 100-599")
            ranges.append(span)
    if not ranges:
        raise CollectError("option 'expected_status' is empty")
    return tuple(ranges)


def describe_status(ranges: Iterable[tuple[int, int]]) -> str:
    """Render status ranges as '200-399' or '200, 301'."""
    return ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)


def default_url(target: Target) -> str:
    """Build http(s)://address:port/ when no url option is given (https when the port is 443)."""
    host = host_of(target)
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if target.port == 443 else 'http'}://{shown}:{target.port}/"


def parse_options(target: Target) -> HttpOptions:
    """Validate the target's options; CollectError names the bad one."""
    opts: Mapping[str, Any] = target.options
    url = opts.get("url") or default_url(target)
    if not isinstance(url, str):
        raise CollectError("option 'url' must be a string")
    method = str(opts.get("method", "GET")).upper()
    if method not in METHODS:
        raise CollectError(f"option 'method': {method[:20]!r} is not one of {', '.join(sorted(METHODS))}")
    pattern = opts.get("body_regex")
    regex: UserRegex | None = None
    if pattern is not None:
        if not isinstance(pattern, str) or len(pattern) > MAX_REGEX_CHARS:
            raise CollectError(f"option 'body_regex' must be a string of at most {MAX_REGEX_CHARS} chars")
        try:
            regex = compile_user_regex(pattern, max_chars=MAX_REGEX_CHARS)
        except RegexError as exc:
            raise CollectError(f"option 'body_regex': {exc}") from None
    if regex is not None and method == "HEAD":
        raise CollectError("option 'body_regex' needs a method that returns a body, not HEAD")
    raw_headers = opts.get("headers") or {}
    if not isinstance(raw_headers, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw_headers.items()):
        raise CollectError("option 'headers' must map header names to string values")
    ca_file = opts.get("ca_file")
    if ca_file is not None and not isinstance(ca_file, str):
        raise CollectError("option 'ca_file' must be a path")
    return HttpOptions(
        url=url,
        method=method,
        expected=parse_expected_status(opts.get("expected_status")),
        body_regex=regex,
        timeout=timeout_of(target),
        follow_redirects=opt_bool(opts, "follow_redirects", False),
        verify_tls=opt_bool(opts, "verify_tls", True),
        ca_file=ca_file or None,
        headers=tuple((k, v) for k, v in raw_headers.items()),
        allow_private=opt_bool(opts, "allow_private", True),
        allow_link_local=opt_bool(opts, "allow_link_local", False),
    )


async def read_capped(response: httpx.Response, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read at most limit bytes of the body (decoding gzip/deflate without letting it expand past limit)."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    wbits = {"gzip": 47, "deflate": 15}.get(encoding)  # 47: gzip or zlib header, auto-detected
    inflater = zlib.decompressobj(wbits) if wbits is not None else None
    body = bytearray()
    async for chunk in response.aiter_raw(65536):
        if inflater is not None:
            try:
                chunk = inflater.decompress(chunk, limit - len(body))
            except zlib.error:
                break
        body += chunk[: limit - len(body)]
        if len(body) >= limit:
            break
    return bytes(body)


def _hop_label(url: httpx.URL) -> str:
    """Shorten a URL for an error message."""
    return clean_text(str(url), 200)


class HttpCollector:
    """Fetch one URL per check; http_latency_ms is the time until the final response's headers arrived.

    Options: url, method, expected_status, body_regex, timeout, follow_redirects, verify_tls, ca_file,
    headers, allow_private (default true), allow_link_local (default false).
    """

    kind = "http"

    def __init__(self) -> None:
        self._clients: dict[tuple[bool, str | None, bool, bool], httpx.AsyncClient] = {}

    async def _client(self, o: HttpOptions) -> httpx.AsyncClient:
        """Return the shared client for this TLS and address policy (built once per combination)."""
        key = (o.verify_tls, o.ca_file, o.allow_private, o.allow_link_local)
        client = self._clients.get(key)
        if client is None:
            try:
                context = await asyncio.to_thread(ssl_context, o.verify_tls, o.ca_file)
            except (OSError, ValueError) as exc:
                what = f"ca_file {o.ca_file!r}" if o.ca_file else "the default trust store"
                raise CollectError(f"cannot load {what}: {exc}") from None
            backend = GuardedBackend(allow_private=o.allow_private, allow_link_local=o.allow_link_local)
            client = self._clients.get(key) or httpx.AsyncClient(
                transport=GuardedTransport(context, backend),
                trust_env=False,
                follow_redirects=False,
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),  # every check starts clean
            )
            self._clients[key] = client
        return client

    async def collect(self, target: Target, profile: str | None = None) -> Reading:
        """Fetch the URL once; a wrong status or body is http_ok 0 with a fact http_error."""
        started = time.monotonic()
        o = parse_options(target)
        try:
            self._check_hop(o, o.url)
        except UnsafeTarget as exc:
            raise CollectError(f"refused URL: {exc}") from None
        client = await self._client(o)
        try:
            async with asyncio.timeout(o.timeout):
                reading = await self._fetch(client, o)
        except (TimeoutError, httpx.TimeoutException):
            raise Unreachable(f"{clean_text(o.url, 200)}: no full answer within {o.timeout:g} s") from None
        except UnsafeTarget as exc:
            raise CollectError(f"refused: {exc}") from None
        except httpx.HTTPError as exc:
            raise _translate(exc, o.url) from None
        reading.duration = time.monotonic() - started
        return reading

    @staticmethod
    def _check_hop(o: HttpOptions, url: str) -> None:
        """Check a URL without DNS (scheme, userinfo, literal address); names are checked on connect."""
        check_target(url, allow_private=o.allow_private, allow_link_local=o.allow_link_local, resolve=False)

    async def _fetch(self, client: httpx.AsyncClient, o: HttpOptions) -> Reading:
        """Send the request, walk redirects when asked (checking every hop), then judge the final answer."""
        headers = httpx.Headers({"Accept-Encoding": "identity", "User-Agent": "pocketnoc"})
        headers.update(dict(o.headers))  # case-insensitive: the check's own headers win
        request = client.build_request(o.method, o.url, headers=headers, timeout=o.timeout)
        sent = time.monotonic()
        reading = Reading()
        days_left: float | None = None
        for hop in range(MAX_REDIRECTS + 1):
            try:
                self._check_hop(o, str(request.url))
            except UnsafeTarget as exc:
                raise UnsafeTarget(f"redirect hop {hop} to {_hop_label(request.url)}: {exc}") from None
            response = await client.send(request, stream=True)
            try:
                stream = response.extensions.get("network_stream")
                der = peer_certificate_der(stream.get_extra_info("ssl_object") if stream else None)
                if der is not None:
                    try:
                        days, facts = certificate_facts(der)
                    except ValueError as exc:
                        reading.facts["tls_error"] = clean_text(f"unparsable certificate: {exc}")
                    else:
                        if days_left is None or days < days_left:  # the soonest expiry among the hops
                            days_left = days
                            reading.facts.update(facts)
                if o.follow_redirects and response.next_request is not None:
                    if hop == MAX_REDIRECTS:
                        raise CollectError(
                            f"more than {MAX_REDIRECTS} redirects (a loop?), last to {_hop_label(response.next_request.url)}"
                        )
                    request = response.next_request
                    continue
                latency_ms = (time.monotonic() - sent) * 1000.0
                body = await read_capped(response) if o.body_regex is not None else b""
            finally:
                await response.aclose()
            matched: bool | None = None
            if o.body_regex is not None:
                # Up to 1 MB of text chosen by the monitored endpoint: match it off the event loop.
                matched = await asyncio.to_thread(o.body_regex.search, body.decode("utf-8", errors="replace"))
            return self._judge(o, response, hop, latency_ms, (matched, len(body)), days_left, reading)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    @staticmethod
    def _judge(
        o: HttpOptions,
        response: httpx.Response,
        redirects: int,
        latency_ms: float,
        body_match: tuple[bool | None, int],
        days_left: float | None,
        reading: Reading,
    ) -> Reading:
        """Turn the final response into samples and facts; the server decides what a failure means."""
        status = response.status_code
        errors: list[str] = []
        if not any(low <= status <= high for low, high in o.expected):
            errors.append(f"status {status} not in expected {describe_status(o.expected)}")
        reading.samples += [Sample("http_status", float(status)), Sample("http_latency_ms", latency_ms)]
        matched, searched = body_match
        if o.body_regex is not None:
            reading.samples.append(Sample("http_body_match", 1.0 if matched else 0.0))
            if not matched:
                errors.append(
                    f"body does not match {clean_text(o.body_regex.pattern, 200)!r} (searched the first {searched} bytes)"
                )
        reading.samples.append(Sample("http_ok", 0.0 if errors else 1.0))
        if days_left is not None:
            reading.samples.append(Sample("tls_cert_days_left", days_left))
        reading.facts["http_final_url"] = clean_text(str(response.url))
        reading.facts["http_redirects"] = redirects
        for fact, header in (("http_server", "server"), ("http_location", "location")):
            raw = next((v for k, v in response.headers.raw if k.lower() == header.encode()), None)
            if raw is not None:
                reading.facts[fact] = clean_text(raw)
        if errors:
            reading.problem = reading.facts["http_error"] = clean_text("; ".join(errors))
        return reading

    async def close(self) -> None:
        """Close every shared client."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


def _translate(exc: httpx.HTTPError, url: str) -> CollectError:
    """Map an httpx failure to Unreachable (no answer) or CollectError (answered unusably, TLS refused)."""
    where = _hop_label(exc.request.url) if _has_request(exc) else clean_text(url, 200)
    verify = find_cause(exc, ssl.SSLCertVerificationError)
    if verify is not None:
        reason = verify.verify_message or verify.reason or str(verify)
        return CollectError(f"{where}: TLS certificate verification failed: {clean_text(str(reason), 300)}")
    tls = find_cause(exc, ssl.SSLError)
    if tls is not None:
        return CollectError(f"{where}: TLS handshake failed: {clean_text(str(tls), 300)}")
    if isinstance(exc, httpx.ConnectError | httpx.ReadError | httpx.WriteError | httpx.CloseError):
        reason = os_reason(exc) or str(exc) or type(exc).__name__
        return Unreachable(f"{where}: {clean_text(reason, 300)}")
    if isinstance(exc, httpx.RemoteProtocolError) and "without sending" in str(exc):
        return Unreachable(f"{where}: server closed the connection without answering")
    return CollectError(f"{where}: {type(exc).__name__}: {clean_text(str(exc), 300)}")


def _has_request(exc: httpx.HTTPError) -> bool:
    """Tell whether an httpx error carries its request (accessing .request otherwise raises)."""
    try:
        exc.request  # noqa: B018
    except RuntimeError:
        return False
    return True


register("http", HttpCollector)
