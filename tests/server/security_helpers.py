"""Helpers for the security tests: a TOTP clock that can be moved forward, 2FA enrolment and sign-in through the pages."""

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
