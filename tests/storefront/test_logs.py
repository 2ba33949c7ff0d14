"""Log lines (storefront.logs): a request id on each, the order's reference, JSON in production, and both carried
from a web request into the Celery tasks it queues."""

import json
import logging
import subprocess
import sys
import time

import pytest
from celery.signals import task_prerun
from django.conf import settings
from django.http import HttpResponse
from django.test import Client, RequestFactory

from fulfillment.tasks import fill_backorders
from storefront.logs import (
    JsonFormatter,
    LogContextFilter,
    RequestIdMiddleware,
    bind_order,
    current_order_ref,
    current_request_id,
    order_ref_var,
    request_id_var,
)
from tests.factories import ProductFactory, add_keys
from tests.storefront.test_settings import production_env


class Kept(logging.Handler):
    """The records one logger emits, with the context filter applied as the console handler has it."""

    def __init__(self):
        super().__init__()
        self.addFilter(LogContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(autouse=True)
def _nothing_bound():
    """Each test starts, and leaves the thread, with no request id or order bound (checkout binds its order)."""
    tokens = (request_id_var.set("-"), order_ref_var.set("-"))
    yield
    order_ref_var.reset(tokens[1])
    request_id_var.reset(tokens[0])


@pytest.fixture
def kept():
    handler = Kept()
    logger = logging.getLogger("storefront.test_logs")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def view_that_logs(request):
    bind_order("SF-TEST-0001")
    logging.getLogger("storefront.test_logs").warning("paid")
    return HttpResponse("ok")


@pytest.mark.parametrize(
    ("given", "kept_as_given"),
    [
        ("3f2a9c1e-8b7d-4e6f-a5c4-0d1e2f3a4b5c", True),
        ("lb-trace/1234:5678", True),
        ("short", False),  # too short to be anyone's id
        ("has a space in it", False),
        ("line\nbreak-forged-log-line", False),
        ("x" * 200, False),
    ],
)
def test_the_request_id_is_the_callers_when_sane_and_is_returned_in_the_response(given, kept_as_given):
    response = Client().get("/healthz", HTTP_X_REQUEST_ID=given)

    if kept_as_given:
        assert response["X-Request-ID"] == given
    else:
        assert response["X-Request-ID"] != given
        assert len(response["X-Request-ID"]) == 32 and int(response["X-Request-ID"], 16) >= 0


def test_every_line_of_a_request_carries_its_id_and_the_order_and_nothing_is_left_for_the_next(kept):
    middleware = RequestIdMiddleware(view_that_logs)

    response = middleware(RequestFactory().get("/", HTTP_X_REQUEST_ID="req-0123456789"))

    assert response["X-Request-ID"] == "req-0123456789"
    (record,) = kept.records
    assert (record.request_id, record.order_ref) == ("req-0123456789", "SF-TEST-0001")
    # The thread serves its next request (or logs outside one) with nothing of this one bound
    assert (current_request_id(), current_order_ref()) == ("-", "-")


def test_a_json_line_holds_the_message_level_logger_time_ids_and_extras_but_not_the_request_path(kept):
    record = logging.LogRecord("storefront.test_logs", logging.ERROR, __file__, 1, "order %s failed", ("SF-1",), None)
    token = request_id_var.set("req-json-000001")
    try:
        LogContextFilter().filter(record)
    finally:
        request_id_var.reset(token)
    record.request = RequestFactory().get("/order/SeCrEtToKeN0123456789abcdefABCDEF0123456789/")
    record.status_code = 500
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()

    line = JsonFormatter().format(record)

    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "order SF-1 failed"
    assert parsed["level"] == "ERROR" and parsed["logger"] == "storefront.test_logs"
    assert parsed["request_id"] == "req-json-000001" and parsed["order_ref"] == "-"
    assert parsed["status_code"] == 500
    assert "ValueError: boom" in parsed["exc_info"]
    assert parsed["time"].startswith("20")
    assert "SeCrEtToKeN" not in line  # Django's `request` extra (its path) is left out


def test_production_writes_json_lines_and_the_demo_plain_text():
    show = (
        "import django, logging; django.setup();"
        "from storefront.logs import bind_order; bind_order('SF-PROD-1');"
        "logging.getLogger('storefront.probe').warning('hello %s', 'there')"
    )
    production = subprocess.run(
        [sys.executable, "-c", show], cwd=settings.BASE_DIR, env=production_env(), capture_output=True, text=True
    )
    assert production.returncode == 0, production.stderr
    line = json.loads(production.stderr.strip().splitlines()[-1])
    assert line["message"] == "hello there" and line["order_ref"] == "SF-PROD-1" and line["level"] == "WARNING"

    plain = subprocess.run(
        [sys.executable, "-c", show],
        cwd=settings.BASE_DIR,
        env=production_env(DEBUG="1"),
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr.strip().splitlines()[-1].endswith("WARNING storefront.probe hello there")


# --- into Celery tasks -------------------------------------------------------------------------------------------


@pytest.fixture
def context_seen_by_tasks():
    """(task name, request id, order ref) as each task starts, after storefront.logs has bound them."""
    seen: list[tuple[str, str, str]] = []

    def look(task=None, **kwargs):
        seen.append((task.name, current_request_id(), current_order_ref()))

    task_prerun.connect(look, weak=False)
    yield seen
    task_prerun.disconnect(look)


def wait_for(seen: list, deadline_seconds: float = 30.0) -> tuple:
    deadline = time.monotonic() + deadline_seconds
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen, "the worker never ran the task"
    return seen[0]


@pytest.mark.django_db(transaction=True)
def test_a_task_queued_by_a_request_logs_the_requests_id_and_order_in_the_worker(
    celery_worker_on_redis, context_seen_by_tasks
):
    def view(request):
        bind_order("SF-QUEUED-0001")
        fill_backorders.delay(0)  # no product 0: nothing waits for it
        return HttpResponse("queued")

    RequestIdMiddleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="req-into-the-worker"))

    assert wait_for(context_seen_by_tasks) == (fill_backorders.name, "req-into-the-worker", "SF-QUEUED-0001")


