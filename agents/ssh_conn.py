"""Blocking paramiko plumbing for the SSH collector: connect, verify the pinned host key, log in, run.

Every function here blocks; callers run them under asyncio.to_thread.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.message import Message

from agents.base import CollectError, SshCredentials, Unreachable
from agents.ssh_checks import CommandResult
from agents.ssh_hostkeys import HostKeyMismatch, fingerprint, parse_pins, verify_host_key

PREAUTH_MAX_BYTES = 256 * 1024  # a real server sends a few KB before we are logged in
KEEPALIVE_SECONDS = 30
_READ_CHUNK = 32 * 1024
_KEY_CACHE_MAX = 64
# Pinned key type -> host key algorithms to ask for, so the server offers the pinned key.
_HOSTKEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}
# Called from the reading thread with ("stdout" | "stderr", bytes kept) as output arrives (live action output).
OutputSink = Callable[[str, bytes], None]
# paramiko logs every failed handshake as an ERROR traceback; we raise them to the poller instead.
PARAMIKO_LOGGER = "pocketnoc.ssh.paramiko"
logging.getLogger(PARAMIKO_LOGGER).setLevel(logging.CRITICAL)


class AuthFailed(CollectError):
    """The server refused our credentials."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed for each stage of a connection."""

    connect: float
    banner: float
    auth: float
    command: float


