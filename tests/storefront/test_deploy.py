"""Wherever the shop runs, what runs it restarts the web, the worker and beat when they end by themselves.

docker compose, systemd and supervisord each get the three processes from deploy/, and README's
"Running it for real" points at them; the Celery settings keep a worker waiting out a broker outage.
"""

import configparser
import subprocess
from pathlib import Path

import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent.parent
PROCESSES = ("web", "worker", "beat")


def test_docker_compose_restarts_web_worker_and_beat_unless_stopped():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]

    for name in PROCESSES:
        assert services[name]["restart"] == "unless-stopped", name


def test_systemd_units_restart_each_process_always_and_never_give_up():
    for name in PROCESSES:
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str
        unit.read(ROOT / "deploy" / "systemd" / f"storefront-{name}.service")

        assert unit["Service"]["Restart"] == "always", name
        assert unit["Unit"]["StartLimitIntervalSec"] == "0", name
        assert unit["Service"]["EnvironmentFile"] == "/etc/storefront/env", name


def test_supervisor_programs_restart_each_process_and_their_children():
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(ROOT / "deploy" / "supervisor" / "storefront.conf")

    for name in PROCESSES:
        program = conf[f"program:storefront-{name}"]
        assert program["autorestart"] == "true", name
        assert program["killasgroup"] == program["stopasgroup"] == "true", name
        assert int(program["startretries"]) >= 1000, name


def test_with_env_passes_the_env_file_literally(tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# a comment\nSECRET_KEY=a b$HOME;c\n\nEMPTY=\n")

    out = subprocess.run(
        [ROOT / "deploy" / "with-env", env_file, "sh", "-c", 'printf "%s|%s" "$SECRET_KEY" "${EMPTY-unset}"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert out == "a b$HOME;c|"


def test_the_readme_points_at_the_process_managers():
    running_for_real = (ROOT / "README.md").read_text().split("## Running it for real", 1)[1].split("\n## ", 1)[0]

    for path in ("deploy/systemd/", "deploy/supervisor/storefront.conf", "restart: unless-stopped"):
        assert path in running_for_real, path


def test_a_worker_waits_out_a_broker_outage_however_long():
    assert settings.CELERY_BROKER_CONNECTION_RETRY is True
    assert settings.CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP is True
    assert settings.CELERY_BROKER_CONNECTION_MAX_RETRIES is None
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    assert options["socket_timeout"] > 0 and options["health_check_interval"] > 0
