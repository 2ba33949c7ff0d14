"""Probes for whatever runs the shop: is the process alive, can it serve, is a Celery worker answering.

- GET /healthz: the web process answers (no database, no Redis): for a liveness probe, restart if it fails.
- GET /readyz: PostgreSQL, the cache's Redis and the Celery broker answer, and every migration of this code is
  applied: for a readiness probe or a load balancer, send no traffic while it says 503.
- `python manage.py worker_health`: exits 0 when a Celery worker (this host's, by default) answers a ping.

Both pages are answered by `ProbeMiddleware`, first in MIDDLEWARE, before the host is checked against
ALLOWED_HOSTS and before SECURE_SSL_REDIRECT: a container's probe asks http://127.0.0.1:8000/healthz, which
is neither the shop's host name nor https. They say which check failed and the exception's class, never its
message (a connection error can quote a host, a user or a URL).
"""

import logging
import threading
import time

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponseNotAllowed, JsonResponse

from storefront.celery import app as celery_app

logger = logging.getLogger(__name__)

LIVE_PATH = "/healthz"
READY_PATH = "/readyz"
# A probe waits this long for Redis, not the cache's own 0.5 s (a slow Redis is still a ready one).
REDIS_TIMEOUT_SECONDS = 2.0
# While migrations are missing, the plan is built again at most this often (loading it reads every migration).
MIGRATIONS_RECHECK_SECONDS = 10.0


class _MigrationState:
    """Whether this code's migrations are all applied. Once they are, that holds for the life of the process
    (a migration is only ever added by new code, which comes with a restart), so the plan is built once."""

    def __init__(self):
        self._applied = False
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def applied(self) -> bool:
        if self._applied:
            return True
        with self._lock:
            if not self._applied and time.monotonic() - self._checked_at >= MIGRATIONS_RECHECK_SECONDS:
                self._checked_at = time.monotonic()
                self._applied = not migrations_unapplied()
        return self._applied

    def forget(self) -> None:
        with self._lock:
            self._applied, self._checked_at = False, float("-inf")


def migrations_unapplied(using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """The migrations of this code not yet applied to the database, as "app.name"."""
    executor = MigrationExecutor(connections[using])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]


migration_state = _MigrationState()
_redis_clients: dict[str, redis.Redis] = {}


def redis_client(url: str) -> redis.Redis:
    """A client of the Redis at `url` with the probes' timeouts, one per process and URL (its own pool)."""
    client = _redis_clients.get(url)
    if client is None:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
        )
        _redis_clients[url] = client
    return client


def _redis_ping(url: str) -> None:
    redis_client(url).ping()


def check_database() -> None:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")


def check_migrations() -> None:
    if not migration_state.applied():
        raise MigrationsPending


class MigrationsPending(Exception):
    """The database lacks migrations this code needs (run `manage.py migrate`)."""


def readiness_checks() -> dict[str, str]:
    """Each dependency's state: "ok", "skipped" (not used by this configuration) or "error: <class>"."""
    redis_url = getattr(settings, "REDIS_URL", "")
    broker_url = getattr(settings, "CELERY_BROKER_URL", "") or ""
    checks = {
        "database": check_database,
        "migrations": check_migrations,
        "cache": (lambda: _redis_ping(redis_url)) if redis_url else None,
        # The broker is Redis (storefront.celery); when it is the cache's Redis, one ping answers for both.
        "broker": (lambda: _redis_ping(broker_url)) if broker_url.startswith(("redis://", "rediss://")) else None,
    }
    results: dict[str, str] = {}
    for name, check in checks.items():
        if check is None:
            results[name] = "skipped"
            continue
        if name == "migrations" and results.get("database") != "ok":
            results[name] = "unknown"  # the database could not be asked
            continue
        if name == "broker" and broker_url == redis_url and "cache" in results:
            results[name] = results["cache"]
            continue
        try:
            check()
        except Exception as exc:  # any failure means "not ready"; which one is in the answer and the log
            results[name] = f"error: {type(exc).__name__}"
        else:
            results[name] = "ok"
    return results


def healthz(request: HttpRequest) -> JsonResponse:
    return _no_store(JsonResponse({"status": "ok"}))


def readyz(request: HttpRequest) -> JsonResponse:
    checks = readiness_checks()
    ready = all(state in ("ok", "skipped") for state in checks.values())
    if not ready:
        failed = {name: state for name, state in checks.items() if state not in ("ok", "skipped")}
        logger.warning("not ready: %s", ", ".join(f"{name} {state}" for name, state in failed.items()))
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    response = JsonResponse(body, status=200 if ready else 503)
    response._has_been_logged = True  # the warning above says what failed; Django's own line would add nothing
    return _no_store(response)


def _no_store(response: JsonResponse) -> JsonResponse:
    response["Cache-Control"] = "no-store"
    return response


PROBES = {LIVE_PATH: healthz, READY_PATH: readyz}


class ProbeMiddleware:
    """Answers GET and HEAD of /healthz and /readyz before any other middleware (see the module's docstring)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = PROBES.get(request.path_info.rstrip("/") or "/")
        if probe is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):  # answered here too: no page, no database, no session
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return probe(request)


# --- the Celery worker ----------------------------------------------------------------------------------------


def celery_workers_answering(*, destination: list[str] | None = None, timeout: float = 5.0) -> list[str]:
    """The names of the workers that answered a ping within `timeout` (all workers, or those in `destination`)."""
    replies = celery_app.control.ping(destination=destination, timeout=timeout) or []
    return sorted(name for reply in replies for name in reply)
