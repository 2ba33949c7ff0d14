"""What gets installed, and what the production image runs.

pyproject.toml declares every package the code imports; `make lock` (uv) writes two locks from it, both pinned with
hashes: requirements.lock.txt, what runs the shop (the image installs it alone), and requirements-dev.lock.txt, that
plus the tools and the test suite (`make install`). The image is built in two stages and runs gunicorn as uid 10001
from a config file that takes its numbers from the environment; docker-compose.yml names no password.
"""

import ast
import importlib.metadata
import json
import os
import re
import runpy
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from gunicorn.config import Config
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.storefront.test_settings import production_env, run

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_LOCK = ROOT / "requirements.lock.txt"
DEV_LOCK = ROOT / "requirements-dev.lock.txt"
APPS = ("catalog", "orders", "payments", "fulfillment", "riskengine", "storefront")
LOCAL = {*APPS, "devtools", "tests", "manage"}
DEV_ONLY = ("localstripe", "pytest", "pytest-django", "playwright", "ruff", "schemathesis", "hypothesis", "uv")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def locked(path: Path) -> dict[str, tuple[str, list[str], str]]:
    """name -> (version, hashes, marker) of every requirement in a lock."""
    text = path.read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        spec, _, _ = line.partition(" --hash")
        requirement = Requirement(spec.strip())
        (pin,) = requirement.specifier
        assert pin.operator == "==", line
        found[canonicalize_name(requirement.name)] = (
            pin.version,
            re.findall(r"--hash=sha256:([0-9a-f]{64})", line),
            str(requirement.marker or ""),
        )
    return found


def declared(*extras: str) -> set[str]:
    names = list(PYPROJECT["dependencies"])
    for extra in extras:
        names += PYPROJECT["optional-dependencies"][extra]
    return {canonicalize_name(Requirement(name).name) for name in names}


def imported_distributions(*folders: str) -> dict[str, str]:
    """distribution -> one file importing it, for every third-party import in the folders' Python files."""
    owners = importlib.metadata.packages_distributions()
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in LOCAL:
                        continue
                    for distribution in owners.get(top, [f"<no installed package provides {top}>"]):
                        found.setdefault(canonicalize_name(distribution), str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("lock", [RUNTIME_LOCK, DEV_LOCK], ids=["runtime", "dev"])
def test_each_lock_pins_every_package_with_its_hashes_and_is_written_by_make_lock(lock):
    packages = locked(lock)

    assert len(packages) > 50
    assert all(hashes for _, hashes, _ in packages.values()), [n for n, (_, h, _) in packages.items() if not h]
    assert "#    make lock" in lock.read_text().split("\n", 3)[1]  # uv's header, naming the command that writes it


def test_the_runtime_lock_is_the_dev_lock_without_the_tools():
    runtime, dev = locked(RUNTIME_LOCK), locked(DEV_LOCK)

    assert not [name for name in DEV_ONLY if name in runtime]
    assert all(name in dev for name in DEV_ONLY)
    assert {name: dev[name][0] for name in runtime} == {name: version for name, (version, _, _) in runtime.items()}


def test_the_pins_ci_tested_stay_put():
    runtime = locked(RUNTIME_LOCK)

    for name, version in {"django": "5.2.19", "stripe": "16.1.0", "scikit-learn": "1.9.1", "celery": "5.7.0"}.items():
        assert runtime[name][0] == version, name
    assert runtime["celery-redbeat"][0] == "2.4.2"


def test_pyproject_declares_every_package_the_shop_imports():
    runtime = imported_distributions(*APPS)
    tools = imported_distributions("devtools", "tests")

    assert {name: path for name, path in runtime.items() if name not in declared("s3")} == {}
    assert {name: path for name, path in tools.items() if name not in declared("s3", "dev")} == {}


def test_the_environment_has_every_package_of_the_dev_lock_at_its_pin():
    # `make install` installs the dev lock with --require-hashes: what runs the suite is what the lock says
    wrong = {}
    for name, (version, _, marker) in locked(DEV_LOCK).items():
        if marker and not Marker(marker).evaluate():
            continue
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}


def test_make_install_takes_the_dev_lock_with_hashes_and_make_lock_writes_both():
    makefile = (ROOT / "Makefile").read_text()

    assert "STAMP := $(VENV)/.installed-$(shell cksum $(DEV_LOCK)" in makefile
    assert "pip install --quiet --require-hashes -r $(DEV_LOCK)" in makefile
    lock_recipe = makefile.split("\nlock:", 1)[1].split("\n\n", 1)[0]
    assert lock_recipe.count("uv pip compile pyproject.toml") == 2 and "--generate-hashes" in makefile


