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

FILTERED = "[Filtered]"

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
_TEXT_PATTERNS = (
    re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),  # an email address
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9_]+|\bwhsec_[A-Za-z0-9_]+"),  # Stripe keys, webhook secrets
    re.compile(r"(?i)\b(?:bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),  # credentials in a header quoted in a message
    # License-key shapes: three or more dash-separated groups of letters and digits ("ABCD-1234-EFGH", "SF-12-00042").
    re.compile(r"\b[A-Z0-9]{2,}(?:-[A-Z0-9]{2,}){2,}\b"),
    # Random tokens (order pages' 43 characters, Fernet keys, signed links): long runs mixing letters and digits.
    re.compile(r"(?<![A-Za-z0-9_-])(?=[A-Za-z_-]*[0-9])(?=[0-9_-]*[A-Za-z])[A-Za-z0-9_-]{24,}={0,2}"),
)
_CARD_CANDIDATE = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")


def luhn_valid(digits: str) -> bool:
    """Whether a run of digits passes the Luhn check card numbers pass (the log guard in tests uses it too)."""
    total = 0
    for index, digit in enumerate(int(d) for d in reversed(digits)):
        if index % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def scrub_text(text: str) -> str:
    """`text` with emails, card numbers, provider keys, credentials, license keys and tokens blanked."""

    def card(match: re.Match) -> str:
        digits = re.sub(r"\D", "", match.group())
        return FILTERED if luhn_valid(digits) else match.group()

    text = _CARD_CANDIDATE.sub(card, text)
    for pattern in _TEXT_PATTERNS:
        text = pattern.sub(FILTERED, text)
    return text


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
