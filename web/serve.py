#!/usr/bin/env python3
"""Serves the demo page on localhost (standard library only).

    python3 web/serve.py [--port 8080] [--models ../shared/models]

`/` is this folder (index.html, app.js, pkg/ from scripts/build-web.sh, samples/); `/models/` is the
models folder, when there is one, so the page can load DeiT-Tiny without a file picker.
"""

import argparse
import functools
import http.server
import os
import sys
from pathlib import Path

WEB = Path(__file__).resolve().parent


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".json": "application/json",
        ".safetensors": "application/octet-stream",
    }
    models = None

    def translate_path(self, path):
        clean = path.split("?", 1)[0].split("#", 1)[0]
        if self.models is not None and clean.startswith("/models/"):
            rel = Path(clean[len("/models/"):])
            if ".." in rel.parts:
                return str(WEB / "missing")
            return str(self.models / rel)
        return super().translate_path(path)

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, fmt, *args):
        if os.environ.get("ZEROPRUNE_SERVE_QUIET") != "1":
            super().log_message(fmt, *args)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (0: any free port)")
    ap.add_argument("--models", default=str(WEB.parent.parent / "shared" / "models"),
                    help="folder served under /models/ (default: ../shared/models beside the repo)")
    args = ap.parse_args()
    if not (WEB / "pkg" / "zeroprune_bg.wasm").is_file():
        sys.exit("web/pkg is missing: build it first with scripts/build-web.sh")
    models = Path(args.models).resolve()
    Handler.models = models if models.is_dir() else None
    handler = functools.partial(Handler, directory=str(WEB))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    print(f"serving http://127.0.0.1:{server.server_address[1]}/"
          + (f" (models from {models})" if Handler.models else " (no local models folder)"), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
