"""A loopback TCP relay for the replication link: added delay, and a cut switch.

Every chunk read from one side is released to the other ``delay_ms`` later, so
WAL really arrives late and the standby's lag is real. ``cut()`` closes every
relayed connection and refuses new ones (a partition); ``restore()`` heals it.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time

import structlog

log = structlog.get_logger("conductor.dr.relay")

_CHUNK = 65536


class LinkRelay:
    """Forward 127.0.0.1:port to target_port with a one-way delay per direction."""

    def __init__(self, target_port: int, *, delay_ms: int = 0, port: int = 0) -> None:
        self.target_port = target_port
        self.delay_ms = delay_ms
        self._server = socket.create_server(("127.0.0.1", port))
        self.port: int = self._server.getsockname()[1]
        self._cut = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(
            target=self._accept, name="dr-relay", daemon=True
        )
        self._thread.start()

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones until restore()."""
        self._cut.set()
        self._close_all()
        log.info("link_cut", port=self.port)

    def restore(self) -> None:
        """Accept and relay connections again."""
        self._cut.clear()
        log.info("link_restored", port=self.port)

    def retarget(self, target_port: int) -> None:
        """Relay new connections to target_port, and drop the ones made to the
        old target: they lead to a node that is no longer the primary. (A
        standby restarted before its relay moved would otherwise stream from
        whatever the old target is now, even itself, and never reconnect.)"""
        if target_port == self.target_port:
            return
        self.target_port = target_port
        self._close_all()
        log.info("link_retargeted", port=self.port, target_port=target_port)

    def close(self) -> None:
        self._stopped.set()
        self._cut.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self._server.close()
        self._close_all()
        self._thread.join(timeout=5)

    def _close_all(self) -> None:
        with self._lock:
            doomed, self._sockets = self._sockets, set()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(
                    ("127.0.0.1", self.target_port), timeout=5
                )
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets |= {client, upstream}
            self._pipe(client, upstream)
            self._pipe(upstream, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        chunks: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
        threading.Thread(
            target=self._read, args=(source, chunks), name="dr-relay-read", daemon=True
        ).start()
        threading.Thread(
            target=self._write, args=(sink, chunks), name="dr-relay-write", daemon=True
        ).start()

    def _read(
        self, source: socket.socket, chunks: queue.SimpleQueue[tuple[float, bytes]]
    ) -> None:
        while True:
            try:
                data = source.recv(_CHUNK)
            except OSError:
                data = b""
            chunks.put((time.monotonic() + self.delay_ms / 1000, data))
            if not data:
                return

    def _write(
        self, sink: socket.socket, chunks: queue.SimpleQueue[tuple[float, bytes]]
    ) -> None:
        while True:
            due, data = chunks.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not data or self._cut.is_set():
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_RDWR)
                return
            try:
                sink.sendall(data)
            except OSError:
                return
