"""The demo's settings (`make demo`, `python manage.py demo`): the whole shop on this machine and nothing else.

DEBUG on, development secrets, a SQLite file (db.sqlite3 next to manage.py), Celery running each task eagerly
in the web process, emails printed to the console, and Stripe pointed at a localstripe on 127.0.0.1:8420.
They are set here whatever the environment says: a DATABASE_URL, REDIS_URL, EMAIL_URL or Stripe key left
exported in the shell must never send the demo to a real database, broker, mailbox or Stripe account.
The demo command starts localstripe and the fake PayPal itself (on other ports with --stripe-port and
--paypal-port). tests/smoke_sqlite/settings.py is this module with its files in a throwaway folder.
"""

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent

DEMO_ENVIRONMENT = {
    "DEBUG": "1",
    # Development-only values: the demo database's license keys are encrypted with this key, so it stays put.
    "SECRET_KEY": "dev-only-insecure-secret-key-do-not-use-in-production",
    "KEY_ENCRYPTION_KEYS": "ZGV2LW9ubHkta2V5LWVuY3J5cHRpb24ta2V5LTMyYiE=",
    "KEY_FINGERPRINT_SECRET": "dev-only-key-fingerprint-secret",
    "STRIPE_WEBHOOK_SECRET": "whsec_localstripe_demo",
    "DATABASE_URL": f"sqlite:///{_ROOT / 'db.sqlite3'}",
    "REDIS_URL": "",  # no broker: Celery eager, cache in memory, velocity counted from the database
    "CELERY_TASK_ALWAYS_EAGER": "1",
    "EMAIL_URL": "",  # emails to the console
    "STRIPE_SECRET_KEY": "sk_test_localstripe",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_localstripe",
    "STRIPE_API_BASE": "http://127.0.0.1:8420",
    "STRIPE_JS_URL": "http://127.0.0.1:8420/js.stripe.com/v3/",
    "S3_BUCKET": "",
    "PRIVATE_MEDIA_ROOT": str(_ROOT / "media" / "private"),
}
# Set, not defaulted: storefront.settings reads a .env file only for variables still unset, and the Stripe
# channel reads its keys from the environment itself.
os.environ.update(DEMO_ENVIRONMENT)

from storefront.settings import *  # noqa: E402,F403

EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
# runserver answers on threads, and localstripe's and PayPal's webhooks arrive while a shopper's request writes.
# SQLite has one writer at a time: each transaction takes the write lock as it begins and waits for it, instead
# of failing with "database is locked" when its first write finds another transaction's (smoke suite).
DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}  # noqa: F405
# The demo's merchant may set up a second factor (/staff/2fa/setup/, linked from the admin index) but is not
# made to: the demo is a throwaway shop on this machine whose logins are printed in the terminal, and the smoke
# suite signs in as a person would, with the password. Production (storefront.settings) requires it.
STAFF_SECOND_FACTOR_REQUIRED = False
