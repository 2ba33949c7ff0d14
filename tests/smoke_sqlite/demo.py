"""`manage.py demo` as a child process: the shop exactly as `make demo` runs it, on free ports and a throwaway folder.

Its settings are storefront.settings_demo with the files moved (tests/smoke_sqlite/settings.py); everything it
prints (the banner, runserver's log, the console emails, tracebacks) goes to `demo.log` in its folder.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0  # migrate and seed a new SQLite file, start localstripe: about 10 s on two cores


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc: Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it ended while we looked
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; only its exit status is left to collect


class Demo:
    """One `manage.py demo` process; `start()` returns once the shop answers."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.ports = {"shop": free_port(), "stripe": free_port(), "paypal": free_port()}
        self.process: subprocess.Popen | None = None
        self.children: list[int] = []  # localstripe: stopped here too if the demo failed to stop it

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['shop']}"

    @property
    def stripe_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['stripe']}"

    @property
    def log_path(self) -> Path:
        return self.folder / "demo.log"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def command(self) -> tuple[list[str], dict[str, str]]:
        """`manage.py demo` on this demo's ports and folder, and its environment."""
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.smoke_sqlite.settings",
            "SMOKE_SQLITE_DIR": str(self.folder),
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "manage.py", "demo", "--port", str(self.ports["shop"])]
        command += ["--stripe-port", str(self.ports["stripe"]), "--paypal-port", str(self.ports["paypal"])]
        return command, env

    def start(self) -> "Demo":
        self.folder.mkdir(parents=True, exist_ok=True)
        command, env = self.command()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the demo exited with {self.process.returncode}:\n{self.tail()}")
            if "Stop:" in self.output():  # the banner's last line, printed just before runserver starts
                try:
                    if requests.get(self.url + "/", timeout=5).status_code == 200:
                        self.children = children_of(self.process.pid)
                        return self
                except requests.ConnectionError:
                    pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the demo did not answer within {START_TIMEOUT:.0f}s:\n{self.tail()}")

    def signal(self, signum: int = signal.SIGTERM, *, timeout: float = 30.0) -> int:
        """Send the signal and wait for the demo to end; its exit code."""
        assert self.process is not None
        self.process.send_signal(signum)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        """End the demo and anything it left behind (a test that failed must not leave processes)."""
        if self.process is None:
            return
        children = {*self.children, *children_of(self.process.pid)}
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
