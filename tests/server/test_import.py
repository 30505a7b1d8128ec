"""`pocketnoc import`: Uptime Kuma backups and LibreNMS device lists become config files that pass check-config."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from server.cli.main import main
from tests.server.conftest import AppEnv, assert_clean_error, form_csrf, run_cli, sign_in

SAMPLES = Path(__file__).parent / "imports"
KUMA = SAMPLES / "uptime-kuma-backup.json"
LIBRENMS = SAMPLES / "librenms-devices.json"
SECRETS = (
    "AAH-kuma-test-token", "webhook-secret-123", "0123456789-_secret", "s3cret-smtp-pass", "ntfy-pass-xyz",
    "AbCgotifyTok3n", "azGDORePK8gMaC0QOYAMyEEuzJnyUi",
    "pd-integration-key", "db-secret", "n0c-r3ad", "auth-key-123", "priv-key-456",
)  # fmt: skip


def _yaml(path: Path) -> dict[str, object]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def test_uptime_kuma_backup_becomes_devices_checks_and_channels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kuma"
    result = run_cli("import", "uptime-kuma", KUMA, "--out", out)
    assert result.returncode == 0, result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "imported: 6 devices, 8 checks, 8 channels"
    skipped = "\n".join(line for line in lines if line.startswith("not imported: "))
    for fragment in ("'PagerDuty' (PagerDuty): no Apprise channel", "'Broken Telegram' (telegram): its settings are incomplete",
                     "'Resolver' (dns): pocketnoc has no dns check", "'Docker nginx' (docker)", "'Postgres' (postgres)",
                     "'Maintenance page' (http): upside-down", "'Bad host' (ping): no usable host name"):  # fmt: skip
        assert fragment in skipped
    assert "\x1b" not in result.stdout
    for name in ("pocketnoc.yaml", "inventory.yaml", "channels.yaml"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    devices = {d["name"]: d for d in _yaml(out / "inventory.yaml")["devices"]}  # type: ignore[attr-defined]
    www = devices["www.example.net"]
    assert {"Production", "prod", "notify-ops-telegram", "notify-slack-noc"} <= set(www["tags"])
    login = next(c for c in www["checks"] if c["name"] == "Website-login-page")
    assert login["type"] == "http" and login["body_regex"] == r"Sign in \(SSO\)"
    api = devices["api.example.net"]["checks"][0]
    assert api["method"] == "HEAD" and api["verify_tls"] is False and 301 in api["expected_status"]
    assert api["interval"] == 30 and api["timeout"] == 24
    assert [(c["type"], c["port"]) for c in devices["mail.example.net"]["checks"]] == [("tcp", 25), ("tcp", 993)]
    assert devices["intranet.example.net"]["enabled"] is False
    channels = {c["name"]: c["url"] for c in _yaml(out / "channels.yaml")["channels"]}  # type: ignore[attr-defined]
    assert channels["ops-telegram"].startswith("tgram://") and channels["noc-discord"].startswith("discord://")
    mail = channels["mail-on-call"]
    assert mail.startswith("smtp://alerts%40example.net:") and "from=alerts%40example.net" in mail
    assert channels["ntfy-phones"].startswith("ntfys://") and channels["pushover"].startswith("pover://")
    assert channels["itsm-webhook"].startswith("https://itsm.example.net/")
    assert main(["check-config", str(out / "pocketnoc.yaml")]) == 0
    assert "OK (6 devices)" in capsys.readouterr().out


def test_librenms_device_list_becomes_snmp_devices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "librenms"
    assert main(["import", "librenms", str(LIBRENMS), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    for secret in SECRETS:
        assert secret not in printed.out + printed.err
    assert printed.out.splitlines()[0] == "imported: 7 devices, 0 checks, 0 channels"
    assert "'fw1.example.net': SNMPv3 user missing or a key shorter than 8" in printed.out
    assert "'ups1.example.net': no SNMP community" in printed.out
    assert "'weird\\x07host': no usable host name" in printed.out and "\x07" not in printed.out
    assert not (out / "channels.yaml").exists()
    devices = {d["name"]: d for d in _yaml(out / "inventory.yaml")["devices"]}  # type: ignore[attr-defined]
    assert devices["core-sw1"]["snmp"] == {"version": "2c", "port": 161, "community": "n0c-r3ad"}
    assert devices["core-sw1"]["kind"] == "cisco-ios" and devices["core-sw1"]["tags"] == ["HQ-Rack-1"]
    rtr = devices["edge-rtr1"]
    assert rtr["address"] == "192.0.2.1" and rtr["kind"] == "mikrotik-routeros"
    assert rtr["snmp"] == {"version": "3", "port": 161, "user": "librenms", "auth_protocol": "sha", "auth_key": "auth-key-123",
                           "priv_protocol": "aes128", "priv_key": "priv-key-456"}  # fmt: skip
    assert "snmp" not in devices["fw1"] and devices["old-switch"]["enabled"] is False
    assert main(["check-config", str(out / "pocketnoc.yaml")]) == 0


@pytest.mark.parametrize(
    ("source", "content", "message"),
    [
        ("uptime-kuma", b"<html>not json</html>", "is not JSON: Expecting value at line 1, column 1"),
        ("uptime-kuma", b"\xff\xfe\x00binary", "is not UTF-8 text"),
        ("uptime-kuma", b'[{"id": 1}]', "not an Uptime Kuma backup: expected an object with monitorList"),
        ("uptime-kuma", b'{"monitorList": {"1": {}}}', "monitorList is not a list"),
        ("librenms", b'{"status": "error", "message": "Unauthenticated."}', "not a LibreNMS device list"),
        ("librenms", b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, content: bytes, message: str
) -> None:
    path = tmp_path / "export.json"
    path.write_bytes(content)
    assert main(["import", source, str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_huge_missing_and_existing_are_refused_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def refused(*args: str | Path) -> str:
        assert main(["import", *map(str, args)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0]
        return err[0]

    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:
        f.truncate(40 * 1024 * 1024)  # sparse: nothing is written, only at most 32 MiB + 1 byte is read
    assert "at most 33554432 are read" in refused("uptime-kuma", huge, "--out", tmp_path / "o")
    assert "cannot read" in refused("librenms", tmp_path / "nope.json", "--out", tmp_path / "o")
    out = tmp_path / "twice"
    assert main(["import", "librenms", str(LIBRENMS), "--out", str(out)]) == 0
    assert "exists; choose another --out directory" in refused("librenms", LIBRENMS, "--out", out)
    assert main(["import", "librenms", str(LIBRENMS), "--out", str(out), "--force"]) == 0
    # From the shell too: one line and exit 2, never a traceback.
    assert_clean_error(run_cli("import", "librenms", LIBRENMS, "--out", out), "exists; choose another --out directory")


def test_samples_are_what_the_tools_export() -> None:
    kuma = json.loads(KUMA.read_text())
    assert {"version", "notificationList", "monitorList"} <= set(kuma)
    assert all(isinstance(n["config"], str) for n in kuma["notificationList"])  # a JSON string inside, as Kuma writes it
    librenms = json.loads(LIBRENMS.read_text())
    assert librenms["status"] == "ok" and librenms["count"] == len(librenms["devices"])


def test_admin_page_shows_the_yaml_to_review_with_secrets_hidden(app_env: AppEnv) -> None:
    client = app_env.client
    app_env.user("boss", "admin")
    sign_in(client, "boss")
    page = client.get("/admin/import")
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    csrf = form_csrf(page.text)
    files = {"file": ("kuma.json", KUMA.read_bytes(), "application/json")}
    shown = client.post("/admin/import", data={"source": "uptime-kuma", "csrf_token": csrf}, files=files)
    assert shown.status_code == 200, shown.text
    assert "Would import 6 devices, 8 checks, 8 channels" in shown.text
    assert "not imported: monitor &#39;Resolver&#39; (dns)" in shown.text
    assert "url: https://api.example.net/health" in shown.text and "notify-ops-telegram" in shown.text
    for secret in SECRETS:
        assert secret not in shown.text
    libre = {"file": ("devices.json", LIBRENMS.read_bytes(), "application/json")}
    hidden = client.post("/admin/import", data={"source": "librenms", "csrf_token": csrf}, files=libre)
    assert "community: &#39;&lt;hidden: run pocketnoc import" in hidden.text and "n0c-r3ad" not in hidden.text
    bad = client.post("/admin/import", data={"source": "librenms", "csrf_token": csrf},
                      files={"file": ("x.json", b"{nope", "application/json")})
    assert bad.status_code == 422 and "is not JSON" in bad.text
    forged = client.post("/admin/import", data={"source": "librenms"}, files=libre)
    assert forged.status_code == 403
    entries = client.get("/admin/audit").text
    assert "import.preview" in entries
