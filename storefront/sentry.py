"""Error reports to Sentry (sentry-sdk with its Django and Celery integrations), only when SENTRY_DSN is set.

Nothing a shopper typed or owns leaves the shop with a report: send_default_pii is off (no cookies, user, IP),
request bodies and local variables are not sent, and `scrub_event` (before_send, and before_breadcrumb for
each breadcrumb) blanks what might still carry one: fields named like a secret, an email, a card or a key;
Authorization, Cookie and signature headers; and in any text, email addresses, card numbers (Luhn-checked),
provider keys and tokens, bearer credentials, license keys and the order pages' random tokens.
"""

import re
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.django import DjangoIntegration

from storefront.scrub import FILTERED, scrub_text

# A field whose name holds one of these is blanked whatever its value ("stripe_secret_key", "card_number").
_SENSITIVE_NAME = re.compile(
    r"pass(word|wd)?|secret|token|auth|cookie|session|csrf|signature|api[_-]?key|private|credential|"
    r"card|cvc|cvv|^pan$|iban|email|mail|license|licence|shared_key|plaintext|ciphertext|^key$|_key$|^keys$|sig$",
    re.IGNORECASE,
)
# Fields of a stack frame and of the event's own bookkeeping: code locations, never data.
_CODE_FIELDS = frozenset(
    {"filename", "abs_path", "module", "function", "lineno", "colno", "package", "platform", "in_app", "type"}
    | {"event_id", "timestamp", "level", "logger", "release", "environment", "server_name", "sdk", "mechanism"}
    | {"trace_id", "span_id", "parent_span_id", "op", "start_timestamp"}
)


def scrub(value: Any, *, name: str = "") -> Any:
    """A copy of `value` (dicts, lists, text) with every sensitive field and fragment blanked."""
    if name and name not in _CODE_FIELDS and _SENSITIVE_NAME.search(name):
        return FILTERED if value not in (None, "", [], {}) else value
    if isinstance(value, dict):
        return {key: scrub(item, name=str(key)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        # Headers arrive as [name, value] pairs in some integrations: the pair's name decides.
        pair = len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], str)
        if pair and _SENSITIVE_NAME.search(value[0]):
            return [value[0], FILTERED]
        return [scrub(item, name=name) for item in value]
    if isinstance(value, str) and name not in _CODE_FIELDS:
        return scrub_text(value)
    return value


def scrub_event(event: dict, hint: dict | None = None) -> dict:
    """Sentry's before_send: the event without cookies, request body, user or anything sensitive in it."""
    event = scrub(event)
    request = event.get("request")
    if isinstance(request, dict):
        request.pop("cookies", None)
        request.pop("data", None)  # a form's or the API's body: emails, card tokens, addresses
        if "query_string" in request:
            request["query_string"] = FILTERED if request["query_string"] else ""
    user = event.get("user")
    if isinstance(user, dict):
        event["user"] = {k: v for k, v in user.items() if k == "id"}
    return event


def scrub_breadcrumb(crumb: dict, hint: dict | None = None) -> dict:
    return scrub(crumb)


def sentry_options(*, dsn: str, environment: str, release: str, traces_sample_rate: float) -> dict:
    """What sentry_sdk.init is given."""
    return {
        "dsn": dsn,
        "environment": environment,
        "release": release or None,
        "integrations": [DjangoIntegration(transaction_style="url"), CeleryIntegration()],
        "send_default_pii": False,
        "include_local_variables": False,  # a frame can hold a revealed key or a card token
        "max_request_body_size": "never",
        "before_send": scrub_event,
        "before_send_transaction": scrub_event,
        "before_breadcrumb": scrub_breadcrumb,
        "traces_sample_rate": traces_sample_rate,
    }


def sentry_init(*, dsn: str, environment: str = "production", release: str = "", traces_sample_rate: float = 0.0):
    """Start reporting errors to Sentry when `dsn` is set; returns whether it started (settings call this)."""
    if not dsn:
        return False
    sentry_sdk.init(
        **sentry_options(dsn=dsn, environment=environment, release=release, traces_sample_rate=traces_sample_rate)
    )
    return True
