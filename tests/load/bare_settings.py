"""The stack's own settings with one URL, the bare one-query view (tests/load/bare_urls.py): the same gunicorn,
middleware and database as the shop, so its requests per second are the ceiling the product page is set beside."""

from storefront.settings import *  # noqa: F403

ROOT_URLCONF = "tests.load.bare_urls"
