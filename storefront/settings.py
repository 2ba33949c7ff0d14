"""Production settings, all from the environment. They fail closed.

DEBUG is off unless the environment says DEBUG=1. Whatever DEBUG says, SECRET_KEY, KEY_ENCRYPTION_KEYS,
KEY_FINGERPRINT_SECRET and STRIPE_WEBHOOK_SECRET must be set: this module invents no secret. With DEBUG off,
DATABASE_URL and REDIS_URL must be set too: no quiet SQLite file, no Celery running eagerly in the web process.
The demo (storefront.settings_demo) and the test suite (storefront.settings_test) set all of that themselves.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent
CACHE_DIR = BASE_DIR / ".cache"

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
_SEE = "see README.md, 'Running it for real'; for a shop on this machine run `make demo`"


def _required(name: str, what: str) -> str:
    """The variable's value; start-up stops with a message naming it when it is unset or empty."""
    value = env.str(name, default="")
    if value:
        return value
    when = "when DEBUG is off" if not DEBUG else "(storefront.settings has no development default)"
    raise ImproperlyConfigured(f"{name} must be set {when}: {what} ({_SEE}).")


SECRET_KEY = _required("SECRET_KEY", "Django's signing key")
# Comma-separated Fernet keys; the first encrypts, all decrypt (rotation).
KEY_ENCRYPTION_KEYS = [
    k.strip() for k in _required("KEY_ENCRYPTION_KEYS", "the keys that encrypt license keys").split(",") if k.strip()
]
try:
    from cryptography.fernet import Fernet

    for _key in KEY_ENCRYPTION_KEYS:
        Fernet(_key.encode())
except ValueError as _exc:
    raise ImproperlyConfigured(
        "KEY_ENCRYPTION_KEYS must be comma-separated Fernet keys (32 url-safe base64-encoded bytes each)."
    ) from _exc
# HMAC secret for license-key fingerprints (duplicate detection without decrypting).
KEY_FINGERPRINT_SECRET = _required("KEY_FINGERPRINT_SECRET", "the HMAC secret of license-key fingerprints")
STRIPE_WEBHOOK_SECRET = _required("STRIPE_WEBHOOK_SECRET", "the signing secret of the Stripe webhook endpoint")
if not DEBUG:
    # Production runs on PostgreSQL and a Celery worker fed through Redis. Without these the shop would fall back
    # to a SQLite file in the code folder and run every task inside the web request, and nobody would notice.
    _required("DATABASE_URL", "the production database, e.g. postgres://user:pass@host:5432/storefront")
    _required("REDIS_URL", "the Celery broker and cache, e.g. redis://host:6379/0")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_countries",
    "django_otp",  # staff second factor (storefront.twofactor): TOTP apps and recovery codes
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "storefront",
    "catalog",
    "orders",
    "fulfillment",
    "payments",
    "riskengine",
]

MIDDLEWARE = [
    # First: a request id for every log line; the probes and /metrics answered before ALLOWED_HOSTS and the HTTPS
    # redirect (a container's probe asks http://127.0.0.1:8000/readyz); then every other request counted.
    "storefront.logs.RequestIdMiddleware",
    "storefront.health.ProbeMiddleware",
    "storefront.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "storefront.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified(): signed in with a second factor
    "django.contrib.messages.middleware.MessageMiddleware",
    "storefront.twofactor.policy.SecondFactorMiddleware",  # admin and review queue: second factor first
    "storefront.device.DeviceIdMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "storefront.security.LoginRateLimitMiddleware",
    "storefront.outages.OutageMiddleware",  # last: PostgreSQL or the broker unreachable -> 503, never 500
]

