"""`lumigrad view`: a live browser view of a mesh file or an output folder."""
from __future__ import annotations

import argparse
import sys
import threading
import webbrowser

from lumigrad.cli.common import positive_float



def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in [0, 65535], got {value}")
    return value



def register(sub) -> None:
    view = sub.add_parser(
        "view",
        help="open a live browser view of a mesh, or of an output folder's meshes and cameras",
        description="Serve a local WebGL page showing the meshes (.obj, .ply, .glb, .gltf) and cameras "
                    "(cameras.json, transforms.json) of MESH_OR_OUTPUT_DIR; the page redraws when the files change, "
                    "so pointing it at a running fit's output folder shows the current state.",
    )
    view.add_argument("path", metavar="MESH_OR_OUTPUT_DIR", help="a mesh file or a folder to watch")
    view.add_argument("--port", type=_port, default=8765, help="TCP port on 127.0.0.1; 0 picks a free one (default: 8765)")
    view.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    view.add_argument("--no-browser", action="store_true", help="do not open a browser; just print the URL")
    view.add_argument("--poll", type=positive_float, default=1.0, help="seconds between the page's update checks (default: 1)")
    view.add_argument("--exit-after", type=positive_float, default=None, metavar="SECONDS",
                      help="stop the server after this many seconds (for scripts and tests; default: run until Ctrl-C)")
    view.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from lumigrad.viewer import ViewerServer

    server = ViewerServer(args.path, host=args.host, port=args.port, poll=args.poll)
    print(f"lumigrad view: serving {args.path} at {server.url} (Ctrl-C to stop)", flush=True)
    if not args.no_browser:
        webbrowser.open(server.url)
    if args.exit_after is not None:
        timer = threading.Timer(args.exit_after, server.stop)
        timer.daemon = True
        timer.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("lumigrad view: stopped", file=sys.stderr)
    return 0
