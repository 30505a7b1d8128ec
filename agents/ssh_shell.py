"""An interactive shell on a pinned SSH host: a pty channel read by its own thread, written and resized from any thread.

Blocking: open_shell, write, resize and close run under asyncio.to_thread; output arrives through a callback called on
the reader thread. The host key is verified against the pins before any credential is sent (agents.ssh_conn.connect).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import paramiko

from agents.base import CollectError, Target
from agents.ssh import timeouts
from agents.ssh_conn import connect

TERM = "xterm-256color"
READ_CHUNK = 32 * 1024
MAX_COLS, MAX_ROWS = 500, 200
# Called on the reader thread with each piece of output, then once with None when the shell ends.
OutputSink = Callable[[bytes | None], None]


def clamp_size(cols: int, rows: int) -> tuple[int, int]:
    """A window size a pty accepts (a phone reports odd sizes while rotating)."""
    return max(2, min(int(cols), MAX_COLS)), max(1, min(int(rows), MAX_ROWS))


class Shell:
    """One shell channel on its own transport; close() ends both."""

    def __init__(self, transport: paramiko.Transport, channel: paramiko.Channel, sink: OutputSink) -> None:
        self._transport = transport
        self._channel = channel
        self._sink = sink
        self._reader = threading.Thread(target=self._read, name="pocketnoc-shell", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start delivering output to the sink."""
        self._reader.start()

    def _read(self) -> None:
        try:
            while True:
                data = self._channel.recv(READ_CHUNK)
                if not data:
                    break
                self._sink(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            self._sink(None)

    def try_write(self, data: bytes) -> int:
        """Send what the server's window takes now without blocking (keystrokes); returns how many bytes went."""
        if len(data) > 1024 or not self._lock.acquire(blocking=False):
            return 0
        try:
            # Only when nothing could make send() wait: window room, and no key exchange in progress.
            if self._channel.closed or not self._channel.send_ready() or not self._transport.clear_to_send.is_set():
                return 0
            return int(self._channel.send(data))
        except (OSError, EOFError, paramiko.SSHException, TimeoutError):
            return 0
        finally:
            self._lock.release()

    def write(self, data: bytes) -> None:
        """Send keystrokes (blocks while the server's window is full)."""
        with self._lock:
            if self._channel.closed:
                raise CollectError("the shell has ended")
            try:
                self._channel.sendall(data)
            except (OSError, EOFError, paramiko.SSHException) as e:
                raise CollectError(f"the shell has ended: {e}") from None

    def resize(self, cols: int, rows: int) -> None:
        """Tell the pty its new window size."""
        cols, rows = clamp_size(cols, rows)
        try:
            self._channel.resize_pty(width=cols, height=rows)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    @property
    def closed(self) -> bool:
        """The channel is closed (the shell exited or we closed it)."""
        return bool(self._channel.closed)

    def close(self) -> None:
        """End the shell and its connection (the remote shell gets a hangup)."""
        try:
            self._channel.close()
        finally:
            self._transport.close()

    def join(self, timeout: float) -> None:
        """Wait for the reader thread to deliver the last output."""
        if self._reader.is_alive():
            self._reader.join(timeout)


def open_shell(target: Target, cols: int, rows: int, sink: OutputSink) -> Shell:
    """Connect (pinned host key, stored credentials), open a pty of cols x rows and a login shell; output goes to sink."""
    if target.ssh is None:
        raise CollectError("no SSH credentials for this device")
    t = timeouts(target)
    transport = connect(target.address, target.port, target.ssh, t)
    try:
        channel = transport.open_session(timeout=t.command)
        cols, rows = clamp_size(cols, rows)
        channel.get_pty(term=TERM, width=cols, height=rows)
        channel.invoke_shell()
        channel.settimeout(None)
    except (OSError, EOFError, paramiko.SSHException) as e:
        transport.close()
        raise CollectError(f"cannot open a shell: {e}") from None
    return Shell(transport, channel, sink)