ROOT_URLCONF = "storefront.urls"
WSGI_APPLICATION = "storefront.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "storefront.context_processors.cart_summary",
                "storefront.context_processors.shop",
            ],
        },
    },
    {
        # Plain-text emails: nothing is HTML-escaped ("Help > Activate" stays as written).
        "NAME": "text",
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates" / "emails"],
        "APP_DIRS": False,
        "OPTIONS": {"autoescape": False},
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # The password in a file of its own (docker compose's secrets) rather than in DATABASE_URL.
    if env.str("DATABASE_PASSWORD_FILE", default=""):
        DATABASES["default"]["PASSWORD"] = Path(env.str("DATABASE_PASSWORD_FILE")).read_text().strip()
    # Behind PgBouncer in transaction pooling (README, "Running it for real") one connection's transactions may reach
    # different server sessions: no server-side cursors (QuerySet.iterator) and no prepared statements (psycopg
    # prepares a query a connection has run five times).
    if env.bool("DATABASE_TRANSACTION_POOLING", default=False):
        DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "storefront.cache.ReusingRedisCache",
            "LOCATION": REDIS_URL,
            # A hung Redis costs one short wait, then storefront.outages' breaker goes on without it.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5, "health_check_interval": 30},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# cached_db that reads and writes the database alone while Redis is away (storefront.sessions)
SESSION_ENGINE = "storefront.sessions" if REDIS_URL else "django.contrib.sessions.backends.db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    # Downloadable goods and key-import files live here: a private folder never served by URL,
    # or a private S3-compatible bucket when S3_BUCKET is set (files are streamed through the shop).
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": env.str("PRIVATE_MEDIA_ROOT", default=str(BASE_DIR / "media" / "private"))},
    }
    if not env.str("S3_BUCKET", default="")
    else {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env.str("S3_BUCKET"),
            "endpoint_url": env.str("S3_ENDPOINT_URL", default=None),
            "region_name": env.str("S3_REGION", default=None),
            "access_key": env.str("S3_ACCESS_KEY_ID", default=None),
            "secret_key": env.str("S3_SECRET_ACCESS_KEY", default=None),
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    },
    # Product images and the shop's logo: public, served by the shop itself at /media/ (storefront.media).
    "public": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {
            "location": env.str("PUBLIC_MEDIA_ROOT", default=str(BASE_DIR / "media" / "public")),
            "base_url": "/media/",
        },
    },
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "storefront.uploads.SpoolingUploadHandler",  # a full disk drops the file with a message, never a 500
]

# Email: console in development, EMAIL_URL (smtp://user:pass@host:587) in production.
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="shop@example.com")

