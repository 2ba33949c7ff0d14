"""Where Debian's Chromium is, and how to start it on this kind of machine.

Kept free of Django and Playwright imports: tests/harness.py reads it before pytest starts.
Playwright's own browser download does not work here, so the tests drive the system's Chromium.
"""

import os
import shutil
from pathlib import Path

SKIP_REASON = "Chromium not found: the browser tests are skipped (make e2e installs it)"
INSTALL_COMMAND = "apt-get install -y chromium"

# Without the background-networking flags Chromium keeps calling Google's hosts, and this machine's
# closed network refuses those connections.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    """$CHROMIUM_PATH when set (and only it), else /usr/bin/chromium, else `chromium` on PATH; None if absent."""
    chosen = os.environ.get("CHROMIUM_PATH", "")
    candidates = [chosen] if chosen else ["/usr/bin/chromium", shutil.which("chromium") or ""]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None