@pytest.mark.django_db(transaction=True)
def test_a_task_queued_outside_a_request_gets_an_id_of_its_own(celery_worker_on_redis, context_seen_by_tasks):
    result = fill_backorders.delay(0)  # no product 0: nothing waits for it

    assert wait_for(context_seen_by_tasks) == (fill_backorders.name, f"task-{result.id}", "-")


@pytest.mark.django_db
def test_a_task_run_eagerly_keeps_the_callers_context(make_order, context_seen_by_tasks):
    product = ProductFactory()
    add_keys(product, 1)
    order = make_order((product, 1))  # checkout names the order

    token = request_id_var.set("req-eager-000001")
    try:
        fill_backorders.delay(0)  # run eagerly, as the suite runs tasks
    finally:
        request_id_var.reset(token)

    assert context_seen_by_tasks == [(fill_backorders.name, "req-eager-000001", order.number)]


@pytest.mark.django_db
def test_a_path_a_caller_filled_with_a_card_number_or_a_token_is_blanked_in_the_request_line(caplog):
    # Given requests whose paths hold a card number and an order page's token (schemathesis once sent the first)
    card, token = "4242424242424242", "Zx81kQ2vN7pLm4Rt9Yw3Hc6Bd5Fg0Js2Ku8Ae1Tq7Vo"
    with caplog.at_level(logging.WARNING, logger="django.request"):
        Client().post(f"/api/v1/merchant/licenses/{card}/reset-activations")
        Client().get(f"/order/{token}/")

    # Then Django's request lines say what happened, without either
    lines = [record.getMessage() for record in caplog.records if record.name == "django.request"]
    assert any(line.startswith("Unauthorized: /api/v1/merchant/licenses/") for line in lines), lines
    assert any(line.startswith("Not Found: /order/") for line in lines), lines
    assert not [line for line in lines if card in line or token in line]


def test_every_django_line_reaching_the_console_is_scrubbed_and_the_shops_own_lines_are_kept():
    # Given a CSRF refusal Django logs under a child logger, quoting an order page's path, and a line of the shop
    token = "Zx81kQ2vN7pLm4Rt9Yw3Hc6Bd5Fg0Js2Ku8Ae1Tq7Vo"
    django_line = logging.LogRecord(
        "django.security.csrf", logging.WARNING, __file__, 1, "Forbidden (%s): %s", ("CSRF", f"/order/{token}/"), None
    )
    shop_line = logging.LogRecord("storefront.flow", logging.INFO, __file__, 1, "task %s", (token,), None)

    # When the console handler's filter sees them
    LogContextFilter().filter(django_line)
    LogContextFilter().filter(shop_line)

    # Then Django's line has lost the token, the shop's own line is as written
    assert token not in django_line.getMessage() and django_line.getMessage().startswith("Forbidden (CSRF): /order/")
    assert shop_line.getMessage() == f"task {token}"


def test_gunicorns_access_line_carries_no_token_nor_card_number():
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from storefront.gunicorn_logging import ScrubbedAccessLogger

    token, card = "Zx81kQ2vN7pLm4Rt9Yw3Hc6Bd5Fg0Js2Ku8Ae1Tq7Vo", "4242424242424242"
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": f"/order/{token}/?card={card}",
        "PATH_INFO": f"/order/{token}/",
        "QUERY_STRING": f"card={card}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_REFERER": f"https://shop.example/order/{token}/",
    }
    response = SimpleNamespace(status="200 OK", sent=12, headers=[])
    atoms = ScrubbedAccessLogger(Config()).atoms(response, SimpleNamespace(headers=[]), environ, timedelta(0))

    line = " ".join(str(atoms[name]) for name in ("r", "U", "q", "f"))
    assert token not in line and card not in line
    assert atoms["r"].startswith("GET /order/") and atoms["s"] == "200"
