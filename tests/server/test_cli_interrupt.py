"""Ctrl-C (SIGINT to the foreground process group, as a terminal sends it) ends serve, demo, worker and `make run`
with one line, exit status 130 and no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.peers import healthz
from tests.server.conftest import POCKETNOC
from tests.server.scaleout_cluster import Cluster, free_tcp_port

ROOT = Path(__file__).resolve().parents[2]
STOPPED = "pocketnoc: stopped (Ctrl-C)"


def _start(args: list[str], cwd: Path | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETNOC_")}
    return subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
        start_new_session=True,  # its own process group: the SIGINT below reaches it and its children, as Ctrl-C does
    )  # fmt: skip


def _wait_healthy(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"it ended early ({proc.returncode}):\n{out}\n{err}")
        if healthz.answers(f"http://127.0.0.1:{port}"):
            return
        time.sleep(0.2)
    raise AssertionError("no /healthz answer")


def _ctrl_c(proc: subprocess.Popen[str]) -> tuple[int, str]:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return proc.returncode, err


def _assert_one_line(err: str) -> None:
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert err.count(STOPPED) == 1 and err.rstrip().endswith(STOPPED), err
    assert "make: ***" not in err, err


def test_ctrl_c_ends_serve_with_one_line_and_130(tmp_path: Path) -> None:
    port = free_tcp_port()
    proc = _start([str(POCKETNOC), "serve", "--data-dir", str(tmp_path / "data"), "--port", str(port)])
    _wait_healthy(proc, port)
    code, err = _ctrl_c(proc)
    assert code == 130, err
    _assert_one_line(err)


def test_ctrl_c_ends_the_demo_with_one_line_and_130(tmp_path: Path) -> None:
    port, sim_port = free_tcp_port(), free_tcp_port()
    args = ["demo", "--data-dir", str(tmp_path / "data"), "--port", str(port), "--sim-port", str(sim_port)]
    proc = _start([str(POCKETNOC), *args])
    _wait_healthy(proc, port)
    code, err = _ctrl_c(proc)
    assert code == 130, err
    _assert_one_line(err)


def test_ctrl_c_ends_make_run_with_one_line(tmp_path: Path) -> None:
    venv = Path(sys.executable).parent.parent
    port = free_tcp_port()
    # -o: never reinstall the venv from this test; the recipe runs as `make run` does.
    args = ["make", "-s", "-o", f"{venv}/bin/pocketnoc", "run", f"VENV={venv}", f"DATA={tmp_path / 'data'}", f"PORT={port}"]
    proc = _start(args, cwd=ROOT)
    _wait_healthy(proc, port)
    code, err = _ctrl_c(proc)
    assert code in (130, -signal.SIGINT), err  # make re-raises SIGINT on itself: the shell shows 130
    _assert_one_line(err)


def test_ctrl_c_ends_a_worker_with_one_line_and_130(tmp_path: Path, pg_url: str) -> None:
    cluster = Cluster(tmp_path, pg_url, devices=[])
    try:
        cluster.worker("w-int")
        proc = cluster.procs["w-int"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, cluster.log("w-int")
        log = cluster.log("w-int")
        assert "Traceback" not in log and log.rstrip().endswith(STOPPED), log
    finally:
        cluster.stop()
