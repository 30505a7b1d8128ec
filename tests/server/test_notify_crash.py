"""Kill -9 the server mid-delivery: after a restart the notification arrives again, and its receipts say so."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.store.db import make_engine
from tests import sql
from tests.peers import healthz
from tests.peers.receiver import Receiver, start_receiver
from tests.server.conftest import POCKETNOC, run_cli
from tests.server.notify_helpers import wait_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    peer = start_receiver()
    yield peer
    peer.stop()


class Server:
    """`pocketnoc serve` as a real process."""

    def __init__(self, config: Path, data: Path, log: Path) -> None:
        self.config, self.data, self.log = config, data, log
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETNOC_")}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(POCKETNOC), "serve", "--config", str(self.config), "--data-dir", str(self.data), "--port", str(self.port)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            if healthz.answers(f"http://127.0.0.1:{self.port}"):
                return
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def test_sigkill_mid_delivery_sends_again_and_shows_the_possible_duplicate(tmp_path: Path, receiver: Receiver) -> None:
    closed = _free_port()  # nothing listens here: the device's TCP check fails and the real poller raises device-down
    (tmp_path / "channels.yaml").write_text(f"""
channels:
  - {{name: hook, url: "json://127.0.0.1:{receiver.port}/hook"}}
delivery: {{poll_seconds: 0.2, backoff_seconds: 0.2, backoff_max_seconds: 1, timeout_seconds: 3, lease_seconds: 5}}
""")
    config = tmp_path / "pocketnoc.yaml"
    config.write_text(f"""
settings:
  channels_file: channels.yaml
  down_after_failures: 1
  writer_batch_seconds: 0.05
  lease_seconds: 2  # the killed process's sender lease runs out this soon: the restarted one sends without waiting 15 s
devices:
  - name: dead-box
    address: 127.0.0.1
    interval: 5
    checks:
      - {{type: tcp, port: {closed}}}
""")
    receiver.answer(hang=True)  # the first attempt reaches the receiver but is never acknowledged
    server = Server(config, tmp_path / "data", tmp_path / "server.log")
    try:
        server.start()
        first = receiver.wait_for(1, timeout=90)[0]
        assert first.json["title"] == "CRITICAL · dead-box is unreachable"
        server.kill()  # committed alert, claimed message, no answer yet: the worst moment
        engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'pocketnoc.db'}")
        try:
            with engine.connect() as conn:
                assert sql.scalars(conn, "SELECT status FROM alerts") == ["firing"]
                assert sql.scalars(conn, "SELECT status FROM notify_messages") == ["pending"]
            receiver.answer(200)
            server.start()
            delivered = receiver.wait_for(1, lambda r: r.status == 200, timeout=60)
            time.sleep(1.0)  # anything sent twice would have arrived by now (the worker passes every 0.2 s)
            acknowledged = receiver.items(lambda r: r.status == 200)
            assert len(acknowledged) == 1 and acknowledged[0].json["dedup_key"] == first.json["dedup_key"] == "pocketnoc-1-1"
            assert delivered[0].json["title"] == first.json["title"]

            def sent() -> list[str]:
                with engine.connect() as conn:
                    return sql.scalars(conn, "SELECT status FROM notify_messages")

            assert wait_until(lambda: sent() == ["sent"], what="the message recorded as sent")

            # The attempt cut off by the kill was on record before it was sent: two attempts, a possible duplicate.
            assert [r.json["dedup_key"] for r in receiver.items()] == ["pocketnoc-1-1", "pocketnoc-1-1"]
            data = tmp_path / "data"
            assert run_cli("user", "add", "ada", "--role", "admin", "--data-dir", data,
                           input_text="correct horse battery staple\n", cwd=tmp_path).returncode == 0
            token = run_cli("token", "create", "ada", "--data-dir", data, cwd=tmp_path).stdout.strip().splitlines()[-1]
            answer = httpx.get(f"http://127.0.0.1:{server.port}/api/v1/notify/messages",
                               headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert answer.status_code == 200, answer.text
            (message,) = answer.json()["items"]
            assert message["attempts"] == 2 and message["possible_duplicate"] is True
            assert [(d["result"], d["status"]) for d in message["deliveries"]] == [
                ("unknown", "possible duplicate"), ("ok", "apprise ok")]
            page = httpx.get(f"http://127.0.0.1:{server.port}/notify/channels",
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
            assert page.status_code == 200 and "possible duplicate" in page.text and "2 attempts" in page.text
        finally:
            engine.dispose()
    finally:
        server.stop()
