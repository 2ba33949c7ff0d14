"""Delivery: keys from the pool, download links, service bookings."""

import logging
import secrets

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone

from catalog.models import FulfilmentKind
from fulfillment.crypto import encrypt_secret, fingerprint_secret
from fulfillment.models import KeyStatus, LicenseKey
from orders.models import Order, OrderLine, OrderStatus
from orders.status import determine_fulfilment_status, order_lock, order_transition

logger = logging.getLogger(__name__)

DELIVERABLE_STATUSES = (OrderStatus.PAID, OrderStatus.AWAITING_STOCK)
_DOWNLOAD_SALT = "fulfillment.download"


def keys_add_to_pool(*, product, secrets_: list[str], actor: str) -> int:
    """Encrypt and add keys to a product's pool; keys already in the pool are skipped. Returns count added."""
    rows = []
    seen: set[str] = set()
    for plaintext in secrets_:
        value = plaintext.strip()
        if not value:
            continue
        fp = fingerprint_secret(value)
        if fp in seen:
            continue
        seen.add(fp)
        rows.append(LicenseKey(product=product, ciphertext=encrypt_secret(value), fingerprint=fp))
    existing = set(
        LicenseKey.objects.filter(product=product, fingerprint__in=[r.fingerprint for r in rows]).values_list(
            "fingerprint", flat=True
        )
    )
    rows = [r for r in rows if r.fingerprint not in existing]
    LicenseKey.objects.bulk_create(rows, ignore_conflicts=True)
    logger.info("%s added %d keys to product %s", actor, len(rows), product.pk)
    return len(rows)


def keys_claim_for_line(*, line: OrderLine, units: list[int]) -> int:
    """Claim one available key per unit index for this line; returns how many were claimed.

    Rows are taken with SELECT ... FOR UPDATE SKIP LOCKED so concurrent buyers never wait on
    each other's keys; the UPDATE re-checks `status=available`, and (order_line, unit_index)
    is unique, so a key can never be sold twice nor a unit filled twice.
    """
    if not units:
        return 0
    candidate_ids = list(
        LicenseKey.objects.select_for_update(skip_locked=True)
        .filter(product_id=line.product_id, status=KeyStatus.AVAILABLE)
        .order_by("id")
        .values_list("id", flat=True)[: len(units)]
    )
    now = timezone.now()
    claimed = 0
    for key_id, unit in zip(candidate_ids, units, strict=False):
        claimed += LicenseKey.objects.filter(pk=key_id, status=KeyStatus.AVAILABLE).update(
            status=KeyStatus.SOLD, order_line=line, unit_index=unit, sold_at=now
        )
    return claimed


def _deliver_line(line: OrderLine, now) -> None:
    if line.kind == FulfilmentKind.LICENSE_KEY:
        filled = set(line.license_keys.values_list("unit_index", flat=True))
        missing = [i for i in range(line.quantity) if i not in filled]
        if keys_claim_for_line(line=line, units=missing) < len(missing):
            return
    elif line.kind == FulfilmentKind.SERVICE:
        line.booking_reference = line.booking_reference or "BK-" + secrets.token_hex(4).upper()
    line.delivered_at = now
    line.save(update_fields=["delivered_at", "booking_reference"])


@transaction.atomic
def order_deliver(*, order_id: int, actor: str = "fulfillment") -> Order:
    """Deliver whatever the order is still owed, and move it to where it now stands.

    Safe to run any number of times, concurrently too: the order row is locked first, an
    order that is not paid-and-approved is left alone, and delivered lines are skipped.
    """
    from orders.tasks import send_order_email

    order = order_lock(order_id=order_id)
    if order.status not in DELIVERABLE_STATUSES:
        return order
    lines = list(order.lines.select_related("product"))
    now = timezone.now()
    for line in lines:
        if not line.delivered_at and not line.requires_shipping:
            _deliver_line(line, now)
    target = determine_fulfilment_status(lines)
    if target == order.status:
        return order
    order = order_transition(order=order, to_status=target, actor=actor)
    email = "order_awaiting_stock" if target == OrderStatus.AWAITING_STOCK else "order_delivered"
    transaction.on_commit(lambda: send_order_email.delay(order.pk, email))
    return order


def download_token_for_line(line: OrderLine) -> str:
    return signing.TimestampSigner(salt=_DOWNLOAD_SALT).sign(str(line.pk))


class DownloadUnavailable(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def download_resolve(*, token: str) -> OrderLine:
    """The line a signed download link points to, or DownloadUnavailable (404, 410)."""
    try:
        line_id = signing.TimestampSigner(salt=_DOWNLOAD_SALT).unsign(
            token, max_age=settings.DOWNLOAD_LINK_TTL.total_seconds()
        )
    except signing.SignatureExpired:
        raise DownloadUnavailable(410, "expired") from None
    except signing.BadSignature:
        raise DownloadUnavailable(404, "invalid") from None
    line = OrderLine.objects.select_related("order", "product").filter(pk=int(line_id)).first()
    if line is None or line.kind != FulfilmentKind.DOWNLOAD or not line.delivered_at:
        raise DownloadUnavailable(404, "invalid")
    if line.order.status in (OrderStatus.REFUNDED, OrderStatus.CANCELLED):
        raise DownloadUnavailable(410, "refunded")
    if not line.product.download_file:
        raise DownloadUnavailable(404, "missing")
    return line
