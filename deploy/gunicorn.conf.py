"""gunicorn's settings for the shop's web process, all from the environment (README, "Running it for real").

    gunicorn -c deploy/gunicorn.conf.py storefront.wsgi:application

The image, docker-compose.yml, the systemd unit and the supervisord program all start gunicorn this way; a flag on
the command line (`--bind 127.0.0.1:8000`) wins over this file.

- GUNICORN_BIND (default 0.0.0.0:8000): where it listens; behind a proxy on the same host, 127.0.0.1:8000.
- GUNICORN_WORKERS (default 2; WEB_CONCURRENCY is read too): processes. Each holds its own PostgreSQL connection
  per thread (CONN_MAX_AGE): workers x threads x web hosts, plus the Celery workers, must fit the database's (or
  PgBouncer's) connection limit.
- GUNICORN_THREADS (default 1): threads per process; above 1 gunicorn runs the gthread worker.
- GUNICORN_TIMEOUT (default 30): seconds a request may take before its worker is killed and replaced.
- GUNICORN_GRACEFUL_TIMEOUT (default 30): seconds running requests get to finish on SIGTERM (a deploy, a restart).
- GUNICORN_KEEPALIVE (default 5): seconds an idle keep-alive connection from the proxy stays open.
- GUNICORN_MAX_REQUESTS (default 0: never): a worker is replaced after this many requests (and up to
  GUNICORN_MAX_REQUESTS_JITTER more), which bounds slow memory growth.
- GUNICORN_FORWARDED_ALLOW_IPS (default 127.0.0.1): the proxies whose X-Forwarded-* headers gunicorn believes.
"""

import os


def _int(name: str, default: int, *fallbacks: str) -> int:
    for key in (name, *fallbacks):
        value = os.environ.get(key, "").strip()
        if value:
            return int(value)
    return default


bind = os.environ.get("GUNICORN_BIND", "").strip() or "0.0.0.0:8000"
workers = _int("GUNICORN_WORKERS", 2, "WEB_CONCURRENCY")
threads = _int("GUNICORN_THREADS", 1)
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 0)
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "").strip() or "127.0.0.1"
accesslog = "-"
errorlog = "-"
logger_class = "storefront.gunicorn_logging.ScrubbedAccessLogger"  # access lines without tokens or card numbers
# The heartbeat file of each worker in memory, not on a disk (or an overlay file system) that may stall.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None


def on_starting(server) -> None:
    """Metrics of every worker (storefront.metrics): with PROMETHEUS_MULTIPROC_DIR set, each worker writes its counts
    into that folder (best on a tmpfs, such as /dev/shm, emptied at boot) and /metrics adds them up."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if folder:
        os.makedirs(folder, exist_ok=True)
