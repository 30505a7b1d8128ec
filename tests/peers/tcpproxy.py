"""A TCP proxy on loopback that can be paused like a cut cable: nothing passes and nothing is closed until resumed.

While paused, bytes are neither read nor forwarded (they wait in the kernel's buffers), new
connections are accepted but not passed on, and a peer's close is not seen by the other side:
exactly what a silent network partition looks like to both ends. `resume()` lets it all through.
"""

from __future__ import annotations

import select
import socket
import threading
from dataclasses import dataclass, field


@dataclass
class TcpProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; `pause()`/`resume()` cut and restore the link."""

    upstream: tuple[str, int]
    port: int = 0
    _open: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _server: socket.socket | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> TcpProxy:
        """Listen and forward (not paused)."""
        self._open.set()
        server = socket.create_server(("127.0.0.1", self.port))
        server.settimeout(0.2)
        self._server, self.port = server, server.getsockname()[1]
        self._spawn(self._accept)
        return self

    def pause(self) -> None:
        """Cut the link: nothing passes either way, nothing is closed."""
        self._open.clear()

    def resume(self) -> None:
        """Restore the link."""
        self._open.set()

    def stop(self) -> None:
        """Close everything."""
        self._stop.set()
        self._open.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._server is not None:
            self._server.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            self._spawn(self._pipe, client)

    def _pipe(self, client: socket.socket) -> None:
        while not self._open.wait(0.2):  # a connection made during the cut hangs, as SYNs into a dead link would
            if self._stop.is_set():
                client.close()
                return
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        ends = {client: upstream, upstream: client}
        try:
            while not self._stop.is_set():
                if not self._open.wait(0.2):
                    continue
                readable, _, _ = select.select(list(ends), [], [], 0.2)
                for sock in readable:
                    if not self._open.is_set():
                        break
                    data = sock.recv(65536)
                    if not data:
                        return
                    ends[sock].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()
