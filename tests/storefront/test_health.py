"""The probes (/healthz, /readyz) and the Celery worker's health check (storefront.health)."""

import json

import pytest
from django.core.management import CommandError, call_command
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client

from storefront.health import migration_state, migrations_unapplied
from tests.faults import database_unreachable
from tests.harness import free_port


@pytest.fixture
def production_host_rules(settings):
    """As in production: one host name allowed, plain http redirected to https."""
    settings.ALLOWED_HOSTS = ["shop.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


@pytest.fixture(autouse=True)
def _migrations_checked_afresh():
    migration_state.forget()
    yield
    migration_state.forget()


def test_healthz_answers_a_container_probe_on_plain_http_at_127_0_0_1(production_host_rules):
    # Given production's host and https rules, when the container's probe asks http://127.0.0.1:8000/healthz
    response = Client().get("/healthz", HTTP_HOST="127.0.0.1:8000")

    # Then the process answers, without a redirect or a 400 for the host
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_a_page_still_obeys_the_host_and_https_rules(production_host_rules):
    # The probes' exemption is theirs alone: the shop's own pages are refused for a foreign host.
    assert Client().get("/", HTTP_HOST="127.0.0.1:8000").status_code == 400
    assert Client().get("/", HTTP_HOST="shop.example.com").status_code == 301


@pytest.mark.django_db
def test_readyz_is_ok_when_the_database_redis_and_the_broker_answer_and_migrations_are_applied(
    production_host_rules,
):
    response = Client().get("/readyz", HTTP_HOST="127.0.0.1:8000")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "cache": "ok", "broker": "ok"},
    }


@pytest.mark.django_db
def test_readyz_is_503_while_redis_does_not_answer_and_names_no_address(settings):
    # Given Redis (cache and broker) on a port nobody listens on, with a password in its URL
    dead = f"redis://:hunter2-redis-password@127.0.0.1:{free_port()}/0"
    settings.REDIS_URL = settings.CELERY_BROKER_URL = dead

    response = Client().get("/readyz")

    # Then not ready, saying which check failed and its class, and nothing of the URL
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["cache"] == body["checks"]["broker"] == "error: ConnectionError"
    assert "hunter2" not in response.content.decode() and "127.0.0.1" not in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_while_the_database_is_unreachable():
    with database_unreachable():
        response = Client().get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "error: OperationalError"
    assert response.json()["checks"]["migrations"] == "unknown"


@pytest.mark.django_db
def test_readyz_is_503_while_a_migration_of_this_code_is_not_applied():
    # Given the database never recorded the newest migration of the orders app
    newest = MigrationRecorder.Migration.objects.filter(app="orders").order_by("-applied", "-id").first()
    MigrationRecorder.Migration.objects.filter(pk=newest.pk).delete()

    # Then it is listed as missing, and the shop says it is not ready
    assert f"orders.{newest.name}" in migrations_unapplied()
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "error: MigrationsPending"


@pytest.mark.django_db
def test_migrations_once_found_applied_are_not_read_again_by_the_process(django_assert_max_num_queries):
    # Given one probe found every migration applied
    assert migration_state.applied()

    # Then the next probes cost one query (SELECT 1), not the migration table again
    with django_assert_max_num_queries(1):
        assert Client().get("/readyz").status_code == 200


def test_only_get_and_head_are_answered_by_the_probes():
    assert Client().head("/healthz").status_code == 200
    refused = Client().post("/healthz")
    assert refused.status_code == 405 and refused["Allow"] == "GET, HEAD"  # without the database (no db mark)


def test_the_probes_are_not_cached_and_carry_a_request_id():
    response = Client().get("/healthz", HTTP_X_REQUEST_ID="probe-0123456789")
    assert response["X-Request-ID"] == "probe-0123456789"
    assert json.loads(response.content)["status"] == "ok"


# --- the Celery worker ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_worker_health_exits_0_when_a_worker_answers(celery_worker_on_redis, capsys):
    call_command("worker_health", "--any", "--timeout", "5")

    assert "answering: " in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_worker_health_fails_when_no_worker_of_this_host_answers(celery_worker_on_redis):
    # A worker runs, but not the one this container's check names
    with pytest.raises(CommandError, match="no worker answered"):
        call_command("worker_health", "--destination", "celery@no-such-host", "--timeout", "1")


def test_worker_health_fails_when_the_broker_cannot_be_reached():
    from storefront.celery import app

    saved_url, saved_pool = app.conf.broker_url, app._pool
    app.conf.broker_url, app._pool = f"redis://127.0.0.1:{free_port()}/0", None  # connections to a dead port
    try:
        with pytest.raises(CommandError, match="the broker could not be reached"):
            call_command("worker_health", "--any", "--timeout", "1")
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_url, app._pool = saved_url, saved_pool
