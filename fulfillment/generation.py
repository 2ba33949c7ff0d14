"""Keys generated at delivery: a product whose LicensePolicy says `generated` never draws from a pool.

Each key comes from a cryptographically secure random source (`secrets`), is encrypted and fingerprinted like an
imported key, and is written straight as sold to its line and unit, inside the delivering transaction: the same
(order_line, unit_index) constraint that stops a pool key being sold twice stops a second key being made.
"""

import logging
import secrets

from django.db import IntegrityError, transaction

from fulfillment.crypto import encrypt_secret, fingerprint_secret
from fulfillment.models import KeyEvent, KeyEventType, KeyStatus, License, LicenseKey
from orders.models import OrderLine

logger = logging.getLogger(__name__)

# 32 letters and digits without the look-alikes 0/O and 1/I: five random bits a character, easy to type.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
ATTEMPTS = 3


def key_from_pattern(pattern: str) -> str:
    """A new key: every X of the pattern replaced by a random character of ALPHABET, the rest kept."""
    return "".join(secrets.choice(ALPHABET) if char == "X" else char for char in pattern)


def keys_generate_for_line(*, line: OrderLine, units: list[int], pattern: str, now) -> int:
    """Generate, encrypt and sell one new key per unit index to the line, audited as 'generated'.

    A fingerprint already known (a collision, all but impossible at 60 bits and more) makes a new batch; the
    unique constraints are the last line of defence, behind a savepoint. Returns how many were made. Call inside
    the delivering transaction, with the order locked.
    """
    if not units:
        return 0
    for _attempt in range(ATTEMPTS):
        rows = []
        for unit in units:
            value = key_from_pattern(pattern)
            rows.append(
                LicenseKey(
                    product_id=line.product_id,
                    ciphertext=encrypt_secret(value),
                    fingerprint=fingerprint_secret(value),
                    status=KeyStatus.SOLD,
                    order_line=line,
                    unit_index=unit,
                    sold_at=now,
                )
            )
        fingerprints = [row.fingerprint for row in rows]
        if len(set(fingerprints)) < len(rows) or License.objects.filter(fingerprint__in=fingerprints).exists():
            continue
        try:
            with transaction.atomic():  # a savepoint: a collision leaves the delivery's transaction usable
                created = LicenseKey.objects.bulk_create(rows)
        except IntegrityError:
            logger.warning("order line %s: a generated key collided; generating again", line.pk)
            continue
        KeyEvent.objects.bulk_create(
            KeyEvent(key_id=row.pk, type=KeyEventType.GENERATED, actor="fulfillment", order_id=line.order_id)
            for row in created
        )
        return len(created)
    raise RuntimeError(f"order line {line.pk}: no unique key could be generated from the product's pattern")
