"""The demo's settings (storefront.settings_demo) with the shop's files in a throwaway folder.

SMOKE_SQLITE_DIR names the folder: the SQLite database, localstripe's state and log, the fake PayPal's
certificate and the private media go there instead of next to manage.py, so the smoke suite never touches the
demo a developer left behind. The suite starts `manage.py demo` with these settings (tests/smoke_sqlite/demo.py).
"""

import os
import tempfile
from pathlib import Path

from storefront.settings_demo import *  # noqa: F403

SMOKE_DIR = Path(os.environ.get("SMOKE_SQLITE_DIR") or Path(tempfile.gettempdir()) / f"storefront-smoke-{os.getpid()}")
DATABASES["default"]["NAME"] = str(SMOKE_DIR / "shop.sqlite3")  # noqa: F405
CACHE_DIR = SMOKE_DIR / "cache"
STORAGES["default"]["OPTIONS"]["location"] = str(SMOKE_DIR / "private-media")  # noqa: F405
STORAGES["public"]["OPTIONS"]["location"] = str(SMOKE_DIR / "public-media")  # noqa: F405
