"""Helpers for the JSON API tests: an admin's client that remembers every answer, and the device secrets none may show."""

from __future__ import annotations

from typing import Any

import httpx

from tests.server.conftest import AppEnv, bearer

COMMUNITY = "c0mmunity-Qp3v-secret"
AUTH_KEY = "authkey-Lm48-secret"
PRIV_KEY = "privkey-Zr19-secret"
SSH_PASSWORD = "sshpass-Hy72-secret"
SECRETS = (COMMUNITY, AUTH_KEY, PRIV_KEY, SSH_PASSWORD)


class Api:
    """An admin's view of the API that remembers every response, to search them all for secrets."""

    def __init__(self, env: AppEnv, token: str) -> None:
        self.env = env
        self.headers = bearer(token)
        self.seen: list[httpx.Response] = []

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        response = self.env.client.request(method, path, headers=headers, **kwargs)
        self.seen.append(response)
        return response

    def assert_no_secrets(self) -> None:
        assert self.seen
        for response in self.seen:
            for secret in SECRETS:
                assert secret not in response.text, f"{response.request.method} {response.request.url} leaked a secret"
