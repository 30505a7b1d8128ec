"""Run one snmpsim process that serves a directory of recordings on many loopback UDP endpoints."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import errno
import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from server.demo.snmprec import VARIATION
from server.store import filemodes

SIMVAR = Path(__file__).with_name("simvar.py")
RESPONDER = "snmpsim-command-responder"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_PROBE_EVERY = 0.1  # while snmpsim starts: a late first answer costs at most this
_LOG_TAIL = 4000
_SYS_UPTIME = bytes.fromhex("06082b06010201010300")  # BER OID 1.3.6.1.2.1.1.3.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class SimError(RuntimeError):
    """snmpsim could not be started, or did not answer in time."""


class SimPortTaken(SimError):
    """Another process (often another demo's snmpsim) already holds a UDP endpoint the simulator needs."""

    def __init__(self, address: str, port: int) -> None:
        super().__init__(f"UDP {address}:{port} is already in use")
        self.address = address
        self.port = port


def check_endpoints_free(endpoints: list[tuple[str, int]]) -> None:
    """Raise SimPortTaken for the first endpoint something else listens on (its answers would pass for ours)."""
    for address, port in endpoints:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise SimPortTaken(address, port) from None
                raise SimError(f"cannot use UDP {address}:{port}: {exc.strerror}") from None


@dataclass
class SimHandle:
    """A running snmpsim: its process, endpoints and log; stop() ends it (also at interpreter exit)."""

    process: subprocess.Popen[bytes]
    endpoints: list[tuple[str, int]]
    log_path: Path
    pid_file: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        """The snmpsim process id."""
        return self.process.pid

    def running(self) -> bool:
        """Whether snmpsim is still alive."""
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Terminate snmpsim (kill it if it lingers); safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        with contextlib.suppress(OSError, ValueError):
            if int(self.pid_file.read_text()) == self.process.pid:
                self.pid_file.unlink()

    def __enter__(self) -> SimHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def state_dir(data_dir: Path) -> Path:
    """Where snmpsim's index cache, variation module and pid file for data_dir live (a sibling)."""
    return data_dir.parent / f"{data_dir.name}.snmpsim"


def start_snmpsim(data_dir: Path, endpoints: list[tuple[str, int]], log_path: Path,
                  timeout: float = START_TIMEOUT) -> SimHandle:
    """Start snmpsim for the recordings in data_dir and return once every endpoint answers."""
    data_dir = data_dir.resolve()
    communities = sorted(path.stem for path in data_dir.glob("*.snmprec"))
    if not communities:
        raise SimError(f"no .snmprec recordings in {data_dir}")
    if not endpoints:
        raise SimError("no endpoints to serve")
    if "=" in str(data_dir):
        raise SimError(f"snmpsim cannot take a --data-dir containing '=': {data_dir}")
    state = state_dir(data_dir)
    variation_dir, cache_dir, pid_file = state / "variation", state / "cache", state / "snmpsim.pid"
    _reap_stale(pid_file, data_dir)
    check_endpoints_free(endpoints)  # a taken port would have us poll (and SET) whoever holds it
    variation_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SIMVAR, variation_dir / f"{VARIATION}.py")
    command = [
        *_responder(), "--log-level=error", f"--data-dir={data_dir}", f"--cache-dir={cache_dir}",
        f"--variation-modules-dir={variation_dir}",
        *(f"--agent-udpv4-endpoint={address}:{port}" for address, port in endpoints),
    ]
    env = dict(os.environ)
    if os.geteuid() == 0:
        # snmpsim refuses to run as root unless told to drop to a user; staying root keeps the venv readable.
        env["SNMPSIM_ALLOW_ROOT"] = "true"
        command += [f"--process-user={pwd.getpwuid(0).pw_name}", f"--process-group={grp.getgrgid(0).gr_name}"]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(filemodes.open_private(log_path), "ab") as log:
        # Own session: a Ctrl-C in the terminal reaches the demo, which stops snmpsim in order. The parent-death
        # signal makes the kernel kill snmpsim when the demo dies any other way (SIGKILL, a crash).
        process = subprocess.Popen(  # noqa: S603  -- fixed argv from our own paths, no shell
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
            preexec_fn=_die_with_parent(),  # only prctl() and getppid() run between fork and exec
        )
    handle = SimHandle(process, list(endpoints), log_path, pid_file)
    atexit.register(handle.stop)
    pid_file.write_text(f"{process.pid}\n")
    try:
        _wait_until_answering(handle, communities[0].encode(), timeout)
    except BaseException:
        handle.stop()
        raise
    return handle


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGKILL the child when this process ends (None where prctl is absent)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)  # loaded before the fork
    parent = os.getpid()

    def hook() -> None:
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # the parent died between fork and prctl: nobody would stop us
            os._exit(0)

    return hook


def _responder() -> list[str]:
    """The snmpsim console script of the running interpreter's environment."""
    script = Path(sys.executable).parent / RESPONDER
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "snmpsim.commands.responder"]


def _reap_stale(pid_file: Path, data_dir: Path) -> None:
    """Stop a snmpsim left behind by a killed parent, if it serves this very data_dir."""
    try:
        pid = int(pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if f"--data-dir={data_dir}".encode() not in cmdline or not any(b"snmpsim" in arg for arg in cmdline):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether pid runs (a zombie waiting for its parent has already let go of its ports)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] not in (["Z"], ["X"])


def _tlv(tag: int, payload: bytes) -> bytes:
    """One BER tag-length-value."""
    size = len(payload)
    if size < 0x80:
        return bytes([tag, size]) + payload
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + payload


def get_request(community: bytes, request_id: int) -> bytes:
    """An SNMPv2c GET of sysUpTime.0, hand-encoded so probing needs no SNMP engine."""
    varbind = _tlv(0x30, _tlv(0x30, _SYS_UPTIME + b"\x05\x00"))
    pdu = _tlv(0xA0, _tlv(0x02, request_id.to_bytes(4, "big")) + b"\x02\x01\x00\x02\x01\x00" + varbind)
    return _tlv(0x30, b"\x02\x01\x01" + _tlv(0x04, community) + pdu)


def _wait_until_answering(handle: SimHandle, community: bytes, timeout: float) -> None:
    """Probe every endpoint until each has answered once; fail if snmpsim exits or time runs out."""
    waiting = {(address, port) for address, port in handle.endpoints}
    request = get_request(community, secrets.randbelow(1 << 31))
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(_PROBE_EVERY)
        while waiting:
            if handle.process.poll() is not None:
                raise SimError(f"snmpsim exited with {handle.process.returncode}: {_tail(handle.log_path)}")
            if time.monotonic() > deadline:
                raise SimError(f"snmpsim did not answer on {sorted(waiting)[:5]} within {timeout:.0f}s: "
                               f"{_tail(handle.log_path)}")
            for endpoint in waiting:
                sock.sendto(request, endpoint)
            with contextlib.suppress(TimeoutError):
                while waiting:
                    _, sender = sock.recvfrom(65535)
                    waiting.discard((sender[0], sender[1]))


def _tail(path: Path) -> str:
    """The end of a log file, for error messages."""
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - _LOG_TAIL))
            return log.read().decode("utf-8", errors="replace").strip()
    except OSError:
        return "(no log)"
