"""A real local HTTP server standing in for an issue tracker's webhook."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.integration.server import free_port


class SinkServer:
    """Records every POST; answers ``status`` (or is down after stop())."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.status = 201
        self.reply: dict[str, Any] | None = None
        """The JSON answer to an open; default {"id": "ISSUE-<n>"}."""
        self.delay_s = 0.0
        self.gate: threading.Event | None = None
        """When set, a request waits for it (arrival is signalled on ``arrived``)."""
        self.arrived = threading.Event()
        self.requests: list[tuple[int, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> SinkServer:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                sink.arrived.set()
                if sink.gate is not None:
                    sink.gate.wait(10)
                time.sleep(sink.delay_s)
                with sink._lock:
                    status = sink.status
                    sink.requests.append((status, body))
                    n = sum(1 for s, b in sink.requests if b["action"] == "open")
                reply = sink.reply if sink.reply is not None else {"id": f"ISSUE-{n}"}
                data = json.dumps(reply).encode() if status < 300 else b"down"
                self.send_response(status)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self, action: str) -> list[dict[str, Any]]:
        """Bodies of the requests of ``action`` that got a 2xx."""
        with self._lock:
            return [b for s, b in self.requests if s < 300 and b["action"] == action]

    def received(self) -> int:
        with self._lock:
            return len(self.requests)
