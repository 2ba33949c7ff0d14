"""Log lines an operator can follow: one JSON object a line, each with its request id and order reference.

- `RequestIdMiddleware` (first in MIDDLEWARE) takes the request id from X-Request-ID when it looks like one
  (a proxy or load balancer made it), else makes one, and returns it in the response's X-Request-ID header.
- The flow layer names the order a request is about (`bind_order`: its number, never its secret token).
- `LogContextFilter` puts both on every record (`request_id`, `order_ref`; "-" when there is none), and
  `JsonFormatter` writes the record as one JSON object (LOG_FORMAT=json, the default with DEBUG off).
- Celery: a task published while a request or task has them carries both in its message headers
  (before_task_publish), and the worker binds them while the task runs (task_prerun / task_postrun), so the
  email queued by a webhook logs the webhook's request id and the order's number.

This module is read by logging's configuration (settings.LOGGING), before Django's apps are ready: it imports
no model.
"""

import logging
import re
import uuid
from contextvars import ContextVar, Token

from celery.signals import before_task_publish, task_postrun, task_prerun
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from storefront.scrub import scrub_text

REQUEST_ID_HEADER = "X-Request-ID"
# What a request id from outside may look like: no spaces, quotes or control characters to forge a log line with.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{8,128}")
_NONE = "-"

request_id_var: ContextVar[str] = ContextVar("request_id", default=_NONE)
order_ref_var: ContextVar[str] = ContextVar("order_ref", default=_NONE)

# Task message headers carrying the context from the publisher to the worker.
REQUEST_ID_TASK_HEADER = "storefront_request_id"
ORDER_REF_TASK_HEADER = "storefront_order_ref"


def request_id_from(header_value: str | None) -> str:
    """The caller's request id if it looks like one, else a new one (32 hex characters)."""
    if header_value and _SANE_REQUEST_ID.fullmatch(header_value):
        return header_value
    return uuid.uuid4().hex


def bind_order(number: str) -> None:
    """Name the order the current request or task is about (its number: never the order page's token)."""
    order_ref_var.set(number or _NONE)


def current_request_id() -> str:
    return request_id_var.get()


def current_order_ref() -> str:
    return order_ref_var.get()


class RequestIdMiddleware:
    """First in MIDDLEWARE: every log line of the request carries its id; the response says which it was."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        # A thread serves many requests one after another: start each with nothing of the last one bound.
        tokens = (request_id_var.set(request_id), order_ref_var.set(_NONE))
        try:
            response = self.get_response(request)
        finally:
            order_ref_var.reset(tokens[1])
            request_id_var.reset(tokens[0])
        response[REQUEST_ID_HEADER] = request_id
        return response


class LogContextFilter(logging.Filter):
    """Adds `request_id` and `order_ref` to every record (on the handler, so third-party loggers get them too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.order_ref = order_ref_var.get()
        if record.name.startswith("django."):  # Django quotes paths as clients wrote them (security, request)
            _scrubbed(record)
        return True


class ScrubFilter(logging.Filter):
    """Blanks card numbers, emails, keys and tokens in the message (storefront.scrub), for the loggers whose
    messages quote what a client sent: Django's "Not Found: /path" and "Unauthorized: /path" lines carry the path
    as the client wrote it, with an order page's token or whatever digits a caller put there."""

    def filter(self, record: logging.LogRecord) -> bool:
        _scrubbed(record)
        return True


def _scrubbed(record: logging.LogRecord) -> None:
    message = record.getMessage()
    scrubbed = scrub_text(message)
    if scrubbed != message:
        record.msg, record.args = scrubbed, None


class JsonFormatter(_JsonFormatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, request_id, order_ref, and any
    `extra=` fields; the traceback as `exc_info`.

    The `request` object Django's loggers attach is left out: its text is the path, which on the order pages
    holds the order's secret token.
    """

    def __init__(self, *args, **kwargs):
        if not args:
            kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        super().__init__(*args, **kwargs)
        self._skip_fields.update({"request", "server_time", "color_message"})


# --- Celery: carry the context from the web request into its tasks -----------------------------------------------


def _publish_with_context(headers: dict | None = None, **_kwargs) -> None:
    if headers is None:
        return
    request_id, order_ref = request_id_var.get(), order_ref_var.get()
    if request_id != _NONE:
        headers.setdefault(REQUEST_ID_TASK_HEADER, request_id)
    if order_ref != _NONE:
        headers.setdefault(ORDER_REF_TASK_HEADER, order_ref)


_task_tokens: dict[str, tuple[Token, Token]] = {}


def _task_start(task_id: str | None = None, task=None, **_kwargs) -> None:
    if task is None or getattr(task.request, "is_eager", False):
        return  # run inside its caller (eager): the caller's context is already the right one
    request_id = getattr(task.request, REQUEST_ID_TASK_HEADER, None) or f"task-{task_id}"
    order_ref = getattr(task.request, ORDER_REF_TASK_HEADER, None) or _NONE
    _task_tokens[task_id or ""] = (request_id_var.set(str(request_id)), order_ref_var.set(str(order_ref)))


def _task_end(task_id: str | None = None, task=None, **_kwargs) -> None:
    tokens = _task_tokens.pop(task_id or "", None)
    if tokens is None:
        return
    try:
        order_ref_var.reset(tokens[1])
        request_id_var.reset(tokens[0])
    except ValueError:  # ended in another context than it started in: nothing of it is bound here
        pass


def celery_log_context_connect() -> None:
    """Connect the three Celery signals (storefront.celery calls this once, in every process)."""
    before_task_publish.connect(_publish_with_context, weak=False, dispatch_uid="storefront.logs.publish")
    task_prerun.connect(_task_start, weak=False, dispatch_uid="storefront.logs.task_start")
    task_postrun.connect(_task_end, weak=False, dispatch_uid="storefront.logs.task_end")
