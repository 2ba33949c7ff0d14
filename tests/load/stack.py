"""The shop as it runs for real, on 127.0.0.1, for `make bench`: gunicorn, a Celery worker, PostgreSQL,
a throwaway Redis (so it can be restarted) and localstripe. Every process is ours and is stopped at exit.

The web and worker processes run production settings (DEBUG=0, collected static files) against the
bench's own database; the bench process itself talks to the same database and Redis.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s")


class Stack:
    """Starts and stops the processes; `env` is what the web and worker processes see."""

    def __init__(self, *, database_url: str, secrets: dict[str, str]):
        self.dir = Path(tempfile.mkdtemp(prefix="storefront-bench-"))
        self.redis_port = free_port()
        self.web_port = free_port()
        self.redis: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.env = {
            **os.environ,
            **secrets,
            "DJANGO_SETTINGS_MODULE": "storefront.settings",
            "DEBUG": "0",
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis_url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SITE_URL": self.url,
            "SECURE_SSL_REDIRECT": "0",
            "SECURE_HSTS_SECONDS": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "FULFILMENT_SWEEP_AFTER_MINUTES": "0",
            "STRIPE_TIMEOUT_SECONDS": "2",
            "PYTHONUNBUFFERED": "1",
        }

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def _log(self, name: str):
        return open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to a child process

    # --- Redis --------------------------------------------------------------------------------------------

    def start_redis(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.redis = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "", "--appendonly", "no"],
            stdout=self._log("redis"),
            stderr=subprocess.STDOUT,
        )
        import redis

        wait_for(lambda: redis.Redis.from_url(self.redis_url).ping(), timeout=10, what="Redis")

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.terminate()
            self.redis.wait(10)
            self.redis = None

    # --- web and worker -----------------------------------------------------------------------------------

    def collect_static(self) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=self.env, check=True
        )

    def start_web(self, *, workers: int = 2, threads: int = 4) -> None:
        self.web = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                "storefront.wsgi:application",
                "-b",
                f"127.0.0.1:{self.web_port}",
                "-w",
                str(workers),
                "--threads",
                str(threads),
                "--worker-class",
                "gthread",
                "--timeout",
                "60",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log("gunicorn"),
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: requests.get(self.url + "/", timeout=2).status_code == 200, timeout=30, what="gunicorn")

    def start_worker(self, *, concurrency: int = 2) -> None:
        self.worker = subprocess.Popen(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "storefront",
                "worker",
                "-l",
                "warning",
                "-c",
                str(concurrency),
                "--without-mingle",
                "--without-gossip",
                "-n",
                f"bench-{os.getpid()}@%h",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log("worker"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a SIGKILL takes the pool children too
        )
        time.sleep(2.0)  # connect to the broker; tasks sent meanwhile wait in Redis

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool: whatever it was delivering is cut off mid-transaction."""
        if self.worker is not None:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait(10)
            self.worker = None

    def stop_worker(self) -> None:
        if self.worker is not None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker = None

    def stop(self) -> None:
        self.stop_worker()
        if self.web is not None:
            self.web.terminate()
            try:
                self.web.wait(15)
            except subprocess.TimeoutExpired:
                self.web.kill()
            self.web = None
        self.stop_redis()
