"""`LoopbackServer`: a JSON server on a free 127.0.0.1 port for the demo teacher and the test stubs."""

import json
import socket
import urllib.request

from infimed.core.loopback_server import JSONRequestHandler, LoopbackServer


class _Echo(JSONRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("raw"):
            self.send_json(201, body["raw"].encode())
        else:
            self.send_json(200, {"echo": body, "owner": type(self.owner).__name__})


def _post(url: str, body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def test_serves_json_and_raw_bodies_then_releases_the_port():
    with LoopbackServer(_Echo) as server:
        assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
        status, raw = _post(server.base_url + "/chat/completions", {"x": 1})
        assert status == 200 and json.loads(raw) == {"echo": {"x": 1}, "owner": "LoopbackServer"}
        assert _post(server.base_url, {"raw": "plain"}) == (201, b"plain")
        port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as probe:  # the listener is closed on exit: the port can be bound again
        # SO_REUSEADDR only passes the finished connections' TIME_WAIT; Linux refuses it while a listener is open
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
