"""A pod's port on 127.0.0.1, forwarded through the API server (what ``kubectl port-forward`` does).

``forwarded_port`` listens on a free loopback port; each connection made to it gets its own
port-forward stream (``kubernetes.stream.portforward``, one websocket per connection) to the
pod's port, and bytes are copied both ways until either side closes. Nothing listens beyond
127.0.0.1, and everything is closed when the context ends, also on an exception.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_CHUNK = 1 << 16


def _pump(source: Any, target: Any) -> None:
    """Copy ``source`` to ``target`` until EOF or an error, then shut ``target``'s sending side."""
    try:
        while True:
            data = source.recv(_CHUNK)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def _relay(client_sock: socket.socket, open_remote: Any, errors: list[str]) -> None:
    try:
        forward = open_remote()
    except Exception as exc:  # the API server refused: the client sees its connection closed
        errors.append(f"{type(exc).__name__}: {exc}")
        client_sock.close()
        return
    remote = forward["socket"]
    back = threading.Thread(target=_pump, args=(remote, client_sock), daemon=True)
    back.start()
    _pump(client_sock, remote)
    back.join()
    for sock in (client_sock, remote):
        with contextlib.suppress(OSError):
            sock.close()
    error = forward["error"]()
    if error:
        errors.append(error)


@dataclass
class Forward:
    """A forwarded port: connect to 127.0.0.1:``port``; ``errors`` has what the API server said
    when a connection could not be forwarded (read it when a client fails to connect)."""

    port: int
    errors: list[str] = field(default_factory=list)

    def explain(self) -> str:
        return f" (port-forward: {self.errors[-1]})" if self.errors else ""


@contextlib.contextmanager
def forwarded_port(api_client: Any, namespace: str, pod: str, port: int) -> Iterator[Forward]:
    """A local port on 127.0.0.1 that reaches ``pod``:``port``."""
    from kubernetes import client
    from kubernetes.stream import portforward

    core = client.CoreV1Api(api_client)

    def open_remote() -> dict[str, Any]:
        forward = portforward(core.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port))
        return {"socket": forward.socket(port), "error": lambda: forward.error(port)}

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    forward = Forward(listener.getsockname()[1])
    errors = forward.errors
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_relay, args=(conn, open_remote, errors), daemon=True).start()

    acceptor = threading.Thread(target=accept, name=f"port-forward {namespace}/{pod}:{port}", daemon=True)
    acceptor.start()
    try:
        yield forward
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(timeout=5)
