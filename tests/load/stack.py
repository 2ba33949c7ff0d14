"""The shop as it runs for real, on 127.0.0.1, for `make bench`: gunicorn, a Celery worker (and, for the
faults that need it, Celery beat), PostgreSQL, a throwaway Redis (so it can be killed and restarted) and
localstripe. Every process is ours and is stopped at exit.

The web and worker processes run production settings (DEBUG=0, collected static files) against the
bench's own database; the bench process itself talks to the same database and Redis. Like systemd's
Restart=always or compose's restart: unless-stopped (deploy/), the stack restarts a worker or beat that
exits on its own; one the bench stops or kills on purpose stays down until it is started again.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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
        self.beat: subprocess.Popen | None = None
        # Restarts of a worker or beat that died by itself (a SIGKILL sent by the bench is not counted).
        self.restarts: dict[str, int] = {"worker": 0, "beat": 0}
        self.node_name = f"bench-{os.getpid()}"  # the Celery worker's name (one per node)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
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
            "TRUSTED_PROXY_COUNT": "1",  # as behind one reverse proxy: a shopper is told by X-Forwarded-For
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

    def kill_redis(self) -> None:
        """SIGKILL Redis: no shutdown, every client's socket reset, queued tasks and counters gone."""
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait(10)
            self.redis = None

    # --- web and worker -----------------------------------------------------------------------------------

    def collect_static(self) -> None:
        """Into the stack's own folder: a suite running beside the bench keeps the project's staticfiles/."""
        self.env["STATIC_ROOT"] = str(Path(self.dir) / "staticfiles")
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=self.env, check=True
        )

    def start_web(self, *, workers: int = 2, threads: int = 4) -> None:
        self.web = self.spawn_web(port=self.web_port, workers=workers, threads=threads, env=self.env)
        wait_for(lambda: requests.get(self.url + "/", timeout=2).status_code == 200, timeout=30, what="gunicorn")

    def spawn_web(
        self, *, port: int, workers: int, threads: int, env: dict, name: str = "gunicorn"
    ) -> subprocess.Popen:
        return subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                "storefront.wsgi:application",
                "-b",
                f"127.0.0.1:{port}",
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
            env=env,
            stdout=self._log(name),
            stderr=subprocess.STDOUT,
        )

    def start_worker(self, *, concurrency: int = 2) -> None:
        with self._lock:
            if self.worker is None:
                self.worker = self._spawn_worker(concurrency)
                self._concurrency = concurrency
        self._supervise()
        time.sleep(2.0)  # connect to the broker; tasks sent meanwhile wait in Redis

    def _spawn_worker(self, concurrency: int) -> subprocess.Popen:
        return subprocess.Popen(
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
                f"{self.node_name}@%h",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log("worker"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a SIGKILL takes the pool children too
        )

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool: whatever it was delivering is cut off mid-transaction."""
        with self._lock:
            if self.worker is not None:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait(10)
                self.worker = None

    def stop_worker(self) -> None:
        with self._lock:
            worker, self.worker = self.worker, None
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)

    def start_beat(self, *, sweep_every_s: int = 5) -> None:
        """Celery beat with the production schedule, the sweeper (and the import resumer) every few seconds."""
        self.env["FULFILMENT_SWEEP_EVERY_SECONDS"] = str(sweep_every_s)
        with self._lock:
            if self.beat is None:
                self.beat = self._spawn_beat()
        self._supervise()

    def _spawn_beat(self) -> subprocess.Popen:
        return subprocess.Popen(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "storefront",
                "beat",
                "-l",
                "warning",
                "--schedule",
                str(self.dir / "celerybeat-schedule"),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log("beat"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop_beat(self) -> None:
        with self._lock:
            beat, self.beat = self.beat, None
        if beat is not None:
            os.killpg(beat.pid, signal.SIGTERM)
            try:
                beat.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(beat.pid, signal.SIGKILL)
                beat.wait(10)

    def worker_pid(self) -> int | None:
        with self._lock:
            return self.worker.pid if self.worker is not None else None

    def _supervise(self) -> None:
        """One thread for the life of the stack: restart the worker or beat if it exits by itself."""
        with self._lock:
            if self._supervisor is None:
                self._supervisor = threading.Thread(target=self._watch, name="stack-supervisor", daemon=True)
                self._supervisor.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            with self._lock:
                if self.worker is not None and self.worker.poll() is not None:
                    self.worker = self._respawn("worker", self.worker, lambda: self._spawn_worker(self._concurrency))
                if self.beat is not None and self.beat.poll() is not None:
                    self.beat = self._respawn("beat", self.beat, self._spawn_beat)

    def _respawn(self, name: str, dead: subprocess.Popen, spawn) -> subprocess.Popen:
        print(f"[stack] Celery {name} exited by itself (code {dead.returncode}): restarting it", flush=True)
        with contextlib.suppress(ProcessLookupError):  # its pool children (same group) go with it, as under systemd
            os.killpg(dead.pid, signal.SIGKILL)
        self.restarts[name] += 1
        return spawn()

    def stop(self) -> None:
        self._stopping.set()
        self.stop_beat()
        self.stop_worker()
        if self.web is not None:
            self.web.terminate()
            try:
                self.web.wait(15)
            except subprocess.TimeoutExpired:
                self.web.kill()
            self.web = None
        self.stop_redis()
