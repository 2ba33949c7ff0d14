"""What a verified notification must be before the shop acts on it, for every provider.

A correct signature says who sent a body, not that the shop can read it. `load_event` reads it as a JSON
object (no NaN or Infinity, no number beyond 64 bits, no NUL in a string, nested at most MAX_DEPTH deep, and
without Python's decoder recursing past its limit), and `checked_notice` holds the normalised notice to what
the database will store (amounts that fit their columns, references that fit theirs, ISO currency codes).
Either raises WebhookRejected: the caller answers 400 and records nothing.
"""

import dataclasses
import json
import math
import re
import typing
from datetime import datetime

from payments.providers.base import WebhookNotice, WebhookRejected

MAX_DEPTH = 64  # far beyond any Stripe or PayPal event (about 8 levels)
MAX_INTEGER = 2**63 - 1
MAX_AMOUNT = 2**31 - 1  # the largest amount the PositiveIntegerField columns (Payment, Refund, Dispute) hold
MAX_REF_LENGTH = 100  # event ids and provider references are stored in CharField(max_length=100)
_CURRENCY = re.compile(r"[A-Z]{3}")
_REFS = {"event_id", "event_type", "ref", "payment_ref", "capture_ref", "dispute_ref", "attempt_ref", "approved_ref"}


def load_event(payload: bytes) -> dict:
    """The body as a JSON object, or WebhookRejected."""
    try:
        event = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise WebhookRejected("payload is nested too deeply") from None
    except ValueError as exc:  # not UTF-8, not JSON, NaN or Infinity, an integer of thousands of digits
        raise WebhookRejected("payload is not valid JSON") from exc
    if not isinstance(event, dict):
        raise WebhookRejected("payload is not an event")
    _check_values(event)
    return event


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf
        raise ValueError("number out of range")
    return value


def _check_values(event: dict) -> None:
    """Walk the parsed body without recursion: depth, integer size and strings PostgreSQL can store."""
    stack: list[tuple[object, int]] = [(event, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = [*value.keys(), *value.values()]
        elif isinstance(value, list):
            children = value
        elif isinstance(value, str):
            if "\x00" in value:
                raise WebhookRejected("payload holds a NUL character")
            continue
        elif isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INTEGER:
                raise WebhookRejected("payload holds a number out of range")
            continue
        else:
            continue
        if depth > MAX_DEPTH:
            raise WebhookRejected("payload is nested too deeply")
        stack.extend((child, depth + 1) for child in children)


def checked_notice(notice: WebhookNotice) -> WebhookNotice:
    """`notice` if every field has the type and range the shop stores it in, else WebhookRejected."""
    _check_fields(notice)
    for part in (notice.payment, notice.refund, notice.fraud):
        if part is not None:
            _check_fields(part)
    return notice


def _check_fields(record) -> None:
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if not _valid(field.name, field.type, value):
            raise WebhookRejected(f"{type(record).__name__}.{field.name} is not valid")


def _valid(name: str, kind, value) -> bool:
    if value is None:
        return type(None) in typing.get_args(kind)
    if kind is str:
        if not isinstance(value, str) or "\x00" in value:
            return False
        if name == "currency":
            return value == "" or bool(_CURRENCY.fullmatch(value))
        return name not in _REFS or len(value) <= MAX_REF_LENGTH
    if kind in (int, int | None):
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_AMOUNT
    if kind is bool:
        return isinstance(value, bool)
    if kind == datetime | None:
        return isinstance(value, datetime)
    return True  # nested facts (Radar's) are plain JSON, already checked by load_event
