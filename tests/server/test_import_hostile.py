"""Hostile exports: numbers too long for Python, malformed URLs and ids in an Uptime Kuma backup never crash the
importer (CLI or admin page) — each bad item is reported — and the preview hides credentials written into URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.cli.main import main
from tests.server.conftest import AppEnv, form_csrf, sign_in

BIG = "9" * 4000  # under Python's 4300-digit limit: parses, but is too large for a float
HUGE = "9" * 5000  # over it: json.loads itself refuses it with a ValueError
GOOD: dict[str, object] = {"type": "http", "name": "fine", "url": "https://ok.example/health"}


def kuma(*monitors: object, notifications: object = (), raw: str = "") -> bytes:
    """A backup of these monitors and notifications; the text RAW replaces the string "RAW" (a number JSON cannot dump)."""
    text = json.dumps({"monitorList": [GOOD, *monitors], "notificationList": list(notifications)})  # type: ignore[call-overload]
    return text.replace('"RAW"', raw).replace('\\"RAW\\"', raw).encode()


def http(name: str, **extra: object) -> dict[str, object]:
    return {"type": "http", "name": name, "url": f"https://{name}.example/", **extra}


HOSTILE = [
    ("too long a number", kuma(http("n", timeout="RAW"), raw=HUGE)),
    ("a timeout too big for a float", kuma(http("t", timeout="RAW"), raw=BIG)),
    ("a broken URL", kuma({"type": "http", "name": "u", "url": "http://[::1/"})),
    ("a list as parent and id", kuma(http("p", parent=[1], id=[2]))),
    ("a notification id that is not ASCII", kuma(http("a", notificationIDList={"\u00b2": True}))),
    ("a notification config with a huge number",
     kuma(notifications=[{"name": "n", "config": json.dumps({"type": "ntfy", "x": "RAW"})}], raw=HUGE)),
    ("a broken ntfy server URL",
     kuma(notifications=[{"name": "n", "config": {"type": "ntfy", "ntfyserverurl": "http://[::1", "ntfytopic": "x"}}])),
]


@pytest.mark.parametrize(("case", "content"), HOSTILE, ids=[c for c, _ in HOSTILE])
def test_a_hostile_backup_never_crashes_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, content: bytes
) -> None:
    path = tmp_path / "kuma.json"
    path.write_bytes(content)
    code = main(["import", "uptime-kuma", str(path), "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code == 2:  # the whole file refused: one clear line
        assert len(err.strip().splitlines()) == 1, err
    else:  # the rest imported, the bad item reported
        assert code == 0 and "ok.example" in (tmp_path / "out" / "inventory.yaml").read_text(), out + err


def test_the_admin_preview_survives_hostile_files_and_hides_url_credentials(app_env: AppEnv) -> None:
    client = app_env.client
    app_env.user("boss", "admin")
    sign_in(client, "boss")
    csrf = form_csrf(client.get("/admin/import").text)
    for case, content in HOSTILE:
        answer = client.post("/admin/import", data={"source": "uptime-kuma", "csrf_token": csrf},
                             files={"file": ("k.json", content, "application/json")})
        assert answer.status_code in (200, 422), (case, answer.status_code)
    secret = {"type": "http", "name": "api", "url": "https://admin:hunter2@api.example.net/health"}
    shown = client.post("/admin/import", data={"source": "uptime-kuma", "csrf_token": csrf},
                        files={"file": ("k.json", kuma(secret), "application/json")})
    assert shown.status_code == 200 and "api.example.net/health" in shown.text
    assert "hunter2" not in shown.text
