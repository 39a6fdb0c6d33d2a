"""A JSON HTTP server on 127.0.0.1 in a daemon thread: the one serving mechanism of InfiMed's local stand-ins.

The demo's stand-in CoT teacher (`infimed.data.demo_teacher`) and the tests' OpenAI-compatible stubs both answer
`POST /v1/chat/completions` on a loopback port; this class owns what they share: binding (``port=0`` picks a free
port), the serving thread, ``base_url`` and the context-manager lifecycle. Subclasses pass a
`JSONRequestHandler` subclass, which gets the server object as ``handler.owner``.

    class Echo(LoopbackServer):
        def __init__(self):
            super().__init__(EchoHandler)            # EchoHandler(JSONRequestHandler) implements do_POST
    with Echo() as server:
        requests.post(server.base_url + "/chat/completions", json={...})
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["JSONRequestHandler", "LoopbackServer"]


class JSONRequestHandler(BaseHTTPRequestHandler):
    """A request handler that answers in JSON and logs nothing (a line per request would drown the output)."""

    owner: Any  # the LoopbackServer serving this handler, set by LoopbackServer

    def log_message(self, *args):
        pass

    def send_json(self, status: int, body: Any) -> None:
        """Send ``body`` with ``status``: a dict or list as JSON, ``bytes``/``str`` as they are."""
        if isinstance(body, bytes):
            raw = body
        else:
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


class LoopbackServer:
    """Serve ``handler`` on 127.0.0.1:``port`` (0: a free port) in a daemon thread while used as a context manager."""

    def __init__(self, handler: type[JSONRequestHandler], port: int = 0):
        bound = type(handler.__name__, (handler,), {"owner": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), bound)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (a command-line server), then release the port."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
