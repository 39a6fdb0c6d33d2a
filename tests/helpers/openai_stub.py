"""A loopback stand-in for an OpenAI-compatible ``/v1/chat/completions`` endpoint, for offline tests.

    from tests.helpers.openai_stub import OpenAIStub

    with OpenAIStub(lambda request: '{"score": 4}') as stub:
        client = OpenAIChatClient(stub.base_url, "stub-model")
        ...
        stub.requests  # every JSON body received, in arrival order

The responder gets the decoded request body (``model``, ``messages``, sampling params) and returns either
- a ``str``: the assistant message content (HTTP 200),
- an ``int``: an HTTP error status with a small error body,
- a ``(status, body)`` tuple: full control (``body`` a dict is sent as JSON, ``bytes``/``str`` sent raw),
- or raises: HTTP 500.
``scripted(responses)`` turns a list of such replies into a responder that hands them out in order.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from infimed.core.loopback_server import JSONRequestHandler, LoopbackServer

__all__ = ["OpenAIStub", "scripted", "last_user_text"]


def scripted(responses: list[Any]) -> Callable[[dict], Any]:
    """A responder returning ``responses`` one after another (thread-safe); 500 once they run out."""
    lock = threading.Lock()
    queue = list(responses)

    def responder(_request: dict) -> Any:
        with lock:
            return queue.pop(0) if queue else 500

    return responder


def last_user_text(request: dict) -> str:
    """The text of the last user message of a request body (string or content-part list)."""
    for message in reversed(request.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""


class _Handler(JSONRequestHandler):
    owner: "OpenAIStub"

    def do_POST(self):  # noqa: N802 - http.server naming
        length = int(self.headers.get("Content-Length", 0))
        try:
            request = json.loads(self.rfile.read(length))
        except ValueError:
            self.send_json(400, {"error": {"message": "body is not JSON"}})
            return
        with self.owner._lock:
            self.owner.requests.append(request)
            self.owner.headers.append(dict(self.headers))
        if not self.path.endswith("/chat/completions"):
            self.send_json(404, {"error": {"message": f"unknown path {self.path}"}})
            return
        try:
            reply = self.owner.responder(request)
        except Exception as exc:  # noqa: BLE001 - the stub reports responder bugs as server errors
            self.send_json(500, {"error": {"message": repr(exc)}})
            return
        if isinstance(reply, tuple):
            self.send_json(*reply)
        elif isinstance(reply, int):
            self.send_json(reply, {"error": {"message": f"scripted status {reply}"}})
        else:
            body = {
                "id": f"stub-{len(self.owner.requests)}",
                "object": "chat.completion",
                "model": request.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            }
            self.send_json(200, body)


class OpenAIStub(LoopbackServer):
    """Serve ``responder`` on 127.0.0.1 at a free port in a daemon thread; use as a context manager."""

    def __init__(self, responder: Callable[[dict], Any]):
        self.responder = responder
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        super().__init__(_Handler)
