"""Settings for the test suite: real PostgreSQL and Redis (see tests/harness.py).

storefront.settings invents nothing, so the suite states its own: DEBUG on and throwaway secrets, set here
whatever the environment says. The database and Redis come from DATABASE_URL / REDIS_URL (the harness sets
them), else the local servers on their standard ports.
"""

import os

TEST_ENVIRONMENT = {
    "DEBUG": "1",
    "SECRET_KEY": "test-suite-secret-key-not-for-production-0123456789abcdef",
    "KEY_ENCRYPTION_KEYS": "dGVzdC1zdWl0ZS1rZXktZW5jcnlwdGlvbi1rZXktMzI=",
    "KEY_FINGERPRINT_SECRET": "test-suite-key-fingerprint-secret",
    "STRIPE_WEBHOOK_SECRET": "whsec_test_suite_secret",
}
os.environ.update(TEST_ENVIRONMENT)
os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/storefront")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
# The suite writes rules, lists and labels in every way (querysets, other processes): each assessment reads the
# stamps. tests/riskengine/test_config_recheck.py and the paid-order cost use the production default.
os.environ.setdefault("RISK_CONFIG_RECHECK_SECONDS", "0")

from storefront.settings import *  # noqa: E402,F403

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_EAGER_PROPAGATES = True
STORAGES["default"]["OPTIONS"]["location"] = str(CACHE_DIR / "test-media")  # noqa: F405
STORAGES["public"]["OPTIONS"]["location"] = str(CACHE_DIR / "test-media-public")  # noqa: F405
LOGGING["root"]["level"] = "INFO"  # noqa: F405
# One test database per run, so concurrent runs on one server never trample each other.
DATABASES["default"]["TEST"] = {"NAME": f"test_storefront_{os.getpid()}"}  # noqa: F405
# Velocity counters of this run only: tests never see another run's counts (cleaned up in conftest).
RISK_VELOCITY_PREFIX = f"risk:test{os.getpid()}"
