"""Blanking what must never leave the shop in a log line or an error report: email addresses, card numbers
(Luhn-checked), provider keys and credentials, license keys and random tokens (the order pages'). Without any
import beyond the standard library: logging's configuration (storefront.logs) reads it before Django is ready.
"""

import re

FILTERED = "[Filtered]"

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
