"""A minimal stand-in for the Kubernetes API server on 127.0.0.1, for driving the official client.

It answers only the routes a test registers (method + path regex -> handler), records every
request, and serves plain HTTP on a loopback port. It is no Kubernetes: tests use it to check
that the harness's client code sends the right requests and reads real response shapes.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[re.Match[str], Any, dict[str, str]], tuple[int, Any]]


class FakeApiServer:
    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.content_types: list[str | None] = []  # Content-Type of each request, same order
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode()
                path, _, query = self.path.partition("?")
                server.requests.append((method, self.path, body))
                server.content_types.append(self.headers.get("Content-Type"))
                for want, pattern, handler in server.routes:
                    match = pattern.fullmatch(path)
                    if want == method and match:
                        status, payload = handler(
                            match, body, dict(q.split("=", 1) for q in query.split("&") if "=" in q)
                        )
                        break
                else:
                    status, payload = (
                        404,
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "reason": "NotFound",
                            "code": 404,
                            "message": f"{method} {path}",
                        },
                    )
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def do_PATCH(self) -> None:  # noqa: N802
                self._serve("PATCH")

            def do_DELETE(self) -> None:  # noqa: N802
                self._serve("DELETE")

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def route(self, method: str, pattern: str, handler: Handler | tuple[int, Any]) -> None:
        fn = handler if callable(handler) else (lambda _m, _b, _q, h=handler: h)
        self.routes.append((method, re.compile(pattern), fn))

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def api_client(self) -> Any:
        from kubernetes import client

        config = client.Configuration()
        config.host = self.url
        return client.ApiClient(config)

    def __enter__(self) -> FakeApiServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
