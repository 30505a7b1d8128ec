"""Actions over SSH against a real OpenSSH sshd: effects on disk, quoting, caps, kills, host keys, audit, live output."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.store.devices import create_device
from server.web.api import actions as api_actions
from tests.peers.sshd import SshdPeer
from tests.server.actions_helpers import SSH_CATALOG, ActionEnv, make_env, scratch_dir, ssh_device
from tests.server.app_browser import session_cookie
from tests.server.app_fleet import serve
from tests.server.conftest import PASSWORD, form_csrf
from tests.server.security_helpers import SseReader


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ActionEnv]:
    yield from make_env(tmp_path, SSH_CATALOG, poll=False)


@pytest.fixture
def device(env: ActionEnv, sshd: SshdPeer) -> int:
    return env.add_device(ssh_device(sshd))


def test_an_action_really_creates_and_removes_a_file(env: ActionEnv, device: int) -> None:
    r = env.run("touch-file", device, params={"name": "a.txt"}, reason="testing")
    assert r.status_code == 202, r.text
    assert r.json()["command"] == f"cd {env.scratch} && touch a.txt && ls"
    run = env.wait(r.json()["id"])
    assert run["status"] == "succeeded" and run["exit_code"] == 0
    assert (env.scratch / "a.txt").exists()
    assert "a.txt" in run["stdout"] and run["duration"] > 0
    assert run["username"] == "operator" and run["reason"] == "testing"
    removed = env.wait(env.run("remove-file", device, params={"name": "a.txt"}).json()["id"])
    assert removed["status"] == "succeeded" and not (env.scratch / "a.txt").exists()
    # Again: rm fails, and the run says so with rm's own exit code and message.
    again = env.wait(env.run("remove-file", device, params={"name": "a.txt"}).json()["id"])
    assert again["status"] == "failed" and again["exit_code"] == 1 and "No such file" in again["stderr"]


def test_clear_temp_really_empties_the_directory(env: ActionEnv, device: int) -> None:
    tmp = env.scratch / "tmp"
    tmp.mkdir()
    (tmp / "sub").mkdir()
    for i in range(20):
        (tmp / f"f{i}").write_text("x" * 1000)
    (tmp / "sub" / "deep").write_text("y")
    subprocess.run(["chown", "-R", "pnoc-test:", str(tmp)], check=True)
    run = env.wait(env.run("clear-temp", device).json()["id"])
    assert run["status"] == "succeeded", run
    assert run["stdout"].strip() == "0"
    assert tmp.is_dir() and list(tmp.iterdir()) == []


@pytest.mark.parametrize(
    "value",
    ["nginx; touch PWNED", "$(touch PWNED)", "`touch PWNED`", "a' ; touch PWNED; '", 'a" ; touch PWNED; "', "x && touch PWNED"],
)
def test_shell_metacharacters_stay_one_literal_argument(env: ActionEnv, device: int, value: str) -> None:
    # The pattern allows any printable ASCII: only shlex.quote stands between the value and the shell.
    run = env.wait(env.run("echo-text", device, params={"text": value}).json()["id"])
    assert run["status"] == "succeeded"
    assert run["stdout"] == value + "\n"
    assert run["command"] == f"printf '%s\\n' {shlex.quote(value)}; printf 'err line\\n' >&2"
    assert not (env.scratch / "PWNED").exists() and not Path("/var/lib/pnoc-test/PWNED").exists()


def test_a_command_that_never_ends_is_killed_on_the_host(env: ActionEnv, device: int) -> None:
    marker = int(time.time() * 1000) % 999999 + 1
    start = time.monotonic()
    run = env.wait(env.run("never-ends", device, params={"marker": marker}).json()["id"])
    assert run["status"] == "timed_out" and "killed" in run["error"]
    assert run["exit_code"] is None and 2 <= run["duration"] < 15
    assert time.monotonic() - start < 30
    deadline = time.monotonic() + 10
    while True:
        found = subprocess.run(["pgrep", "-f", f"sleep 987.{marker}"], capture_output=True, text=True).stdout.strip()
        if not found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not found, f"the remote command still runs: {found}"


def test_a_command_that_prints_forever_is_capped_and_stopped(env: ActionEnv, device: int) -> None:
    run = env.wait(env.run("prints-forever", device).json()["id"])
    assert run["status"] == "capped" and "4096 bytes" in run["error"]
    assert len(run["stdout"]) <= 4096 and run["stdout"].startswith("pocketnoc-flood\n") and run["truncated"]
    time.sleep(0.5)
    assert "yes pocketnoc-flood" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def test_hostile_output_is_neutralised_and_stderr_kept_apart(env: ActionEnv, device: int) -> None:
    run = env.wait(env.run("hostile-output", device).json()["id"])
    out = run["stdout"]
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    # Made visible, not dropped: the escapes and the bell read as text; a bare CR starts a new line.
    assert "\\x1b[31mred\\x1b[0m <b>bold</b> \\x1b]0;t\\x07 bell\\x07 cr\nover\n" in out and "\ufffd\ufffd not utf8" in out
    page = env.client.get(f"/runs/{run['id']}", headers=env.headers())
    assert "&lt;b&gt;bold&lt;/b&gt;" in page.text and "<b>bold" not in page.text
    echo = env.wait(env.run("echo-text", device, params={"text": "hi"}).json()["id"])
    assert echo["stdout"] == "hi\n" and echo["stderr"] == "err line\n"
    assert sorted(stream for stream, _text in echo["output"]) == ["stderr", "stdout"]


def test_one_run_at_a_time_per_device_unless_the_action_allows_more(env: ActionEnv, device: int) -> None:
    first = env.run("slow", device)
    assert first.status_code == 202
    second = env.run("slow", device)
    assert second.status_code == 409 and f"run #{first.json()['id']}" in second.json()["detail"]
    parallel = env.run("lines", device, params={"count": 2})  # concurrent: true
    assert parallel.status_code == 202, parallel.text
    assert env.wait(parallel.json()["id"])["stdout"] == "1\n2\n"
    (env.scratch / "release").touch()  # the first run was held running until here, however slow the machine
    assert env.wait(first.json()["id"])["stdout"] == "slow-done\n"
    assert env.run("slow", device).status_code == 202  # free again
    assert env.audit("action.refused")[0]["detail"]["status"] == 409


def test_a_changed_host_key_refuses_before_signing_in(env: ActionEnv, device: int, sshd: SshdPeer, tmp_path: Path) -> None:
    from tests.peers.sshd import _keygen

    other = _keygen(tmp_path / "other_host_key", "ed25519")
    r = env.client.patch(f"/api/v1/devices/{device}", json={"ssh": {"host_key": other}}, headers=env.headers("admin"))
    assert r.status_code == 200, r.text
    accepted = sshd.count("Accepted")
    run = env.wait(env.run("touch-file", device, params={"name": "k.txt"}).json()["id"])
    assert run["status"] == "error" and "host key mismatch" in run["error"] and "nothing ran" in run["error"]
    assert sshd.count("Accepted") == accepted and not (env.scratch / "k.txt").exists()
    finished = env.audit("action.finished")
    assert finished[0]["detail"]["status"] == "error" and "host key" in finished[0]["detail"]["error"]


def test_a_host_key_never_pinned_refuses_before_signing_in(env: ActionEnv, sshd: SshdPeer) -> None:
    device = env.add_device(ssh_device(sshd, name="web-02", ssh={"host_key": []}))
    accepted = sshd.count("Accepted")
    run = env.wait(env.run("touch-file", device, params={"name": "u.txt"}).json()["id"])
    assert run["status"] == "error" and "not trusted" in run["error"] and "nothing ran" in run["error"], run
    assert sshd.count("Accepted") == accepted and not (env.scratch / "u.txt").exists()
    assert env.audit("action.finished")[0]["detail"]["status"] == "error"


def test_every_run_is_in_the_audit_log_and_the_history(env: ActionEnv, device: int) -> None:
    run = env.wait(env.run("touch-file", device, params={"name": "h.txt"}, reason="disk check").json()["id"])
    started = env.audit("action.run")[0]
    assert started["username"] == "operator" and started["target"] == "touch-file@web-01"
    assert started["detail"]["command"] == run["command"] and started["detail"]["reason"] == "disk check"
    assert started["detail"]["params"] == {"name": "h.txt"} and started["detail"]["run"] == run["id"]
    finished = env.audit("action.finished")[0]
    assert finished["detail"]["exit_code"] == 0 and "h.txt" in finished["detail"]["output"]
    verified = env.audit("action.verified")[0]
    assert verified["detail"]["verification"] == "skipped"
    history = env.client.get(f"/api/v1/runs?device={device}", headers=env.headers("viewer")).json()["items"]
    assert [h["id"] for h in history] == [run["id"]] and "output" not in history[0]


def test_live_output_streams_as_server_sent_events(env: ActionEnv, device: int) -> None:
    run_id = env.run("lines", device, params={"count": 300}).json()["id"]
    with env.client.stream("GET", f"/api/v1/runs/{run_id}/stream", headers=env.headers("viewer")) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events, text = [], []
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
                events.append(kind)
            elif line.startswith("data: ") and kind == "output":
                text.append(json.loads(line[6:])["text"])
            if kind == "end":
                break
    assert "".join(text) == "".join(f"{i}\n" for i in range(1, 301))
    assert events[-1] == "end" and "status" in events
    # Asked again after the end: the stored run, same output.
    with env.client.stream("GET", f"/api/v1/runs/{run_id}/stream", headers=env.headers()) as response:
        body = "".join(response.iter_text())
    assert body.count("event: end") == 1 and '"status":"succeeded"' in body
    assert env.client.get("/api/v1/runs/99999/stream", headers=env.headers()).status_code == 404


def test_preview_shows_the_exact_command_without_running(env: ActionEnv, device: int) -> None:
    r = env.client.post(
        "/api/v1/actions/echo-text/preview", json={"device": device, "params": {"text": "a b$c"}}, headers=env.headers()
    )
    assert r.status_code == 200, r.text
    assert r.json()["command"] == "printf '%s\\n' 'a b$c'; printf 'err line\\n' >&2"
    stale = env.run("echo-text", device, params={"text": "other"}, expected=r.json()["expected"])
    assert stale.status_code == 409 and "differs" in stale.json()["detail"]
    fresh = env.run("echo-text", device, params={"text": "a b$c"}, expected=r.json()["expected"])
    assert fresh.status_code == 202
    assert env.client.get("/api/v1/runs", headers=env.headers()).json()["items"][0]["id"] == fresh.json()["id"]


def test_the_run_stream_ends_when_the_session_ends(tmp_path: Path, sshd: SshdPeer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real server: a password change on another device ends the open output stream of a running action."""
    monkeypatch.setattr(api_actions, "SESSION_CHECK_SECONDS", 0.5)
    scratch = scratch_dir()
    catalog = tmp_path / "actions.yaml"
    catalog.write_text(
        'actions:\n  - id: ticks\n    title: Ticks\n    danger: low\n    timeout: 60\n    verify: false\n'
        '    ssh: "for i in $(seq 1 40); do echo tick $i; sleep 0.5; done"\n'
    )
    try:
        with serve(Settings(data_dir=tmp_path / "data", actions_file=catalog)) as server:
            server.user("pat", "operator")
            with server.svc.engine.begin() as conn:
                device = create_device(conn, DeviceSpec.model_validate(ssh_device(sshd)), server.svc.box, 60)
            cookie = session_cookie(server.url, "pat")
            with httpx.Client(base_url=server.url, cookies={"pn_session": cookie}) as phone:
                csrf = {"X-CSRF-Token": form_csrf(phone.get("/").text)}
                started = phone.post("/api/v1/actions/ticks/run", json={"device": device}, headers=csrf)
                assert started.status_code == 202, started.text
            stream = SseReader(f"{server.url}/api/v1/runs/{started.json()['id']}/stream", cookie)
            stream.wait_for("output")
            with httpx.Client(base_url=server.url, cookies={"pn_session": session_cookie(server.url, "pat")}) as laptop:
                page = laptop.get("/account/password")
                form = {"current": PASSWORD, "new": "a brand new secret", "again": "a brand new secret"}
                assert laptop.post("/account/password", data={**form, "csrf_token": form_csrf(page.text)}).status_code == 303
            assert stream.ended.wait(15), "the output stream outlived the session"
            assert stream.events[-1] == "bye" and "end" not in stream.events, stream.events
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_the_shipped_example_actions_really_run(tmp_path: Path, sshd: SshdPeer) -> None:
    """The read-only actions of config/actions.example.yaml, unchanged, against the real sshd."""
    example = Path(__file__).resolve().parents[2] / "config" / "actions.example.yaml"
    for env in make_env(tmp_path, example.read_text(), poll=False):
        device = env.add_device(ssh_device(sshd))
        top = env.wait(env.run("show-top", device).json()["id"])
        assert top["status"] == "succeeded" and top["exit_code"] == 0, top
        assert top["stdout"].splitlines()[0].split()[:3] == ["PID", "USER", "%CPU"] and len(top["stdout"].splitlines()) > 2
        disk = env.wait(env.run("show-disk-usage", device, params={"path": "/tmp"}).json()["id"])
        assert disk["status"] == "succeeded" and "Filesystem" in disk["stdout"], disk
        assert disk["command"] == "df -hP; du -xh --max-depth=1 /tmp 2>/dev/null | sort -h | tail -n 15"
        refused = env.run("show-disk-usage", device, params={"path": "/etc"})
        assert refused.status_code == 422 and "not one of the choices" in refused.json()["detail"]