def dockerfile_stages() -> list[list[str]]:
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    stages: list[list[str]] = []
    for line in lines:
        if line.startswith("FROM "):
            stages.append([])
        if stages and line.strip() and not line.lstrip().startswith("#"):
            stages[-1].append(line.strip())
    return stages


def test_the_image_is_built_in_two_stages_and_runs_the_runtime_lock_only():
    build, final = dockerfile_stages()[0], dockerfile_stages()[-1]

    assert any("pip install --require-hashes -r /tmp/requirements.lock.txt" in line for line in build)
    image = "\n".join(final)
    assert "pip install" not in image and "requirements" not in image
    assert "COPY --from=build /opt/venv /opt/venv" in image
    assert "USER 10001:10001" in image
    assert 'CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py", "storefront.wsgi:application"]' in final
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"deploy", "!deploy/gunicorn.conf.py", "tests", "devtools", ".env", "**/.env"} <= set(ignored)


def gunicorn_settings(monkeypatch, **environ: str) -> Config:
    for name in list(os.environ):
        if name.startswith("GUNICORN_") or name == "WEB_CONCURRENCY":
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    config = Config()
    for name, value in runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py")).items():
        if name in config.settings:
            config.set(name, value)  # gunicorn's own validation of each value
    return config


def test_gunicorn_takes_workers_threads_and_timeouts_from_the_environment(monkeypatch):
    config = gunicorn_settings(
        monkeypatch,
        GUNICORN_WORKERS="5",
        GUNICORN_THREADS="4",
        GUNICORN_TIMEOUT="45",
        GUNICORN_GRACEFUL_TIMEOUT="20",
        GUNICORN_KEEPALIVE="3",
        GUNICORN_MAX_REQUESTS="1000",
        GUNICORN_BIND="127.0.0.1:9000",
    )

    assert (config.workers, config.threads, config.timeout, config.graceful_timeout) == (5, 4, 45, 20)
    assert (config.keepalive, config.max_requests, config.bind) == (3, 1000, ["127.0.0.1:9000"])
    assert config.worker_class_str == "gthread"  # more than one thread


def test_gunicorn_defaults_without_the_environment(monkeypatch):
    config = gunicorn_settings(monkeypatch)

    assert (config.workers, config.threads, config.timeout, config.bind) == (2, 1, 30, ["0.0.0.0:8000"])
    assert gunicorn_settings(monkeypatch, WEB_CONCURRENCY="3").workers == 3


def test_docker_compose_names_no_password():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]

    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            value = str(value)
            assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), (name, variable)  # user:password@ in a URL
            if re.search(r"PASSWORD|SECRET|_KEY", variable) and not variable.endswith("_FILE"):
                assert value.startswith("${"), (name, variable)
    assert services["db"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert compose["secrets"]["postgres_password"] == {"file": "deploy/secrets/postgres_password"}
    for name in ("db", "migrate", "web", "worker", "beat"):
        assert "postgres_password" in services[name]["secrets"], name
    assert services["web"]["command"][:3] == ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
    assert "--schedule" not in services["beat"]["command"]  # the schedule lives in Redis (celery-redbeat)


def database_settings(**environ: str) -> dict:
    show = (
        "import json, django; django.setup(); from django.conf import settings as s; d = s.DATABASES['default'];"
        "print(json.dumps({k: d.get(k) for k in ('PASSWORD', 'DISABLE_SERVER_SIDE_CURSORS', 'OPTIONS')}))"
    )
    result = run(["-c", show], production_env(**environ))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_database_password_can_come_from_a_file(tmp_path):
    password_file = tmp_path / "postgres_password"
    password_file.write_text("s3cret-from-file\n")

    assert database_settings(DATABASE_PASSWORD_FILE=str(password_file))["PASSWORD"] == "s3cret-from-file"
    assert database_settings()["PASSWORD"] == ""


def test_transaction_pooling_turns_off_server_side_cursors_and_prepared_statements():
    pooled = database_settings(DATABASE_TRANSACTION_POOLING="1")
    direct = database_settings()

    assert pooled["DISABLE_SERVER_SIDE_CURSORS"] is True and pooled["OPTIONS"] == {"prepare_threshold": None}
    assert not direct["DISABLE_SERVER_SIDE_CURSORS"] and direct["OPTIONS"] == {}
