"""Open ``/docs`` in headless Chromium as a new user would; save a screenshot, check every route shows.

Serves the real app (in-memory store, SQLite config store in a temporary directory) with
wsgiref on a free loopback port, asks Chromium (Debian's package, ``/usr/bin/chromium``) for the
rendered DOM and a full-page PNG, and exits non-zero if an operation of ``/openapi.json`` is missing
from the rendered page. Usage: ``python tools/docs_screenshot.py [out.png]`` (``make docs-screenshot``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

from rtsig.config.service import ConfigService
from rtsig.settings import Settings
from rtsig.store import Store
from web.app import ROUTES, create_app
from web.deps import WebDeps

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=10000"]


class Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


def main(out: Path) -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        store = Store.in_memory(settings)
        app = create_app(WebDeps(settings, ConfigService(settings), store))
        server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/docs"
        profile = Path(tmp) / "profile"
        base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        subprocess.run([*base, "--window-size=1280,4200", f"--screenshot={out}", url],
                       capture_output=True, timeout=120, check=True)
        server.shutdown()
    missing = [f"{r.method} {r.path}" for r in ROUTES
               if f'data-path="{r.path}"' not in dom and f">{r.path}<" not in dom.replace("\u200b", "")]
    print(f"{url}: {len(ROUTES)} operations, {len(ROUTES) - len(missing)} shown; screenshot {out}")
    for m in missing:
        print(f"  missing: {m}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs-screenshot.png").resolve()))
