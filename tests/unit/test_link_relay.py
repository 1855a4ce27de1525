"""The replication link's relay: a retarget drops the links to the old target."""

from __future__ import annotations

import socket
import threading
from contextlib import closing, suppress

from adapters.dr.relay import LinkRelay


class Named:
    """A TCP server that answers each connection with its name, then echoes."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket) -> None:
        with conn, suppress(OSError):
            conn.sendall(self.name)
            while data := conn.recv(1024):
                conn.sendall(data)

    def close(self) -> None:
        self.server.close()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except OSError:
        return True


def test_retarget_drops_links_to_the_old_primary_and_relays_new_ones() -> None:
    old, new = Named(b"old"), Named(b"new")
    relay = LinkRelay(old.port)
    try:
        with closing(connect(relay.port)) as before:
            assert before.recv(3) == b"old"
            relay.retarget(new.port)
            assert closed(before)  # a standby's walreceiver reconnects...
        with closing(connect(relay.port)) as after:
            assert after.recv(3) == b"new"  # ...to the new primary
            after.sendall(b"ping")
            assert after.recv(4) == b"ping"
            relay.retarget(new.port)  # the same target: nothing is dropped
            after.sendall(b"pong")
            assert after.recv(4) == b"pong"
    finally:
        relay.close()
        old.close()
        new.close()
