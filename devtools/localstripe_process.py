"""Start and stop a localstripe_server subprocess (demo and tests)."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests


@dataclass
class LocalStripe:
    process: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def register_webhook(self, *, url: str, secret: str, name: str = "shop") -> None:
        response = requests.post(f"{self.url}/_config/webhooks/{name}", data={"url": url, "secret": secret}, timeout=5)
        response.raise_for_status()

    def unregister_webhook(self, *, name: str = "shop") -> None:
        requests.delete(f"{self.url}/_config/webhooks/{name}", timeout=5).raise_for_status()

    def open_dispute(self, *, charge: str, amount: int | None = None, reason: str = "fraudulent") -> dict:
        """Open a dispute on a charge (our wrapper's addition); localstripe then sends charge.dispute.created."""
        data = {"charge": charge, "reason": reason, **({"amount": amount} if amount else {})}
        response = requests.post(f"{self.url}/_config/disputes", data=data, timeout=5)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        requests.delete(f"{self.url}/_config/data", timeout=5).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def localstripe_start(
    *,
    port: int = 0,
    state_dir: str = "",
    webhook_url: str = "",
    webhook_secret: str = "",
    log_path: str | os.PathLike = os.devnull,
    timeout: float = 20.0,
) -> LocalStripe:
    """Start localstripe on 127.0.0.1 and wait until it answers. Raises RuntimeError if it does not."""
    port_file = Path(tempfile.mkstemp(prefix="localstripe-port-")[1])
    port_file.write_text("")
    cmd = [sys.executable, "-m", "devtools.localstripe_server", "--port", str(port), "--port-file", str(port_file)]
    if state_dir:
        cmd += ["--state-dir", state_dir]
    else:
        cmd += ["--from-scratch"]
    if webhook_url:
        cmd += ["--webhook-url", webhook_url, "--webhook-secret", webhook_secret]
    root = Path(__file__).resolve().parent.parent
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited with code {process.returncode}; see {log_path}")
        text = port_file.read_text().strip()
        if text:
            bound = int(text)
            try:
                with socket.create_connection(("127.0.0.1", bound), timeout=0.5):
                    port_file.unlink(missing_ok=True)
                    return LocalStripe(process=process, port=bound)
            except OSError:
                pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"localstripe did not start within {timeout:.0f}s")
