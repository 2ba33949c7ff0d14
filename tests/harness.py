"""Find or start PostgreSQL and Redis for the test suite, then run pytest.

Order of preference for each service: the URL in the environment (DATABASE_URL,
REDIS_URL); the local server on its standard port; a throwaway server started here from
the installed binaries (removed afterwards). If none works, say what to install.
"""

import atexit
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
E2E = ROOT / "tests" / "e2e"
PG_DEFAULT = "postgres://postgres@127.0.0.1:5432/storefront"
REDIS_DEFAULT = "redis://127.0.0.1:6379/15"


def say(message: str) -> None:
    print(f"[make test] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_answers(url: str) -> bool:
    import psycopg

    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    try:
        with psycopg.connect(admin_url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def start_throwaway_postgres() -> str | None:
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if not (initdb and pg_ctl):
        return None
    data = Path(tempfile.mkdtemp(prefix="storefront-pg-"))
    port = free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            return None
        os.chown(data, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    say(f"starting a throwaway PostgreSQL on 127.0.0.1:{port} in {data}")
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = f"-h 127.0.0.1 -p {port} -k {data} -F"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "start"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    atexit.register(
        lambda: (
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], stdout=subprocess.DEVNULL),
            shutil.rmtree(data, ignore_errors=True),
        )
    )
    return f"postgres://postgres@127.0.0.1:{port}/storefront"


def start_throwaway_redis() -> str | None:
    binary = find_binary("redis-server")
    if not binary:
        return None
    port = free_port()
    say(f"starting a throwaway Redis on 127.0.0.1:{port}")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    atexit.register(process.terminate)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        if redis_answers(url):
            return url
        time.sleep(0.1)
    return None


def resolve(name: str, env_var: str, default: str, answers, start) -> str:
    url = os.environ.get(env_var)
    if url:
        if not answers(url):
            sys.exit(f"[make test] {env_var}={url} is set but the {name} server does not answer.")
        say(f"{name}: {env_var} from the environment")
        return url
    if answers(default):
        say(f"{name}: the local server ({default})")
        return default
    url = start()
    if url and answers(url):
        return url
    return ""


def runs_browser_tests(args: list[str]) -> bool:
    """Whether pytest with these arguments collects tests/e2e: no path given (the whole suite), or a path
    inside it or above it."""
    paths = [(ROOT / arg.split("::")[0]).resolve() for arg in args if not arg.startswith("-")]
    paths = [path for path in paths if path.exists()]
    return not paths or any(path == E2E or E2E in path.parents or path in E2E.parents for path in paths)


def browser_tests_note(args: list[str]) -> None:
    """Say whether the browser tests run; without Chromium they skip themselves (tests/e2e/conftest.py)."""
    if not runs_browser_tests(args):
        return
    sys.path.insert(0, str(ROOT))
    from tests.e2e.chromium import SKIP_REASON, find_chromium

    chromium = find_chromium()
    say(f"browser tests: Chromium at {chromium}" if chromium else SKIP_REASON)


def main() -> int:
    db = resolve("PostgreSQL", "DATABASE_URL", PG_DEFAULT, postgres_answers, start_throwaway_postgres)
    cache = resolve("Redis", "REDIS_URL", REDIS_DEFAULT, redis_answers, start_throwaway_redis)
    missing = []
    if not db:
        missing.append("PostgreSQL 15+ (Debian: apt-get install -y postgresql), or set DATABASE_URL")
    if not cache:
        missing.append("Redis 7+ (Debian: apt-get install -y redis-server), or set REDIS_URL")
    if missing:
        say("cannot run the suite: no usable server was found or could be started. Install:")
        for item in missing:
            print(f"  - {item}")
        return 2
    env = dict(os.environ, DATABASE_URL=db, REDIS_URL=cache)
    if sys.argv[1:2] == ["--bench"]:
        return subprocess.call([sys.executable, "tests/bench.py", *sys.argv[2:]], cwd=ROOT, env=env)
    browser_tests_note(sys.argv[1:])
    code = subprocess.call([sys.executable, "-m", "pytest", *sys.argv[1:]], cwd=ROOT, env=env)
    if code == 5:
        say("pytest collected no tests: that is a failure")
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
