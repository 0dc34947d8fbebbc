"""The slice of the kubelet's HTTPS API that the API server proxies for `kubectl logs`."""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any


class LogHandler(http.server.BaseHTTPRequestHandler):
    # (namespace, pod, container, previous) -> (log path, still running?)
    find: Callable[[str, str, str, bool], tuple[Path, Callable[[], bool]] | None]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            self.send_error(404, "only /containerLogs/NAMESPACE/POD/CONTAINER is served by this node")
            return
        query = urllib.parse.parse_qs(url.query)
        previous = query.get("previous", ["false"])[0] == "true"
        found = self.find(parts[1], parts[2], parts[3], previous)
        if found is None:
            self.send_error(404, f"container {parts[3]!r} of pod {parts[1]}/{parts[2]} not found on this node")
            return
        path, running = found
        data = path.read_bytes() if path.exists() else b""
        if "tailLines" in query:
            lines = int(query["tailLines"][0])
            data = b"".join(data.splitlines(keepends=True)[-lines:]) if lines > 0 else b""
        if "limitBytes" in query:
            data = data[: int(query["limitBytes"][0])]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(data)
        if query.get("follow", ["false"])[0] != "true":
            return
        offset = path.stat().st_size if path.exists() else 0
        with contextlib.suppress(OSError):
            while True:
                size = path.stat().st_size if path.exists() else 0
                if size > offset:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        self.wfile.write(f.read(size - offset))
                        self.wfile.flush()
                    offset = size
                elif not running():
                    return
                time.sleep(0.2)


def serve(address: str, port: int, cert: Path, key: Path, ca: Path,
          find: Callable[[str, str, str, bool], tuple[Path, Callable[[], bool]] | None]) -> None:
    """Serves in a daemon thread; only clients with a certificate from the cluster CA get in."""
    handler = type("Handler", (LogHandler,), {"find": staticmethod(find)})
    server = http.server.ThreadingHTTPServer((address, port), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    context.load_verify_locations(str(ca))
    context.verify_mode = ssl.CERT_REQUIRED
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, name="kubelet-api", daemon=True).start()
