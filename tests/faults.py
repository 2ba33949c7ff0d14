"""Faults for the tests, made for real: a throwaway Redis that can be SIGKILLed and restarted on its port, a
Celery worker (as `celery -A storefront worker` runs in production) on it and on the test database, and the
test's own database connection pointed at a dead port (PostgreSQL away).

Nothing here touches the machine's shared Redis or PostgreSQL: the Redis is ours, the worker only connects
to this run's own test database, and only this test's connection loses its server. Every wait polls with a
generous bounded deadline.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import ROOT, find_binary, free_port


def wait_until(check, *, timeout: float, what: str, interval: float = 0.1):
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


class ThrowawayRedis:
    """redis-server on a free loopback port, without persistence: killed, it comes back empty."""

    def __init__(self, log_dir: Path):
        self.binary = find_binary("redis-server")
        self.port = free_port()
        self.log = log_dir / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def answers() -> bool:
            try:
                return bool(redis.Redis.from_url(self.url, socket_connect_timeout=1).ping())
            except redis.RedisError:
                return False

        wait_until(answers, timeout=30, what="the throwaway Redis answering")

    def kill(self) -> None:
        """SIGKILL: no shutdown, every client's socket reset."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None


class CeleryWorker:
    """`celery -A storefront worker` in its own process group, logging at INFO to a file."""

    def __init__(
        self, *, broker_url: str, log_dir: Path, concurrency: int = 1, extra_env: dict[str, str] | None = None
    ):
        from django.conf import settings
        from django.db import connection

        db = connection.settings_dict
        self.log = log_dir / "worker.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "storefront.settings",
            "DEBUG": "0",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
            "REDIS_URL": broker_url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "SECRET_KEY": settings.SECRET_KEY,
            "KEY_ENCRYPTION_KEYS": ",".join(settings.KEY_ENCRYPTION_KEYS),
            "KEY_FINGERPRINT_SECRET": settings.KEY_FINGERPRINT_SECRET,
            "STRIPE_WEBHOOK_SECRET": settings.STRIPE_WEBHOOK_SECRET,
            "RISK_VELOCITY_PREFIX": settings.RISK_VELOCITY_PREFIX,
            "FULFILMENT_SWEEP_AFTER_MINUTES": "0",
            "CONN_MAX_AGE": "0",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        self.concurrency = concurrency
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "storefront",
                    "worker",
                    "-l",
                    "info",
                    "-c",
                    str(self.concurrency),
                    "--without-mingle",
                    "--without-gossip",
                    "-n",
                    f"faults-{os.getpid()}-{time.monotonic_ns()}@%h",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_for_log("ready.", timeout=90)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_log(self, text: str, *, count: int = 1, timeout: float = 60) -> None:
        wait_until(
            lambda: self.log_text().count(text) >= count or self._died(),
            timeout=timeout,
            what=f"worker log line {text!r} (x{count})",
        )

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its pool children: whatever they were doing stops mid-transaction."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
            self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        except ProcessLookupError:
            pass
        self.process = None


def broker_client(url: str):
    """A Celery app of the test's own that only sends tasks, by name, to `url` (as beat or the web would)."""
    from celery import Celery

    app = Celery("fault-tests", broker=url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True)
    return app


@contextlib.contextmanager
def database_unreachable():
    """This test's database connection points at a port nobody listens on (as while PostgreSQL restarts): every
    query in this thread fails with OperationalError until the block ends. For transactional tests."""
    from django.db import connection

    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = free_port()
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