# Celery: eager (in-process) unless a Redis broker is configured.
CELERY_BROKER_URL = REDIS_URL or "memory://"
# kombu's Redis transport with a fix that keeps the worker alive when Redis dies under load (storefront.celery)
CELERY_BROKER_TRANSPORT = "storefront.celery:RedisTransport" if REDIS_URL else None
CELERY_RESULT_BACKEND = None
# Celery's own rule closes the database connection around every task; storefront.celery keeps it as a request
# would (closed when broken or older than CONN_MAX_AGE), so this only switches Celery's closing off.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 90
# Broker outages (Redis restarted, killed, or unreachable): the worker and beat wait for it as long as it takes
# and carry on, never exit. Whatever a lost task left undone, the sweepers in the schedule below finish.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True  # a worker started before Redis waits for it
CELERY_BROKER_CONNECTION_MAX_RETRIES = None  # default 100: after that the worker would exit for good
# A task running when the connection drops finishes (every task here is idempotent and acks late), rather
# than being killed mid-way: a half-done key import would otherwise restart from its last batch.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 600,
    # A Redis that vanished without closing the socket (host down, network cut) is noticed in seconds,
    # not after TCP's two hours; kombu's BRPOP waits 1 s, far below the read timeout.
    "socket_connect_timeout": 2,
    "socket_timeout": 10,
    "socket_keepalive": True,
    "health_check_interval": 25,
}
# Sending a task with Redis away fails fast (the web answers; the sweepers enqueue it again later).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
# One beat sends, however many run (celery-redbeat): the schedule and each job's last run live in Redis, and a beat
# sends only while it holds a lock there, renewed at every tick (at least every BEAT_MAX_LOOP_INTERVAL seconds).
# Any other beat waits for the lock; when its holder stops (or dies: the lock expires after BEAT_LOCK_TIMEOUT_SECONDS)
# one of them takes over where the schedule was. A beat that loses Redis or its lock exits, and is restarted.
CELERY_BEAT_SCHEDULER = "redbeat.RedBeatScheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = 5
CELERY_REDBEAT_REDIS_URL = REDIS_URL or None
CELERY_REDBEAT_REDIS_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 10, "health_check_interval": 25}
CELERY_REDBEAT_KEY_PREFIX = env.str("BEAT_KEY_PREFIX", default="redbeat:")
CELERY_REDBEAT_LOCK_TIMEOUT = env.int("BEAT_LOCK_TIMEOUT_SECONDS", default=30)
# The sweeper finishes what a lost task, a killed worker or a Redis outage left undelivered (bench: seconds).
FULFILMENT_SWEEP_EVERY = timedelta(seconds=env.int("FULFILMENT_SWEEP_EVERY_SECONDS", default=60))
# A key import whose run has not committed a batch for this long lost its worker; it is resumed.
KEY_IMPORT_STALL_AFTER = timedelta(minutes=env.int("KEY_IMPORT_STALL_AFTER_MINUTES", default=3))
# Subscriptions (storefront.flow.renewals): a failed renewal is tried again this many days after the period
# ended, each try emailing the shopper; access lasts through the grace, which must outlast the last retry.
SUBSCRIPTION_RETRY_DAYS = env.list("SUBSCRIPTION_RETRY_DAYS", cast=int, default=[1, 3, 5, 7])
SUBSCRIPTION_GRACE_DAYS = env.int("SUBSCRIPTION_GRACE_DAYS", default=8)
SUBSCRIPTION_REMINDER_DAYS = env.int("SUBSCRIPTION_REMINDER_DAYS", default=3)
CELERY_BEAT_SCHEDULE = {
    "renew-due-subscriptions": {
        "task": "storefront.flow.jobs.renew_due_subscriptions",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 55},
    },
    "subscriptions-housekeeping": {
        "task": "storefront.flow.jobs.subscriptions_housekeeping",
        "schedule": timedelta(minutes=10),
    },
    "sweep-undelivered-orders": {
        "task": "fulfillment.tasks.sweep_undelivered_orders",
        "schedule": FULFILMENT_SWEEP_EVERY,
    },
    "resume-stalled-key-imports": {
        "task": "fulfillment.tasks.resume_stalled_key_imports",
        "schedule": FULFILMENT_SWEEP_EVERY,
    },
    "resume-stalled-staff-jobs": {  # refunds, exports and key changes started from admin (flow.staff_jobs)
        "task": "storefront.flow.staff_jobs.resume_stalled_staff_jobs",
        "schedule": FULFILMENT_SWEEP_EVERY,
    },
    "release-expired-reservations": {
        "task": "fulfillment.tasks.release_expired_reservations",
        "schedule": timedelta(minutes=1),
    },
    "refund-overdue-backorders": {
        "task": "storefront.flow.jobs.refund_overdue_backorders",
        "schedule": timedelta(minutes=10),
    },
    "expire-overdue-reviews": {
        "task": "storefront.flow.jobs.expire_overdue_reviews",
        "schedule": timedelta(minutes=10),
    },
    "end-expired-memberships": {
        "task": "fulfillment.tasks.end_expired_memberships",
        "schedule": timedelta(minutes=10),
    },
    "reconcile-payments": {
        "task": "storefront.flow.jobs.reconcile_payments",
        "schedule": timedelta(minutes=5),
    },
    # A payment whose webhook could not be taken (PostgreSQL away) is applied within a minute of its return.
    # Runs that could not start in time (worker or Redis away) are dropped rather than piled up.
    # The kept stock counts (catalog.Product.keys_available) checked against the keys themselves.
    "recount-key-stock": {
        "task": "fulfillment.tasks.recount_key_stock",
        "schedule": timedelta(minutes=15),
        "options": {"expires": 600},
    },
    # Provider calls' audit rows wait in Redis and are written in bulk (payments.health.call_log_flush).
    "flush-provider-calls": {
        "task": "payments.tasks.flush_provider_calls",
        "schedule": timedelta(seconds=10),
        "options": {"expires": 9},
    },
    # Outbound webhooks (storefront.flow.outbound): retries that are due, and first tries whose task was lost.
    "send-due-webhooks": {
        "task": "storefront.flow.outbound.webhooks_send_due",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 55},
    },
    "reconcile-recent-payments": {
        "task": "storefront.flow.jobs.reconcile_recent_payments",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 50},
    },
    # The risk model learns from the week's new labels; a run with nothing new stores nothing (see riskengine.learning).
    "risk-model-retrain": {
        "task": "riskengine.tasks.risk_model_retrain",
        "schedule": timedelta(weeks=1),
        "options": {"expires": 6 * 3600},
    },
    # IPs, user agents and device ids past PRIVACY_NETWORK_DATA_DAYS, and erasures whose dispute window closed.
    "purge-personal-data": {
        "task": "storefront.flow.privacy_jobs.purge_personal_data",
        "schedule": timedelta(hours=6),
        "options": {"expires": 3600},
    },
}

