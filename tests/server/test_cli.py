"""The `pocketnoc` command as a user runs it (a subprocess): users, tokens, migrate, check-config, clean errors."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.auth import access as auth
from server.auth import passwords
from server.config.settings import Settings
from server.store.db import make_engine
from server.web.app import create_app
from tests.server.conftest import AppEnv, assert_clean_error, bearer, run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "config"

GOOD_PASSWORD = "a long enough password"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def login_works(data_dir: Path, name: str, password: str) -> bool:
    settings = Settings(data_dir=data_dir)
    engine = make_engine(settings.db_url)
    try:
        with engine.begin() as conn:
            return auth.login(conn, settings, name, password, "127.0.0.1", time.time()).user is not None
    finally:
        engine.dispose()


def test_user_add_reads_the_password_from_stdin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_cli("user", "add", "ada", "--role", "admin", "--data-dir", data, input_text=GOOD_PASSWORD + "\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "user ada (admin) created"
    assert GOOD_PASSWORD not in result.stdout + result.stderr
    assert login_works(data, "ada", GOOD_PASSWORD)
    assert not login_works(data, "ada", "something else entirely")
    listed = run_cli("user", "list", "--data-dir", data, cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.splitlines() == ["ada\tadmin"]


def test_user_add_without_stdin_generates_and_prints_a_password(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_cli("user", "add", "vera", "--data-dir", data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "user vera (viewer) created"
    assert lines[-1].startswith("password: ")
    password = lines[-1].removeprefix("password: ")
    assert len(password) >= passwords.MIN_PASSWORD
    assert login_works(data, "vera", password)


def test_generate_ignores_stdin(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_cli("user", "add", "otto", "--role", "operator", "--generate", "--data-dir", data,
                     input_text=GOOD_PASSWORD + "\n", cwd=tmp_path)
    assert result.returncode == 0
    password = result.stdout.strip().splitlines()[-1].removeprefix("password: ")
    assert password != GOOD_PASSWORD and login_works(data, "otto", password)


def test_user_passwd_changes_the_password(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_cli("user", "add", "ada", "--data-dir", data, input_text=GOOD_PASSWORD + "\n", cwd=tmp_path)
    result = run_cli("user", "passwd", "ada", "--data-dir", data, input_text="another long password\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert login_works(data, "ada", "another long password") and not login_works(data, "ada", GOOD_PASSWORD)


def test_data_dir_from_the_environment(tmp_path: Path) -> None:
    data = tmp_path / "from-env"
    result = run_cli("user", "add", "ada", input_text=GOOD_PASSWORD + "\n", cwd=tmp_path, env={"POCKETNOC_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    assert login_works(data, "ada", GOOD_PASSWORD)


def test_token_create_prints_a_token_that_works_against_the_app(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_cli("user", "add", "ada", "--role", "admin", "--data-dir", data, input_text=GOOD_PASSWORD + "\n", cwd=tmp_path)
    result = run_cli("token", "create", "ada", "--label", "grafana", "--data-dir", data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("pnt_") and " " not in token

    app = create_app(Settings(data_dir=data), poll=False)
    with TestClient(app) as client:
        me = client.get("/api/v1/me", headers=bearer(token))
        assert me.status_code == 200 and me.json()["name"] == "ada" and me.json()["role"] == "admin"

        listed = run_cli("token", "list", "--data-dir", data, cwd=tmp_path)
        assert listed.returncode == 0 and token not in listed.stdout
        header, row = listed.stdout.strip().splitlines()
        assert header.split("\t") == ["ID", "USER", "LABEL", "STATE"]
        token_id, user, label, state = row.split("\t")
        assert (user, label, state) == ("ada", "grafana", "active")

        revoked = run_cli("token", "revoke", token_id, "--data-dir", data, cwd=tmp_path)
        assert revoked.returncode == 0, revoked.stderr
        assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_migrate_creates_the_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_cli("migrate", "--data-dir", data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "newest schema" in result.stdout
    assert (data / "pocketnoc.db").exists()
    assert run_cli("migrate", "--data-dir", data, cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (("token", "create", "ghost"), None, "no user 'ghost'"),
        (("user", "add", "ada"), "short\n", "at least 10 characters"),
        (("user", "add", "ada", "--role", "god"), GOOD_PASSWORD + "\n", "god"),
        (("user", "add", "bad name!"), GOOD_PASSWORD + "\n", "user names"),
        (("user", "passwd", "ghost"), GOOD_PASSWORD + "\n", "no user 'ghost'"),
        (("token", "revoke", "12345"), None, "no token 12345"),
        (("token", "revoke", "not-a-number"), None, "not-a-number"),
        (("user", "frobnicate"), None, "frobnicate"),
    ],
    ids=["token-unknown-user", "short-password", "bad-role", "bad-name", "passwd-unknown-user", "revoke-unknown",
         "revoke-not-a-number", "unknown-action"],
)
def test_errors_are_one_clean_line(tmp_path: Path, args: tuple[str, ...], stdin: str | None, fragment: str) -> None:
    result = run_cli(*args, "--data-dir", tmp_path / "data", input_text=stdin, cwd=tmp_path)
    assert_clean_error(result, fragment)
    assert result.stdout == ""


def test_a_duplicate_user_is_one_clean_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("user", "add", "ada", "--data-dir", data, input_text=GOOD_PASSWORD + "\n", cwd=tmp_path).returncode == 0
    result = run_cli("user", "add", "ada", "--data-dir", data, input_text=GOOD_PASSWORD + "\n", cwd=tmp_path)
    assert_clean_error(result, "already exists")


def test_a_bad_config_file_is_reported_not_raised(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("settings:\n  port: nope\n")
    result = run_cli("user", "list", "--config", config, "--data-dir", tmp_path / "data", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{config}:2: settings.port")


# ---------------------------------------------------------------- check-config


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "devices:\n  - {name: a, address: 192.0.2.1}\n  - {name: b, address: 192.0.2.2}\n")
    result = run_cli("check-config", path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: OK (2 devices)"
    assert result.stderr == ""


def test_check_config_takes_the_path_from_config_too(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "devices: []\n")
    result = run_cli("check-config", "--config", path, cwd=tmp_path)
    assert result.returncode == 0 and "OK (0 devices)" in result.stdout


def test_check_config_lists_every_problem_without_a_traceback(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.yaml",
        "devices:\n  - {name: a, address: 'not valid'}\n  - {name: a, address: 192.0.2.2}\nextra: 1\n",
    )
    result = run_cli("check-config", path, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert all(line.startswith(f"{path}:") for line in lines)
    assert any(line.startswith(f"{path}:4: unknown key 'extra'") for line in lines)
    assert any(line.startswith(f"{path}:2: devices.0.address") for line in lines)
    assert any(line.startswith(f"{path}:3: duplicate device name 'a'") for line in lines)  # the invalid 'a' still counts


def test_check_config_runs_the_cross_checks_on_a_file_with_schema_errors(tmp_path: Path) -> None:
    """Duplicate names and unknown parents are reported in the same run as schema errors, in every file."""
    write(tmp_path, "rules.yaml", "rules:\n  - {name: r1, expr: 'cpu_pct > 90', severity: loud}\n"
                                  "  - {name: r1, expr: 'cpu_pct > 80'}\n")  # fmt: skip
    write(tmp_path, "actions.yaml", "actions:\n  - {id: a1, title: A, ssh: 'true', danger: extreme}\n"
                                    "  - {id: a1, title: B, ssh: 'true'}\n")  # fmt: skip
    write(tmp_path, "channels.yaml", "channels:\n  - {name: c1, url: 'https://hooks.example.net/x'}\n"
                                     "  - {name: c1, url: 'file:///etc/passwd'}\ndelivery: {concurrency: -1}\n")  # fmt: skip
    path = write(
        tmp_path,
        "c.yaml",
        "settings: {rules_file: rules.yaml, actions_file: actions.yaml, channels_file: channels.yaml}\n"
        "devices:\n"
        "  - {name: sw1, address: 192.0.2.1, interval: 'often'}\n"
        "  - {name: sw1, address: 192.0.2.2}\n"
        "  - {name: sw2, address: 'not valid', parent: ghost}\n"
        "  - {name: sw3, address: 192.0.2.3, parent: nobody}\n",
    )
    result = run_cli("check-config", path, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    err = result.stderr
    assert f"{path}:3: devices.0.interval" in err and f"{path}:5: devices.2.address" in err  # schema errors ...
    assert f"{path}:4: duplicate device name 'sw1'" in err  # ... and the cross-checks, in one run
    assert f"{path}:5: parent 'ghost' is not a device" in err and f"{path}:6: parent 'nobody' is not a device" in err
    rules, actions, channels = (str(tmp_path / n) for n in ("rules.yaml", "actions.yaml", "channels.yaml"))
    assert f"{rules}:2: rules.0.severity" in err and f"{rules}:3: duplicate rule name 'r1'" in err
    assert f"{actions}:2: actions.0.danger" in err and f"{actions}:3: duplicate action id 'a1'" in err
    assert f"{channels}:4: delivery.concurrency" in err and f"{channels}:3: duplicate channel name 'c1'" in err
    assert f"{channels}:3: channels.1.url" in err, err


def test_a_bad_device_family_file_stops_check_config_and_the_start(tmp_path: Path) -> None:
    families = tmp_path / "families"
    families.mkdir()
    (families / "acme.yaml").write_text("name: acme\nkind: toaster\nmatch: {object_id: 1.3.6.1.4.1.99999}\n")
    path = write(tmp_path, "c.yaml", "devices: []\n")
    env = {"POCKETNOC_FAMILIES_DIR": str(families)}
    for command in (["check-config", path], ["serve", "--config", path, "--data-dir", tmp_path / "d", "--port", "1"]):
        result = run_cli(*command, cwd=tmp_path, env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"{families / 'acme.yaml'}: kind: use one of")
    (families / "acme.yaml").write_text("name: acme\nkind: firewall\nmatch: {object_id: 1.3.6.1.4.1.99999}\n")
    assert run_cli("check-config", path, cwd=tmp_path, env=env).returncode == 0


@pytest.mark.parametrize("case", ["missing", "directory", "syntax", "binary"])
def test_check_config_on_unusable_files(tmp_path: Path, case: str) -> None:
    path = tmp_path / "c.yaml"
    if case == "directory":
        path.mkdir()
    elif case == "syntax":
        path.write_text("devices: [\n")
    elif case == "binary":
        path.write_bytes(b"\x00\xff\xfe garbage \x80")
    result = run_cli("check-config", path, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{path}"), result.stderr


def test_check_config_without_a_path(tmp_path: Path) -> None:
    result = run_cli("check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "pocketnoc: give the config file: pocketnoc check-config PATH"


def test_check_config_accepts_the_examples(tmp_path: Path) -> None:
    result = run_cli("check-config", EXAMPLES / "pocketnoc.example.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "OK (3 devices)" in result.stdout


def test_check_config_refuses_channel_urls_the_api_refuses(app_env: AppEnv, tmp_path: Path) -> None:
    """The notifications file's channel URLs go through the very check of POST /api/v1/channels, with file:line."""
    channels = write(tmp_path, "channels.yaml", (
        "channels:\n"
        "  - name: good\n    url: https://hooks.example.net/pocketnoc\n"
        "  - name: ftp\n    url: ftp://files.example.net/alerts\n"
        "  - name: metadata\n    url: http://169.254.169.254/latest\n"
        "  - name: metadata-allowed\n    url: http://169.254.169.254/latest\n    allow_unsafe: true\n"
    ))
    config = write(tmp_path, "c.yaml", f"settings:\n  channels_file: {channels}\n")
    result = run_cli("check-config", config, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == "", result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith(f"{channels}:5: channels.1.url: not a URL Apprise understands")
    assert lines[1].startswith(f"{channels}:7: channels.2.url: refused:")
    # The API gives the same verdicts, in the same words.
    token = app_env.token("root", "admin")
    for name, url, line in (("ftp", "ftp://files.example.net/alerts", lines[0]),
                            ("metadata", "http://169.254.169.254/latest", lines[1])):
        answer = app_env.client.post("/api/v1/channels", json={"name": name, "url": url}, headers=bearer(token))
        assert answer.status_code == 422, answer.text
        assert line.endswith(answer.json()["detail"]), (line, answer.json())
    answer = app_env.client.post("/api/v1/channels", json={"name": "good", "url": "https://hooks.example.net/pocketnoc"},
                                 headers=bearer(token))
    assert answer.status_code in (200, 201), answer.text


# ---------------------------------------------------------------- serve and demo: a taken port, a second start


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_a_taken_port_is_one_line_before_anything_is_printed_or_created(tmp_path: Path, command: str) -> None:
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(command, "--data-dir", data, "--host", "127.0.0.1", "--port", str(port), cwd=tmp_path)
    assert_clean_error(result, f"port {port} on 127.0.0.1 is already in use")
    assert result.returncode == 2
    assert f"make run PORT={port + 1}" in result.stderr and f"{command} --port {port + 1}" in result.stderr
    assert result.stdout == ""  # no "starting at", and above all no one-time password
    assert not (data / "demo-sim").exists()  # no simulator was started either
    listed = run_cli("user", "list", "--data-dir", data, cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout == ""  # no admin was created


def test_a_second_demo_refuses_a_simulator_port_the_first_one_holds(tmp_path: Path) -> None:
    """Not "22 simulated devices" polling (and SETting) the first demo's simulator: one line and the way out."""
    from server.demo import run_demo_agents

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        udp = probe.getsockname()[1]
    first = run_demo_agents(tmp_path / "first", port=udp)
    try:
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            web = free.getsockname()[1]
        data = tmp_path / "second"
        result = run_cli("demo", "--data-dir", data, "--port", str(web), "--sim-port", str(udp), cwd=tmp_path)
        assert_clean_error(result, f"simulator port {udp} (UDP, 127.0.77.x) is already in use")
        assert result.returncode == 2
        assert f"make run SIM_PORT={udp + 1}" in result.stderr and f"demo --sim-port {udp + 1}" in result.stderr
        assert result.stdout == ""  # no banner, no one-time password
        assert first.running()  # the first demo's simulator is left alone
        listed = run_cli("user", "list", "--data-dir", data, cwd=tmp_path)
        assert listed.returncode == 0 and listed.stdout == ""  # no admin was created
    finally:
        first.stop()


def test_a_second_demo_start_says_how_to_reset_the_admin_password(tmp_path: Path) -> None:
    from server.cli.main import _demo_admin

    settings = Settings(data_dir=tmp_path / "data")
    first = _demo_admin(settings)
    assert first[0] == "sign in as: admin" and first[1].startswith("password:   ")
    password = first[1].split()[1]
    assert login_works(settings.data_dir, "admin", password)
    again = _demo_admin(settings)
    assert not any(password in line for line in again)
    assert any("user passwd admin" in line and "lost the admin password" in line for line in again), again
    assert any("user add NAME --role admin" in line for line in again), again
    assert login_works(settings.data_dir, "admin", password)  # a second start changes nothing


def test_the_open_files_limit_is_raised_towards_the_hard_limit() -> None:
    """One pooled SSH connection per host needs more than the common soft limit of 1,024 open files."""
    code = (
        "import resource\n"
        "from server.cli.main import raise_open_files_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "got = raise_open_files_limit(4096)\n"
        "print(got, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    got, soft, hard = (int(x) for x in done.stdout.split())
    expected = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    assert got == soft == expected
