"""A real OpenSSH sshd on a loopback port, with generated host and user keys, for SSH tests."""

from __future__ import annotations

import atexit
import fcntl
import functools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
TEST_USER = "pnoc-test"
# Shared by every test session on this machine, so concurrent runs agree on the password.
_STATE_DIR = Path(tempfile.gettempdir()) / "pocketnoc-test-user"
_START_TIMEOUT = 20.0


@dataclass
class SshdPeer:
    """One running sshd: where it listens, how to log in, and its log."""

    port: int
    host_key_line: str
    user: str
    password: str
    key_path: str
    rsa_key_path: str
    passphrase_key_path: str
    passphrase: str
    log_path: Path
    directory: Path
    _proc: subprocess.Popen[bytes] = field(repr=False)
    _shared_dir: Path = field(repr=False)

    def log_text(self) -> str:
        """The sshd log so far (it logs to stderr with -e)."""
        return self.log_path.read_text(errors="replace")

    def count(self, needle: str) -> int:
        """How many log lines contain needle."""
        return sum(needle in line for line in self.log_text().splitlines())

    def stop(self) -> None:
        """Stop sshd and remove the world-readable key directory."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        shutil.rmtree(self._shared_dir, ignore_errors=True)


def ensure_test_user() -> tuple[str, str]:
    """Create the unprivileged test user once per machine and return (user, password)."""
    _STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    password_file = _STATE_DIR / "password"
    with (_STATE_DIR / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        home = Path("/var/lib") / TEST_USER
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", TEST_USER],
                check=True,
                capture_output=True,
            )
            password_file.unlink(missing_ok=True)
        # An empty home: no rc files, so the per-command cost is the command itself (FIELD-NOTES).
        home.mkdir(mode=0o755, exist_ok=True)
        entry = pwd.getpwnam(TEST_USER)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        if password_file.exists():
            password = password_file.read_text().strip()
        else:
            password = secrets.token_urlsafe(18)
            subprocess.run(["chpasswd"], input=f"{TEST_USER}:{password}\n".encode(), check=True, capture_output=True)
            password_file.write_text(password)
            password_file.chmod(0o600)
    return TEST_USER, password


def _keygen(path: Path, kind: str, passphrase: str = "", bits: int | None = None) -> str:
    """Generate a key pair at path and return the public key line (type and base64 only)."""
    args = [SSH_KEYGEN, "-q", "-t", kind, "-N", passphrase, "-C", "", "-f", str(path)]
    if bits:
        args += ["-b", str(bits)]
    subprocess.run(args, check=True, capture_output=True)
    kind_name, blob = path.with_suffix(".pub").read_text().split()[:2]
    return f"{kind_name} {blob}"


_CLIENT_KEYS = ("id_ed25519", "id_rsa", "id_pass")


@functools.cache
def _client_key_pairs() -> tuple[Path, str, tuple[str, ...]]:
    """The user's key pairs, generated once per test process (an RSA 3072 key takes a second or more on a busy
    machine): a directory of them, the passphrase of id_pass and the public key lines."""
    source = Path(tempfile.mkdtemp(prefix="pnoc-sshd-client-"))
    atexit.register(shutil.rmtree, source, True)
    passphrase = secrets.token_urlsafe(12)
    public = (
        _keygen(source / "id_ed25519", "ed25519"),
        _keygen(source / "id_rsa", "rsa", bits=3072),
        _keygen(source / "id_pass", "ed25519", passphrase=passphrase),
    )
    return source, passphrase, public


def _client_keys(directory: Path) -> tuple[str, list[str]]:
    """Copies of the process's user key pairs in a server's directory: (passphrase of id_pass, public key lines)."""
    source, passphrase, public = _client_key_pairs()
    for name in _CLIENT_KEYS:
        for suffix in ("", ".pub"):
            shutil.copy2(source / f"{name}{suffix}", directory / f"{name}{suffix}")
    return passphrase, list(public)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(d: Path, port: int, host_key: Path, authorized: Path, user: str) -> str:
    return "\n".join(
        [
            f"ListenAddress 127.0.0.1:{port}",
            f"HostKey {host_key}",
            f"PidFile {d / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            f"AllowUsers {user}",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "LogLevel VERBOSE",
            "MaxStartups 100:30:200",
            "MaxSessions 20",
            "",
        ]
    )


def _wait_listening(proc: subprocess.Popen[bytes], log: Path, port: int) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if "Server listening" in log.read_text(errors="replace"):
            return True
        time.sleep(0.05)
    return False


def start_sshd(tmp_path: Path, host_key_type: str = "ed25519") -> SshdPeer:
    """Start sshd on 127.0.0.1:<free port> with fresh keys under tmp_path; call stop() when done."""
    user, password = ensure_test_user()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix="sshd-", dir=tmp_path))
    host_key_line = _keygen(d / "host_key", host_key_type)  # each server its own host key
    passphrase, public = _client_keys(d)
    # sshd reads authorized_keys as the user, who cannot traverse pytest's 0700 tmp dirs.
    shared = Path(tempfile.mkdtemp(prefix="pnoc-sshd-keys-"))
    shared.chmod(0o755)
    authorized = shared / "authorized_keys"
    authorized.write_text("\n".join(public) + "\n")
    authorized.chmod(0o644)
    log = d / "sshd.log"
    for _attempt in range(5):
        port = free_port()
        conf = d / "sshd_config"
        conf.write_text(_config(d, port, d / "host_key", authorized, user))
        with log.open("wb") as log_file:
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)
        if _wait_listening(proc, log, port):
            return SshdPeer(
                port=port,
                host_key_line=host_key_line,
                user=user,
                password=password,
                key_path=str(d / "id_ed25519"),
                rsa_key_path=str(d / "id_rsa"),
                passphrase_key_path=str(d / "id_pass"),
                passphrase=passphrase,
                log_path=log,
                directory=d,
                _proc=proc,
                _shared_dir=shared,
            )
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    shutil.rmtree(shared, ignore_errors=True)
    raise RuntimeError(f"sshd did not start: {log.read_text(errors='replace')[-2000:]}")