# Payments. With DEBUG on and no STRIPE_SECRET_KEY the shop talks to a localstripe on 127.0.0.1; with DEBUG off
# it always talks to Stripe itself (STRIPE_API_BASE points it elsewhere on purpose only).
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="sk_test_localstripe")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="pk_test_localstripe")
STRIPE_API_BASE = env.str(
    "STRIPE_API_BASE",
    default="" if env.str("STRIPE_SECRET_KEY", default="") or not DEBUG else "http://127.0.0.1:8420",
)
STRIPE_JS_URL = env.str(
    "STRIPE_JS_URL",
    default=f"{STRIPE_API_BASE}/js.stripe.com/v3/" if STRIPE_API_BASE else "https://js.stripe.com/v3/",
)
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=10.0)
# PayPal (channel "paypal", off until enabled in admin). Credentials are read from these variables.
PAYPAL_CLIENT_ID = env.str("PAYPAL_CLIENT_ID", default="")
PAYPAL_CLIENT_SECRET = env.str("PAYPAL_CLIENT_SECRET", default="")
PAYPAL_WEBHOOK_ID = env.str("PAYPAL_WEBHOOK_ID", default="")
PAYPAL_TIMEOUT_SECONDS = env.float("PAYPAL_TIMEOUT_SECONDS", default=10.0)
# Webhook verification: "offline" (certificate from PAYPAL-CERT-URL) or "api" (verify-webhook-signature).
PAYPAL_WEBHOOK_VERIFY = env.str("PAYPAL_WEBHOOK_VERIFY", default="offline")
PAYPAL_CERT_HOSTS = env.list(
    "PAYPAL_CERT_HOSTS",
    default=["api.paypal.com", "api.sandbox.paypal.com", "api-m.paypal.com", "api-m.sandbox.paypal.com"],
)
PAYPAL_CERT_NAME = env.str("PAYPAL_CERT_NAME", default="messageverificationcerts.paypal.com")
PAYPAL_CERT_TRUST = env.str("PAYPAL_CERT_TRUST", default="")  # a PEM bundle; empty: certifi's roots
PAYPAL_CERT_ALLOW_HTTP = False  # only the test suite's own certificate server speaks http
# Reconciliation: how far back each run looks (the 5-minute pass, and the every-minute pass over recent
# payments), and how old a pending payment must be before it is checked (its webhook gets that long first).
RECONCILE_LOOKBACK = timedelta(hours=env.int("RECONCILE_LOOKBACK_HOURS", default=48))
RECONCILE_RECENT_WINDOW = timedelta(minutes=env.int("RECONCILE_RECENT_WINDOW_MINUTES", default=30))
RECONCILE_MIN_AGE = timedelta(seconds=env.int("RECONCILE_MIN_AGE_SECONDS", default=30))