class _GuardedSocket:
    """A socket that refuses to receive more than `limit` bytes until disarmed (a pre-login flood guard)."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        self._sock = sock
        self._limit = limit
        self.received = 0
        self.flooded = False

    def recv(self, n: int) -> bytes:
        data = self._sock.recv(n)
        if self._limit:
            self.received += len(data)
            if self.received > self._limit:
                self.flooded = True
                raise OSError(errno.EMSGSIZE, "too much data before login")
        return data

    def disarm(self) -> None:
        self._limit = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


_key_cache: dict[tuple[Any, ...], paramiko.PKey] = {}
_key_lock = threading.Lock()


def _key_from_text(text: str, passphrase: str | None) -> paramiko.PKey:
    data = text.encode()
    password = passphrase.encode() if passphrase else None
    loaded: Any = None
    problem = "not an SSH private key"
    for loader in (serialization.load_ssh_private_key, serialization.load_pem_private_key):
        try:
            try:
                loaded = loader(data, password)
            except TypeError as e:
                # A passphrase given for an unencrypted key is harmless; a missing one is not.
                if password is None or "not encrypted" not in str(e):
                    raise CollectError(f"cannot load SSH key: {e}") from None
                password, passphrase = None, None
                loaded = loader(data, None)
            break
        except ValueError as e:
            problem = str(e)
    if loaded is None:
        raise CollectError(f"cannot load SSH key: {problem}")
    classes: dict[type[Any], type[paramiko.PKey]] = {
        rsa.RSAPrivateKey: paramiko.RSAKey,
        ed25519.Ed25519PrivateKey: paramiko.Ed25519Key,
        ec.EllipticCurvePrivateKey: paramiko.ECDSAKey,
    }
    for base, cls in classes.items():
        if isinstance(loaded, base):
            return cls.from_private_key(io.StringIO(text), password=passphrase)
    raise CollectError(f"unsupported SSH key type {type(loaded).__name__}")


def load_key(creds: SshCredentials) -> paramiko.PKey | None:
    """The private key from key_data or key_file, parsed once and cached (KDFs are slow)."""
    if creds.key_data:
        cache_key: tuple[Any, ...] = ("data", hashlib.sha256(creds.key_data.encode()).digest())
    elif creds.key_file:
        try:
            stat = os.stat(creds.key_file)
        except OSError as e:
            raise CollectError(f"cannot read SSH key file: {e.strerror}") from None
        cache_key = ("file", creds.key_file, stat.st_mtime_ns, stat.st_size)
    else:
        return None
    cache_key += (creds.key_passphrase,)
    with _key_lock:
        if cache_key in _key_cache:
            return _key_cache[cache_key]
    if creds.key_data:
        text = creds.key_data
    else:
        try:
            with open(cast(str, creds.key_file), encoding="utf-8", errors="replace") as f:
                text = f.read(1024 * 1024)
        except OSError as e:
            raise CollectError(f"cannot read SSH key file: {e.strerror}") from None
    try:
        key = _key_from_text(text, creds.key_passphrase)
    except paramiko.SSHException as e:
        raise CollectError(f"cannot load SSH key: {e}") from None
    with _key_lock:
        if len(_key_cache) >= _KEY_CACHE_MAX:
            _key_cache.clear()
        _key_cache[cache_key] = key
    return key


def _authenticate(transport: paramiko.Transport, creds: SshCredentials) -> None:
    key = load_key(creds)
    if key is None and creds.password is None:
        raise CollectError("no SSH key or password configured")
    try:
        if key is not None:
            try:
                transport.auth_publickey(creds.user, key)
            except paramiko.AuthenticationException:
                if creds.password is None:
                    raise
        if not transport.is_authenticated() and creds.password is not None:
            transport.auth_password(creds.user, creds.password)
    except paramiko.BadAuthenticationType as e:
        raise AuthFailed(f"authentication refused; server allows {', '.join(e.allowed_types)}") from None
    except paramiko.AuthenticationException as e:
        if "timeout" in str(e).lower():
            raise CollectError(f"SSH authentication timed out after {transport.auth_timeout:g}s") from None
        raise AuthFailed(f"authentication failed for {creds.user!r}: {e}") from None
    except (paramiko.SSHException, EOFError, OSError) as e:
        raise CollectError(f"SSH authentication did not complete: {e}") from None
    if not transport.is_authenticated():
        raise AuthFailed(f"authentication incomplete for {creds.user!r}")


def connect(address: str, port: int, creds: SshCredentials, t: Timeouts) -> paramiko.Transport:
    """A logged-in transport, with the host key verified against the pins before any credential is sent."""
    try:
        sock = socket.create_connection((address, port), timeout=t.connect)
    except TimeoutError:
        raise Unreachable(f"TCP connect to {address}:{port} timed out after {t.connect:g}s") from None
    except OSError as e:
        raise Unreachable(f"cannot connect to {address}:{port}: {e.strerror or e}") from None
    guarded = _GuardedSocket(sock, PREAUTH_MAX_BYTES)
    try:
        # paramiko leaves Nagle on, which costs ~45 ms per exchange (FIELD-NOTES).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(cast(socket.socket, guarded))
    except BaseException:
        sock.close()
        raise
    transport.set_log_channel(PARAMIKO_LOGGER)
    try:
        transport.banner_timeout = t.banner
        transport.handshake_timeout = t.banner
        transport.auth_timeout = t.auth
        _blobs, prints, types = parse_pins(creds.host_keys)
        if types and not prints:
            # Ask only for pinned key types (in paramiko's order), as OpenSSH does with known_hosts.
            allowed = {a for k in types for a in _HOSTKEY_ALGORITHMS.get(k, (k,))}
            options = transport.get_security_options()
            known = [a for a in options.key_types if a in allowed]
            if known:
                options.key_types = known
        _handshake(transport, guarded, address, port, t, creds)
        verify_host_key(transport.get_remote_server_key(), creds.host_keys)
        _authenticate(transport, creds)
        guarded.disarm()
        transport.set_keepalive(KEEPALIVE_SECONDS)
        return transport
    except BaseException:
        transport.close()
        raise


def _handshake(
    transport: paramiko.Transport,
    guarded: _GuardedSocket,
    address: str,
    port: int,
    t: Timeouts,
    creds: SshCredentials,
) -> None:
    start = time.monotonic()
    try:
        transport.start_client(timeout=t.banner)
        # start_client returns quietly when its timeout passes mid-exchange; this raises then.
        transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as e:
        timed_out = time.monotonic() - start >= t.banner * 0.9
        where = f"{address}:{port}"
        if guarded.flooded:
            raise CollectError(f"{where} sent over {PREAUTH_MAX_BYTES} bytes before login") from None
        if guarded.received == 0:
            why = f"within {t.banner:g}s" if timed_out else "(connection closed)"
            raise Unreachable(f"no SSH banner from {where} {why}") from None
        if timed_out:
            raise Unreachable(f"SSH handshake with {where} timed out after {t.banner:g}s") from None
        if "no acceptable host key" in str(e) and creds.host_keys:
            blobs, prints, _types = parse_pins(creds.host_keys)
            raise HostKeyMismatch(sorted({fingerprint(b) for b in blobs} | prints), None, None) from None
        raise CollectError(f"SSH handshake with {where} failed: {e or type(e).__name__}") from None


def _signal_kill(channel: paramiko.Channel) -> None:
    # An SSH "signal" request: sshd kills the command's process group (closing alone would orphan it).
    message = Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("signal")
    message.add_boolean(False)
    message.add_string("KILL")
    try:
        channel.transport._send_user_message(message)  # type: ignore[union-attr]
    except (paramiko.SSHException, EOFError, OSError):
        pass


class ChannelOpenFailed(CollectError):
    """No channel could be opened; dead says whether the connection itself is gone."""

    def __init__(self, message: str, dead: bool) -> None:
        super().__init__(message)
        self.dead = dead


def execute(
    transport: paramiko.Transport,
    command: str,
    timeout: float,
    max_stdout: int,
    max_stderr: int,
    on_output: OutputSink | None = None,
) -> CommandResult:
    """Run one command on a new channel, reading at most the caps, killing it when over time or cap."""
    start = time.monotonic()
    try:
        channel = transport.open_session(timeout=min(timeout, 15.0))
    except paramiko.ChannelException as e:
        raise ChannelOpenFailed(f"SSH server refused a channel: {e}", dead=False) from None
    except (paramiko.SSHException, EOFError, OSError) as e:
        raise ChannelOpenFailed(f"SSH connection lost: {e or type(e).__name__}", dead=True) from None
    try:
        # paramiko waits for the server's answer to the exec request with no time limit: a server (or a
        # saturated link) that never answers would hold this thread for good. Closing the channel wakes it.
        expired = threading.Event()
        answered = threading.Lock()  # held from the answer on: a late watchdog must not close a started command

        def expire() -> None:
            if answered.acquire(blocking=False):
                expired.set()
                try:
                    channel.close()
                except (EOFError, OSError):  # the transport died first: nothing left to close
                    pass

        watchdog = threading.Timer(min(timeout, 15.0), expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            channel.exec_command(command)
            if not answered.acquire(blocking=False):  # the watchdog fired at the same moment: the channel is closing
                raise CollectError(f"SSH server did not start the command within {min(timeout, 15.0):g}s")
        except (paramiko.SSHException, EOFError, OSError) as e:
            if expired.is_set():
                raise CollectError(f"SSH server did not start the command within {min(timeout, 15.0):g}s") from None
            raise CollectError(f"SSH server refused the command: {e or type(e).__name__}") from None
        finally:
            watchdog.cancel()
        result = _read(channel, start, start + timeout, max_stdout, max_stderr, on_output)
    finally:
        channel.close()
    if result.exit_code is None and not (result.timed_out or result.truncated) and not transport.is_active():
        raise CollectError("SSH connection lost while the command ran")
    return result


def _read(
    channel: paramiko.Channel, start: float, deadline: float, max_out: int, max_err: int, sink: OutputSink | None = None
) -> CommandResult:
    out, err = bytearray(), bytearray()
    truncated = timed_out = False
    fd = channel.fileno()
    while True:
        while channel.recv_ready() and not truncated:
            data = channel.recv(_READ_CHUNK)
            room = max_out - len(out)
            out += data[:room]
            truncated = len(data) > room
            if sink is not None and data[:room]:
                sink("stdout", data[:room])
        while channel.recv_stderr_ready():
            # Past the cap stderr is drained and dropped, so the command never stalls on it.
            data = channel.recv_stderr(_READ_CHUNK)
            kept = data[: max(0, max_err - len(err))]
            err += kept
            if sink is not None and kept:
                sink("stderr", kept)
        if truncated:
            break
        finished = channel.closed or (channel.eof_received and channel.exit_status_ready())
        if finished and not channel.recv_ready() and not channel.recv_stderr_ready():
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        if channel.eof_received:
            # After EOF the poll fd stays readable: wait for the exit status instead of spinning.
            channel.status_event.wait(min(remaining, 1.0))
        else:
            select.select([fd], [], [], min(remaining, 1.0))
    exit_code: int | None = None
    if truncated or timed_out:
        _signal_kill(channel)
    elif channel.exit_status_ready() and channel.exit_status >= 0:
        exit_code = channel.exit_status
    return CommandResult(exit_code, bytes(out), bytes(err), time.monotonic() - start, truncated, timed_out)
