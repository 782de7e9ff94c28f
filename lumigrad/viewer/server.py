"""A local HTTP server for the viewer page (Python's ``http.server``, no dependencies).

Routes:

* ``/`` : the page (``static/index.html``), which loads ``static/viewer.js``;
* ``/api/version`` : ``{"version": ...}``, polled by the page every ``poll`` seconds;
* ``/api/scene`` : the meshes and cameras (:func:`~lumigrad.viewer.scene_state.scene_payload`).

The server binds to 127.0.0.1 by default and only serves its own static files
and the watched path's meshes and cameras.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from lumigrad.viewer.scene_state import scene_payload, state_version

__all__ = ["ViewerServer"]

log = logging.getLogger(__name__)

_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}


class _Handler(BaseHTTPRequestHandler):
    server: "_HTTPServer"

    def log_message(self, fmt, *args):  # route http.server's stderr lines to logging
        log.debug("viewer: " + fmt, *args)

    def _send(self, body: bytes, ctype: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj) -> None:
        self._send(json.dumps(obj).encode(), "application/json")

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        viewer: ViewerServer = self.server.viewer
        if path == "/api/version":
            return self._json({"version": state_version(viewer.root), "poll_ms": int(viewer.poll * 1000)})
        if path == "/api/scene":
            return self._json(viewer.payload())
        if path in ("/", "/index.html"):
            path = "/static/index.html"
        if path.startswith("/static/"):
            name = path[len("/static/"):]
            body = viewer.static_file(name)
            if body is not None:
                return self._send(body, _STATIC_TYPES.get(Path(name).suffix, "application/octet-stream"))
        self._send(b"not found", "text/plain", HTTPStatus.NOT_FOUND)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    viewer: "ViewerServer"


class ViewerServer:
    """Serve the viewer page for a mesh file or an output folder.

    Args:
        root: a mesh file or a folder of meshes and cameras.
        host: interface to bind (default loopback only).
        port: TCP port; 0 picks a free one (read it back from :attr:`url`).
        poll: seconds between the page's update checks.

    Example::

        server = ViewerServer("out/demo", port=0)
        server.start()          # background thread
        print(server.url)
        server.stop()
    """

    def __init__(self, root: str | os.PathLike, host: str = "127.0.0.1", port: int = 8765, poll: float = 1.0):
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"ViewerServer(): root must be a path, got {type(root).__name__}")
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"ViewerServer(): no such file or folder: {self.root}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"ViewerServer(): port must be an int in [0, 65535], got {port!r}")
        if not (isinstance(poll, (int, float)) and 0.05 <= poll <= 3600):
            raise ValueError(f"ViewerServer(): poll must be seconds in [0.05, 3600], got {poll!r}")
        self.poll = float(poll)
        self._static = resources.files("lumigrad.viewer") / "static"
        self._lock = threading.Lock()
        self._cached: tuple[str, dict] | None = None
        try:
            self._httpd = _HTTPServer((host, port), _Handler)
        except OSError as exc:
            raise OSError(f"ViewerServer(): cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._httpd.viewer = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def static_file(self, name: str) -> bytes | None:
        """Bytes of a bundled static file, or None (names are plain file names only)."""
        if "/" in name or "\\" in name or name.startswith("."):
            return None
        f = self._static / name
        return f.read_bytes() if f.is_file() else None

    def payload(self) -> dict:
        """The scene JSON, re-read only when the watched files changed."""
        with self._lock:
            version = state_version(self.root)
            if self._cached is None or self._cached[0] != version:
                data = scene_payload(self.root)
                self._cached = (data["version"], data)
            return self._cached[1]

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def start(self) -> None:
        """Serve from a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="lumigrad-viewer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