SHIPPING_FLAT_FEE = env.int("SHIPPING_FLAT_FEE", default=500)  # minor units, per order with physical lines
MAX_KEY_IMPORT_BYTES = env.int("MAX_KEY_IMPORT_BYTES", default=50 * 1024 * 1024)
FULFILMENT_SWEEP_AFTER = timedelta(minutes=env.int("FULFILMENT_SWEEP_AFTER_MINUTES", default=3))
RISK_VELOCITY_PREFIX = env.str("RISK_VELOCITY_PREFIX", default="risk:v")
# How stale a process's view of the risk rules, lists and labels may be (riskengine.config): read once a second.
RISK_CONFIG_RECHECK_SECONDS = env.float("RISK_CONFIG_RECHECK_SECONDS", default=1.0)
# A simulated month's order number -> pattern file (tests/load/risk_figures.py --patterns-out): the backtest
# page adds per-pattern rows when it is set. Empty in a real shop.
RISK_BACKTEST_PATTERNS = env.str("RISK_BACKTEST_PATTERNS", default="")
# The risk model (riskengine.learning): an order counts as good once delivered and undisputed this many days
# after payment; below these counts of fraud and good labels no model is trained and the rules decide alone.
RISK_MODEL_SETTLE_DAYS = env.int("RISK_MODEL_SETTLE_DAYS", default=60)
RISK_MODEL_MIN_FRAUD = env.int("RISK_MODEL_MIN_FRAUD", default=30)
RISK_MODEL_MIN_GOOD = env.int("RISK_MODEL_MIN_GOOD", default=300)
ORDER_LOOKUP_RATE = env.int("ORDER_LOOKUP_RATE_PER_HOUR", default=10)
# Shopper accounts (storefront.accounts): sign-in link requests and password attempts per client IP and hour, like
# the order lookup; a link works once, for this many minutes.
ACCOUNT_SIGN_IN_RATE = env.int("ACCOUNT_SIGN_IN_RATE_PER_HOUR", default=10)
ACCOUNT_LINK_MINUTES = env.int("ACCOUNT_LINK_MINUTES", default=15)
# Privacy (storefront.privacy, storefront.flow.privacy_jobs): IPs, user agents and device ids are purged after this
# many days (not on orders under dispute); keep it longer than the dispute window, in which they are evidence.
PRIVACY_NETWORK_DATA_DAYS = env.int("PRIVACY_NETWORK_DATA_DAYS", default=180)
PRIVACY_DISPUTE_WINDOW_DAYS = env.int("PRIVACY_DISPUTE_WINDOW_DAYS", default=120)
# How many reverse proxies sit in front of the app and append to X-Forwarded-For (0: trust none).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PARSER_CLASSES": [
        "storefront.parsers.JSONParser",  # DRF's, refusing bodies nested too deep (a RecursionError otherwise)
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "storefront.api_errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Storefront API",
    "DESCRIPTION": "Catalog, cart, checkout and order status for a headless storefront.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The license API's statuses (storefront.api.licenses) beside the order's own "status" enums
    "ENUM_NAME_OVERRIDES": {"LicenseStatusEnum": ["active", "inactive", "expired", "revoked", "disabled"]},
}

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# "json": one JSON object a line with request_id and order_ref (storefront.logs), the default with DEBUG off;
# "plain": text, the default in the demo and with DEBUG on.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "storefront.logs.LogContextFilter"},
        "scrub": {"()": "storefront.logs.ScrubFilter"},  # paths quoted in Django's request lines
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "storefront.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django.request": {"filters": ["scrub"]},
        "django.server": {"filters": ["scrub"]},
        "django.security.csrf": {"filters": ["scrub"]},  # (the console handler scrubs every django.* line too)
    },
}
# The Celery worker logs through the handler above (JSON, request id and order) instead of replacing it with its own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Operations: /metrics answers `Authorization: Bearer <METRICS_TOKEN>` (unset: no metrics, unless DEBUG is on);
# errors go to Sentry when SENTRY_DSN is set (storefront.sentry scrubs keys, cards, emails and tokens first).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
SENTRY_DSN = env.str("SENTRY_DSN", default="")
if SENTRY_DSN:
    from storefront.sentry import sentry_init

    sentry_init(
        dsn=SENTRY_DSN,
        environment=env.str("SENTRY_ENVIRONMENT", default="production"),
        release=env.str("SENTRY_RELEASE", default=""),
        traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
    )

