"""Find or start PostgreSQL and Redis for the test suite, then run pytest; then the SQLite smoke suite.

Order of preference for each service: the URL in the environment (DATABASE_URL,
REDIS_URL); the local server on its standard port; a throwaway server started here from
the installed binaries (removed afterwards). If none works, say what to install.

tests/smoke_sqlite runs in a second pytest run, after the PostgreSQL one and never inside it: purchases
driven through `manage.py demo` itself (storefront.settings_demo: SQLite, Celery eager, localstripe, the
fake PayPal), so the embedded default `make demo` runs on is tested too. Either run failing fails the whole.
Paths choose the runs: none (or a folder holding both) runs both, a path inside tests/smoke_sqlite only
the smoke suite (no PostgreSQL needed), any other path only the PostgreSQL suite.
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
SMOKE = ROOT / "tests" / "smoke_sqlite"
SMOKE_SETTINGS = "tests.smoke_sqlite.settings"
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


def split_runs(args: list[str]) -> tuple[list[str] | None, list[str] | None]:
    """The arguments of the PostgreSQL run and of the SQLite smoke run (None: that run is not wanted).

    Options go to both; each path goes to the run it belongs to. A path above tests/smoke_sqlite (the whole
    `tests` folder) goes to the PostgreSQL run with the smoke folder ignored, and brings the smoke run along.
    """
    options, postgres, smoke = [], [], []
    for arg in args:
        path = (ROOT / arg.split("::")[0]).resolve()
        if arg.startswith("-") or not path.exists():
            options.append(arg)
        elif path == SMOKE or SMOKE in path.parents:
            smoke.append(arg)
        else:
            postgres.append(arg)
            if path in SMOKE.parents:
                smoke.append(str(SMOKE.relative_to(ROOT)))
    if not postgres and not smoke:  # no path: the whole suite, both runs
        smoke.append(str(SMOKE.relative_to(ROOT)))
        return [*options, f"--ignore={SMOKE.relative_to(ROOT)}"], [*options, *smoke]
    postgres_run = [*options, f"--ignore={SMOKE.relative_to(ROOT)}", *postgres] if postgres else None
    return postgres_run, ([*options, *dict.fromkeys(smoke)] if smoke else None)


def run_pytest(args: list[str], env: dict[str, str]) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env)


def run_smoke_suite(args: list[str]) -> int:
    say(
        "SQLite smoke suite (tests/smoke_sqlite): `manage.py demo` with the demo's settings: SQLite, Celery eager, "
        "localstripe, the fake PayPal"
    )
    env = {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "REDIS_URL")}
    return run_pytest([f"--ds={SMOKE_SETTINGS}", *args], env)


def main() -> int:
    args = sys.argv[1:]
    postgres_args, smoke_args = split_runs(args) if args[:1] != ["--bench"] else (args, None)
    codes: dict[str, int] = {}
    if postgres_args is not None:
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
        if args[:1] == ["--bench"]:
            return subprocess.call([sys.executable, "tests/bench.py", *args[1:]], cwd=ROOT, env=env)
        browser_tests_note(postgres_args)
        codes["PostgreSQL suite"] = run_pytest(postgres_args, env)
    stop_early = "-x" in args or "--exitfirst" in args
    if smoke_args is not None and not (stop_early and codes.get("PostgreSQL suite", 0) not in (0, 5)):
        codes["SQLite smoke suite"] = run_smoke_suite(smoke_args)
    if len(codes) > 1:
        say("; ".join(f"{run}: {'passed' if code == 0 else f'exit code {code}'}" for run, code in codes.items()))
    if all(code == 5 for code in codes.values()):
        say("pytest collected no tests: that is a failure")
        return 1
    failed = [code for code in codes.values() if code not in (0, 5)]
    return failed[0] if failed else 0


if __name__ == "__main__":
    sys.exit(main())
