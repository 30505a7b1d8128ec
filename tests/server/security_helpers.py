"""Helpers for the security tests: a TOTP clock that can be moved forward, 2FA enrolment and sign-in through the pages,
devices whose secrets must never leak."""

from __future__ import annotations

import re
import threading
import time

import httpx
from fastapi.testclient import TestClient

from server.auth import access as auth
from tests.server.conftest import PASSWORD, AppEnv, TotpClock, form_csrf

SECRET_RE = re.compile(r'<code class="secret">([A-Z2-7 ]+)</code>')
CODES_RE = re.compile(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>")
# Device secrets that must never leave the server (tests/server/test_security_secrets.py, test_security_keyrotation.py).
COMMUNITY = "c0mm-S3CRET-v2"
AUTH_KEY = "auth-S3CRET-key"
PRIV_KEY = "priv-S3CRET-key"
SSH_PASSWORD = "ssh-S3CRET-pass"
WRITE_COMMUNITY = "wr1te-S3CRET-v2"
WRITE_AUTH_KEY = "wauth-S3CRET-key"
KEY_PASSPHRASE = "keypass-S3CRET"
SECRETS = (COMMUNITY, AUTH_KEY, PRIV_KEY, SSH_PASSWORD, WRITE_COMMUNITY, WRITE_AUTH_KEY, KEY_PASSPHRASE)


def login_password(client: TestClient, name: str, password: str = PASSWORD, next_url: str = "/") -> str:
    """The password step; returns where the server sends the browser."""
    page = client.get("/login")
    response = client.post(
        "/login", data={"username": name, "password": password, "csrf_token": form_csrf(page.text), "next": next_url}
    )
    assert response.status_code == 303, response.text
    return response.headers["location"]


def second_step(client: TestClient, code: str, next_url: str = "/") -> int:
    """Post a code to the second sign-in step; returns the status code."""
    page = client.get("/login/2fa")
    assert page.status_code == 200, page.text
    response = client.post("/login/2fa", data={"code": code, "csrf_token": form_csrf(page.text), "next": next_url})
    return response.status_code


def enrol_totp(client: TestClient, clock: TotpClock) -> tuple[str, list[str]]:
    """Set up an authenticator app through the pages (signed-in client); returns (secret, recovery codes)."""
    page = client.get("/account/totp")
    assert page.status_code == 200, page.text
    started = client.post("/account/totp/start", data={"csrf_token": form_csrf(page.text)})
    assert started.status_code == 303
    page = client.get("/account/totp")
    found = SECRET_RE.search(page.text)
    assert found, page.text
    secret = found.group(1).replace(" ", "")
    done = client.post("/account/totp/confirm", data={"code": clock.code(secret), "csrf_token": form_csrf(page.text)})
    assert done.status_code == 200, done.text
    codes = CODES_RE.findall(done.text)
    assert len(codes) == 10
    clock.advance()
    return secret, codes


def user_with_totp(env: AppEnv, name: str, role: str, clock: TotpClock) -> tuple[TestClient, str, list[str]]:
    """A new user with TOTP, signed in on a client of their own: (client, secret, recovery codes)."""
    env.user(name, role)
    client = TestClient(env.app, follow_redirects=False)
    assert login_password(client, name) == "/"
    secret, codes = enrol_totp(client, clock)
    return client, secret, codes


def session_cookie(client: TestClient) -> str | None:
    """The session cookie the client holds."""
    return client.cookies.get(auth.SESSION_COOKIE)


class SseReader:
    """Reads a Server-Sent Events stream of a real server on a thread, as a phone would: event names in order."""

    def __init__(self, url: str, cookie: str) -> None:
        self.events: list[str] = []
        self.status = 0
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(url, cookie), daemon=True)
        self._thread.start()

    def _read(self, url: str, cookie: str) -> None:
        try:
            timeout = httpx.Timeout(30, read=120)
            with httpx.stream("GET", url, cookies={auth.SESSION_COOKIE: cookie}, timeout=timeout) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        self.events.append(line[6:].strip())
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def wait_for(self, name: str, timeout: float = 30.0) -> None:
        """Until the stream has sent the event `name` (fails after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while name not in self.events:
            assert time.monotonic() < deadline and not self.ended.is_set(), f"no {name} event: {self.events}"
            time.sleep(0.05)


def secret_devices(port: int, closed_port: int) -> list[dict[str, object]]:
    """Devices carrying every secret above: v2c, v3 (and a wrong v3 key), SSH password and key passphrase."""
    return [
        {
            "name": "v2c",
            "address": "127.0.0.1",
            "snmp": {"version": "2c", "port": port, "community": COMMUNITY, "write": {"community": WRITE_COMMUNITY}},
        },
        {
            "name": "v3",
            "address": "127.0.0.1",
            "snmp": {
                "version": "3",
                "port": port,
                "user": "secmon",
                "auth_protocol": "sha",
                "auth_key": AUTH_KEY,
                "priv_protocol": "aes128",
                "priv_key": PRIV_KEY,
                "write": {"user": "secwriter", "auth_protocol": "sha", "auth_key": WRITE_AUTH_KEY},
            },
        },
        {
            "name": "v3-wrong",
            "address": "127.0.0.1",
            "snmp": {"version": "3", "port": port, "user": "secmon", "auth_protocol": "sha", "auth_key": AUTH_KEY + "x"},
        },
        {"name": "ssh", "address": "127.0.0.1", "ssh": {"port": closed_port, "user": "mon", "password": SSH_PASSWORD}},
        {
            "name": "ssh-key",
            "address": "127.0.0.1",
            "ssh": {"port": closed_port, "user": "mon", "key_file": "/nonexistent/id_ed25519", "key_passphrase": KEY_PASSPHRASE},
        },
    ]


def assert_absent(where: str, text: str | bytes) -> None:
    """None of the device secrets is in `text`."""
    data = text.encode() if isinstance(text, str) else text
    for secret in SECRETS:
        assert secret.encode() not in data, f"{secret} leaked into {where}"


def closed_tcp_port() -> int:
    """A loopback TCP port nothing listens on (the SSH devices' secrets are never sent anywhere)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