# Security ---------------------------------------------------------------------------------------------------
# HTTPS-only settings apply in production (DEBUG=0): on the local http demo they would lock the browser out.
if not DEBUG:
    # The header a TLS-terminating proxy sets to say the request came over https; empty when no proxy
    # sits in front (then Django sees https itself). Only trust it if the proxy overwrites it.
    _proxy_ssl_header = env.str("SECURE_PROXY_SSL_HEADER", default="HTTP_X_FORWARDED_PROTO")
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header, "https") if _proxy_ssl_header else None
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    LANGUAGE_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
# Everywhere, http included (SecurityMiddleware, XFrameOptionsMiddleware, storefront.security).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_REFERRER_POLICY = "same-origin"  # the order page sets it again itself: see storefront.views._order_page
X_FRAME_OPTIONS = "DENY"
CSRF_COOKIE_SAMESITE = LANGUAGE_COOKIE_SAMESITE = "Lax"
# Content-Security-Policy: built per request with a nonce by storefront.security; Stripe's origins are added
# on the pay page only. An address to receive violation reports (optional).
CSP_REPORT_URI = env.str("CSP_REPORT_URI", default="")

# Rate limits per client IP (storefront.ratelimit.client_ip), counted in the cache in fixed one-hour windows.
# ORDER_LOOKUP_RATE (above) limits "Find my order".
CHECKOUT_RATE = env.int("CHECKOUT_RATE_PER_HOUR", default=30)  # web checkout form and POST /api/checkout/
FREE_ORDERS_PER_DAY = env.int("FREE_ORDERS_PER_DAY", default=5)  # free orders per mailbox, device and IP address
LOGIN_RATE = env.int("LOGIN_RATE_PER_HOUR", default=20)  # admin login and review queue login (POSTs)
# Staff who may refund, export keys or edit payment channels cannot reach admin without a second factor
# (storefront.twofactor); everyone else who has set one up is asked for it. Only the demo turns this off.
STAFF_SECOND_FACTOR_REQUIRED = True
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Storefront")  # the name authenticator apps show
RATE_LIMIT_PREFIX = env.str("RATE_LIMIT_PREFIX", default="rl")  # cache key prefix of the counters
# The public license API (/api/v1/licenses/...): calls per license key and per client IP, per hour.
LICENSE_API_RATE_PER_KEY = env.int("LICENSE_API_RATE_PER_KEY_PER_HOUR", default=60)
LICENSE_API_RATE_PER_IP = env.int("LICENSE_API_RATE_PER_IP_PER_HOUR", default=600)
MERCHANT_API_RATE = env.int("MERCHANT_API_RATE_PER_HOUR", default=3600)  # per merchant API key
# Outbound webhooks go to https addresses that resolve to public IPs only (storefront.safe_http); the test suite
# alone turns this on to reach its own receiver on http://127.0.0.1.
WEBHOOK_ALLOW_LOOPBACK_HTTP = False
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
