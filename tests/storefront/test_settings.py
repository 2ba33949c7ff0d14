"""Settings read in a fresh process from a given environment: production fails closed, the demo and the suite
state their own DEBUG, secrets, database and Celery."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
MANAGE_PY_DEFAULT = {"DJANGO_SETTINGS_MODULE": "storefront.settings"}  # what manage.py, wsgi.py and celery.py pick
SECRETS = ("SECRET_KEY", "KEY_ENCRYPTION_KEYS", "KEY_FINGERPRINT_SECRET", "STRIPE_WEBHOOK_SECRET")
SHOW_SETTINGS = (
    "import json, django; django.setup(); from django.conf import settings as s;"
    "print(json.dumps({'DEBUG': s.DEBUG, 'ENGINE': s.DATABASES['default']['ENGINE'],"
    " 'NAME': str(s.DATABASES['default']['NAME']), 'OPTIONS': s.DATABASES['default'].get('OPTIONS', {}),"
    " 'EAGER': s.CELERY_TASK_ALWAYS_EAGER,"
    " 'BROKER': s.CELERY_BROKER_URL, 'REDIS_URL': s.REDIS_URL, 'EMAIL_BACKEND': s.EMAIL_BACKEND,"
    " 'STRIPE_API_BASE': s.STRIPE_API_BASE, 'STRIPE_SECRET_KEY': s.STRIPE_SECRET_KEY, 'SECRET_KEY': s.SECRET_KEY,"
    " 'STRIPE_WEBHOOK_SECRET': s.STRIPE_WEBHOOK_SECRET}))"
)


def production_env(**overrides: str) -> dict[str, str]:
    """What a production host sets (DEBUG left out: it must default to off); an override of None removes it."""
    env = {
        "PATH": "/usr/bin:/bin",
        **MANAGE_PY_DEFAULT,
        "SECRET_KEY": "x" * 50,
        "KEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "KEY_FINGERPRINT_SECRET": "fingerprint-secret",
        "STRIPE_WEBHOOK_SECRET": "whsec_production",
        "DATABASE_URL": "postgres://shop@127.0.0.1:9/storefront",  # never connected to here
        "REDIS_URL": "redis://127.0.0.1:9/0",
    }
    env.update(overrides)
    return {name: value for name, value in env.items() if value is not None}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def settings_in(env: dict[str, str]) -> dict:
    result = run(["-c", SHOW_SETTINGS], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_debug_is_off_unless_the_environment_turns_it_on():
    assert settings_in(production_env())["DEBUG"] is False
    assert settings_in(production_env(DEBUG="1"))["DEBUG"] is True


@pytest.mark.parametrize("missing", SECRETS)
def test_production_without_debug_set_refuses_to_start_without_each_secret(missing):
    # Given a production environment that never mentions DEBUG and lacks one secret
    env = production_env(**{missing: None})

    # When the shop starts (manage.py; gunicorn and Celery import the same settings)
    result = run(["manage.py", "check"], env)

    # Then it refuses, naming the variable
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {missing} must be set when DEBUG is off" in result.stderr


@pytest.mark.parametrize(
    "missing, fallback",
    [("DATABASE_URL", "a SQLite file next to manage.py"), ("REDIS_URL", "Celery running tasks in the web process")],
)
def test_production_refuses_to_fall_back_to_the_demo_database_or_eager_celery(missing, fallback):
    result = run(["manage.py", "check"], production_env(**{missing: None}))

    assert result.returncode != 0, f"started with {fallback}"
    assert f"ImproperlyConfigured: {missing} must be set when DEBUG is off" in result.stderr


@pytest.mark.parametrize("missing", SECRETS)
def test_the_production_settings_invent_no_secret_even_with_debug_on(missing):
    result = run(["manage.py", "check"], production_env(DEBUG="1", **{missing: None}))

    assert result.returncode != 0
    assert f"{missing} must be set (storefront.settings has no development default)" in result.stderr


def test_the_demo_settings_state_their_own_debug_secrets_sqlite_eager_celery_and_localstripe():
    # Given a shell with production variables still exported
    env = production_env(
        DJANGO_SETTINGS_MODULE="storefront.settings_demo",
        DEBUG="0",
        STRIPE_SECRET_KEY="sk_live_from_the_shell",
        EMAIL_URL="smtp://user:pass@smtp.example.com:587",
    )

    # When the demo's settings load
    demo = settings_in(env)

    # Then none of them reached the demo
    assert demo["DEBUG"] is True
    assert demo["ENGINE"] == "django.db.backends.sqlite3"
    assert demo["NAME"] == str(ROOT / "db.sqlite3")
    # webhooks arrive while a shopper's request writes: transactions wait for SQLite's one writer, never fail
    assert demo["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert demo["EAGER"] is True
    assert (demo["BROKER"], demo["REDIS_URL"]) == ("memory://", "")
    assert demo["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    assert (demo["STRIPE_API_BASE"], demo["STRIPE_SECRET_KEY"]) == ("http://127.0.0.1:8420", "sk_test_localstripe")
    assert demo["SECRET_KEY"] != env["SECRET_KEY"]
    assert demo["STRIPE_WEBHOOK_SECRET"] == "whsec_localstripe_demo"


def test_the_test_settings_state_their_own_debug_and_secrets():
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "storefront.settings_test", "DEBUG": "0"}

    suite = settings_in(env)

    assert suite["DEBUG"] is True
    assert suite["ENGINE"] == "django.db.backends.postgresql"
    assert suite["SECRET_KEY"].startswith("test-suite-")
    assert suite["STRIPE_WEBHOOK_SECRET"] == "whsec_test_suite_secret"


def test_manage_py_demo_runs_with_the_demo_settings_when_none_are_given():
    # `python manage.py demo` (README) in a shell with no Django variables at all
    result = run(["manage.py", "demo", "--help"], {"PATH": "/usr/bin:/bin"})

    assert result.returncode == 0, result.stderr
    assert "--stripe-port" in result.stdout


def test_the_docker_build_step_starts_with_the_production_settings():
    # The image's collectstatic runs with DEBUG=0 and build-only values: they must satisfy the settings
    dockerfile = (ROOT / "Dockerfile").read_text()
    (step,) = [s for s in re.split(r"\n(?=[A-Z]+ )", dockerfile) if s.startswith("RUN") and "collectstatic" in s]
    env = dict(re.findall(r"\b([A-Z_]+)=(\S+)", step.split("python manage.py")[0]))
    assert env.get("DEBUG") == "0"

    result = run(["-c", "import django; django.setup()"], {"PATH": "/usr/bin:/bin", **env, **MANAGE_PY_DEFAULT})

    assert result.returncode == 0, result.stderr


def test_private_storage_switches_to_an_s3_bucket_when_configured():
    env = production_env(S3_BUCKET="shop-private", S3_ENDPOINT_URL="http://127.0.0.1:9")
    code = (
        "import django; django.setup();"
        'from django.core.files.storage import storages; s = storages["default"];'
        "print(type(s).__name__, s.bucket_name, s.default_acl, s.querystring_auth)"
    )
    result = run(["-c", code], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["S3Storage", "shop-private", "private", "True"]


def test_the_migration_check_runs_in_a_bare_environment_and_a_broken_setting_says_which():
    # Given nothing set at all (a fresh checkout, CI): makemigrations reads only the code, on the demo's settings
    bare = {"PATH": "/usr/bin:/bin"}
    result = run(["manage.py", "makemigrations", "--check", "--dry-run"], bare)
    assert result.returncode == 0, result.stderr
    assert "No changes detected" in result.stdout

    # And a command that needs the production settings names the missing one, not "Models aren't loaded yet"
    result = run(["manage.py", "check"], bare)
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be set when DEBUG is off" in result.stderr
    assert "AppRegistryNotReady" not in result.stderr
