"""The key pool: add, reserve, claim, release, revoke, lock, retire. Every move is audited.

Every move into or out of 'available' is counted into the product's stock counter (fulfillment.stock) once
its transaction commits.
"""

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from catalog.models import FulfilmentKind, Product
from fulfillment.crypto import encrypt_secret, fingerprint_secret
from fulfillment.models import KeyEvent, KeyEventType, KeyStatus, LicenseKey
from fulfillment.pool_sql import pool_reserve, pool_sell_held
from fulfillment.stock import keys_after_stock_change as keys_after_stock_change  # re-exported for callers
from fulfillment.stock import keys_stock as keys_stock  # re-exported for callers
from fulfillment.stock import keys_stock_adjust
from fulfillment.stock import keys_stock_recount as keys_stock_recount  # re-exported for callers
from orders.models import Order, OrderLine, OrderStatus
from orders.selectors import order_lines

logger = logging.getLogger(__name__)

MAX_KEY_LENGTH = 500


def _audit(key_ids: list[int], *, type: str, actor: str, order: Order | None = None) -> None:
    type = KeyEventType(type)  # an unknown type raises ValueError
    KeyEvent.objects.bulk_create(KeyEvent(key_id=k, type=type, actor=actor, order=order) for k in key_ids)


def keys_add_to_pool(*, product: Product, secrets_: list[str], actor: str) -> int:
    """Encrypt and add keys to a product's pool; blanks and keys already in it are skipped. Returns count added."""
    rows: dict[str, LicenseKey] = {}
    for plaintext in secrets_:
        value = plaintext.strip()
        if not value or len(value) > MAX_KEY_LENGTH:
            continue
        fp = fingerprint_secret(value)
        rows.setdefault(fp, LicenseKey(product=product, ciphertext=encrypt_secret(value), fingerprint=fp))
    existing = set(
        LicenseKey.objects.filter(product=product, fingerprint__in=list(rows)).values_list("fingerprint", flat=True)
    )
    new = [row for fp, row in rows.items() if fp not in existing]
    with transaction.atomic():
        LicenseKey.objects.bulk_create(new, ignore_conflicts=True)
        # Only the rows this call inserted (their ciphertexts are unique: Fernet's random IVs): a key that a
        # concurrent add committed first was skipped by the constraint and is neither audited nor counted here.
        ours = {row.ciphertext for row in new}
        ids = [
            pk
            for pk, ciphertext in LicenseKey.objects.filter(
                product=product, fingerprint__in=[row.fingerprint for row in new]
            ).values_list("pk", "ciphertext")
            if bytes(ciphertext) in ours
        ]
        _audit(ids, type="imported", actor=actor)
        keys_stock_adjust(product_id=product.pk, delta=len(ids))
    logger.info("%s added %d keys to product %s", actor, len(ids), product.pk)
    return len(ids)


def keys_reserve_for_order(*, order: Order, actor: str = "checkout", first_hold: bool = False) -> bool:
    """Hold one key per license-key unit of the order for the product's reservation window.

    Already-held keys have their window extended (`first_hold`: the caller knows none are, an order placed in this
    very request). Returns False (and holds nothing new) when a product does not have enough keys, so the shopper
    can be told before paying.
    """
    with transaction.atomic():
        lines = [
            line
            for line in order_lines(order)
            if line.kind == FulfilmentKind.LICENSE_KEY and not line.product.is_reusable_key
        ]
        for line in lines:
            if line.product.keys_available < line.quantity and line.product.keys_unlimited:
                continue  # generated at delivery (a generated product has no pool to hold from)
            now = timezone.now()
            until = now + timedelta(minutes=line.product.reservation_minutes)
            held = (
                0
                if first_hold
                else LicenseKey.objects.filter(
                    reserved_for=order, product_id=line.product_id, status=KeyStatus.RESERVED
                ).update(reserved_until=until)
            )  # extends the hold; how many it counted is how many are held
            wanted = line.quantity - held
            if wanted <= 0:
                continue
            if connection.vendor == "postgresql":
                ids = pool_reserve(
                    product_id=line.product_id, order_id=order.pk, count=wanted, until=until, actor=actor, now=now
                )
            else:
                ids = _reserve_with_orm(line=line, order=order, wanted=wanted, until=until, actor=actor)
            if len(ids) < wanted:
                transaction.set_rollback(True)
                return False
            keys_stock_adjust(product_id=line.product_id, delta=-len(ids))
    return True


def _reserve_with_orm(*, line: OrderLine, order: Order, wanted: int, until, actor: str) -> list[int]:
    ids = list(
        LicenseKey.objects.select_for_update(skip_locked=True)
        .filter(product_id=line.product_id, status=KeyStatus.AVAILABLE)
        .order_by("id")
        .values_list("id", flat=True)[:wanted]
    )
    if len(ids) < wanted:
        return ids
    LicenseKey.objects.filter(pk__in=ids, status=KeyStatus.AVAILABLE).update(
        status=KeyStatus.RESERVED, reserved_for=order, reserved_until=until
    )
    _audit(ids, type="reserved", actor=actor, order=order)
    return ids


def keys_release_for_order(*, order: Order, actor: str) -> int:
    """Return an order's reserved keys to the pool (cancelled or refunded before delivery)."""
    with transaction.atomic():
        held = list(
            LicenseKey.objects.select_for_update()
            .filter(reserved_for=order, status=KeyStatus.RESERVED)
            .values_list("pk", "product_id")
        )
        return _release(held, actor=actor, order=order)


def keys_release_expired(*, now=None) -> int:
    """Return keys whose reservation window passed while their order was still unpaid, and any
    still held for an order that was cancelled or refunded."""
    now = now or timezone.now()
    with transaction.atomic():
        held = list(
            LicenseKey.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=KeyStatus.RESERVED)
            .filter(
                Q(reserved_until__lt=now, reserved_for__isnull=True)
                | Q(reserved_until__lt=now, reserved_for__status=OrderStatus.PENDING_PAYMENT)
                | Q(reserved_for__status__in=[OrderStatus.CANCELLED, OrderStatus.REFUNDED])
            )
            .values_list("pk", "product_id")[:5000]
        )
        return _release(held, actor="reservation-expiry")


def _release(held: list[tuple[int, int]], *, actor: str, order: Order | None = None) -> int:
    """Put reserved keys, (id, product id) pairs the caller locked, back in the pool. Call inside a transaction."""
    if not held:
        return 0
    ids = [pk for pk, _ in held]
    released = LicenseKey.objects.filter(pk__in=ids, status=KeyStatus.RESERVED).update(
        status=KeyStatus.AVAILABLE, reserved_for=None, reserved_until=None
    )
    _audit(ids, type="released", actor=actor, order=order)
    # The rows are locked as reserved, so every one of them moved: count them back per product.
    for product_id, count in Counter(product_id for _, product_id in held).items():
        keys_stock_adjust(product_id=product_id, delta=count)
    return released


_CLAIM_ONE_SQL = """
UPDATE fulfillment_licensekey
   SET status = 'sold', order_line_id = %(line)s, unit_index = %(unit)s, sold_at = %(now)s,
       reserved_for_id = NULL, reserved_until = NULL
 WHERE id = (SELECT id FROM fulfillment_licensekey
              WHERE product_id = %(product)s AND status = 'available'
              ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id
"""


def keys_claim_for_line(*, line: OrderLine, units: list[int]) -> int:
    """Sell one key per unit index to this line, the order's reserved keys first; returns how many.

    Pool keys are taken with SELECT ... FOR UPDATE SKIP LOCKED so concurrent buyers never wait on
    each other (on PostgreSQL in one UPDATE ... RETURNING round trip per key); every UPDATE
    re-checks the status it took the key in, and (order_line, unit_index) is unique, so a key
    can never be sold twice nor a unit filled twice. Call inside a transaction.
    """
    if not units:
        return 0
    now = timezone.now()
    if connection.vendor == "postgresql":  # the held keys sold and audited in one statement
        held = pool_sell_held(
            line_id=line.pk,
            product_id=line.product_id,
            order_id=line.order_id,
            units=units,
            actor="fulfillment",
            now=now,
        )
    else:
        held = _sell_held_with_orm(line=line, units=units, now=now)
    from_reserved = len(held)
    claimed: list[int] = []
    remaining = units[from_reserved:]
    if remaining and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for unit in remaining:
                cursor.execute(_CLAIM_ONE_SQL, {"line": line.pk, "unit": unit, "now": now, "product": line.product_id})
                row = cursor.fetchone()
                if row is None:
                    break
                claimed.append(row[0])
    elif remaining:  # SQLite (demo): writes are serialised by the database lock anyway
        pool = list(
            LicenseKey.objects.filter(product_id=line.product_id, status=KeyStatus.AVAILABLE)
            .order_by("id")
            .values_list("id", flat=True)[: len(remaining)]
        )
        for key_id, unit in zip(pool, remaining, strict=False):
            if LicenseKey.objects.filter(pk=key_id, status=KeyStatus.AVAILABLE).update(
                status=KeyStatus.SOLD, order_line=line, unit_index=unit, sold_at=now
            ):
                claimed.append(key_id)
    _audit(claimed, type="sold", actor="fulfillment", order=line.order)
    # Reserved keys had left 'available' already; those taken from the pool leave it now.
    keys_stock_adjust(product_id=line.product_id, delta=-len(claimed))
    return from_reserved + len(claimed)


def _sell_held_with_orm(*, line: OrderLine, units: list[int], now) -> list[int]:
    reserved = list(
        LicenseKey.objects.select_for_update()
        .filter(product_id=line.product_id, status=KeyStatus.RESERVED, reserved_for_id=line.order_id)
        .order_by("id")
        .values_list("id", flat=True)[: len(units)]
    )
    sold = [
        key_id
        for key_id, unit in zip(reserved, units, strict=False)
        if LicenseKey.objects.filter(pk=key_id, status=KeyStatus.RESERVED).update(
            status=KeyStatus.SOLD, order_line=line, unit_index=unit, sold_at=now, reserved_for=None, reserved_until=None
        )
    ]
    _audit(sold, type="sold", actor="fulfillment", order=line.order)
    return sold


def keys_revoke_for_order(*, order: Order, actor: str, lines: list[OrderLine] | None = None) -> int:
    """Revoke the sold keys of an order's lines (refund, dispute): they will never be shown again."""
    query = LicenseKey.objects.filter(order_line__order=order, status=KeyStatus.SOLD)
    if lines is not None:
        query = query.filter(order_line__in=lines)
    ids = list(query.values_list("pk", flat=True))
    LicenseKey.objects.filter(pk__in=ids).update(status=KeyStatus.REVOKED)
    _audit(ids, type="revoked", actor=actor, order=order)
    return len(ids)


_MERCHANT_MOVES = {
    "lock": ({KeyStatus.AVAILABLE}, KeyStatus.LOCKED),
    "unlock": ({KeyStatus.LOCKED}, KeyStatus.AVAILABLE),
    "retire": ({KeyStatus.AVAILABLE, KeyStatus.LOCKED}, KeyStatus.RETIRED),
}


def keys_set_state(*, key_ids: list[int], action: str, actor: str) -> int:
    """A merchant locks, unlocks or retires unsold keys. Sold or reserved keys are left alone."""
    allowed_from, to_status = _MERCHANT_MOVES[action]
    with transaction.atomic():
        moving = list(
            LicenseKey.objects.select_for_update()
            .filter(pk__in=key_ids, status__in=allowed_from)
            .values_list("pk", "product_id", "status")
        )
        ids = [pk for pk, _, _ in moving]
        LicenseKey.objects.filter(pk__in=ids).update(status=to_status)
        _audit(ids, type=action + ("ed" if action != "retire" else "d"), actor=actor)
        # The rows are locked in the status read: each one entering or leaving 'available' moves the counter.
        deltas: Counter[int] = Counter()
        for _, product_id, from_status in moving:
            deltas[product_id] += (to_status == KeyStatus.AVAILABLE) - (from_status == KeyStatus.AVAILABLE)
        for product_id, delta in deltas.items():
            keys_stock_adjust(product_id=product_id, delta=delta)
    return len(ids)


class SharedKeyRejected(Exception):
    """A shared key that cannot be set, with a message for the merchant. Nothing was changed."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


EXPORT_CHUNK = 2000


@dataclass(frozen=True)
class KeyExport:
    """Unsold keys already recorded as exported; `rows` decrypts them lazily, (key, note) in pool order."""

    count: int
    rows: Iterator[tuple[str, str]]


def keys_export_unsold(*, product: Product, actor: str) -> KeyExport:
    """Export a product's available keys in clear, recording an 'exported' event for each, by whom.

    The audit rows are written before any key is decrypted; the log line has the count, never a key.
    """
    ids = list(
        LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    with transaction.atomic():
        KeyEvent.objects.bulk_create(
            (KeyEvent(key_id=pk, type=KeyEventType.EXPORTED, actor=actor) for pk in ids), batch_size=EXPORT_CHUNK
        )
    logger.info("%s exported %d unsold keys of product %s", actor, len(ids), product.pk)
    return KeyExport(count=len(ids), rows=_decrypted(ids))


def _decrypted(ids: list[int]) -> Iterator[tuple[str, str]]:
    for start in range(0, len(ids), EXPORT_CHUNK):
        chunk = ids[start : start + EXPORT_CHUNK]
        for key in LicenseKey.objects.filter(pk__in=chunk).order_by("pk").only("ciphertext", "note"):
            yield key.reveal(), key.note


def keys_set_shared(*, product: Product, secret: str, actor: str) -> None:
    """Make a license-key product sell one shared code to every buyer, or replace that code.

    The code is stored encrypted and never shown back here. A product that still has unsold keys in
    its pool is refused (retire them first), so no key is stranded. Orders that were waiting for stock
    are the caller's to deliver (storefront.flow.stock.shared_key_set).
    """
    value = secret.strip()
    if product.kind != FulfilmentKind.LICENSE_KEY:
        raise SharedKeyRejected("Only a license-key product can have a shared key.")
    if not value:
        raise SharedKeyRejected("The shared key is empty.")
    if len(value) > MAX_KEY_LENGTH:
        raise SharedKeyRejected(f"The shared key is longer than {MAX_KEY_LENGTH} characters.")
    with transaction.atomic():
        locked = Product.objects.select_for_update().get(pk=product.pk)
        unsold = locked.license_keys.filter(status__in=[KeyStatus.AVAILABLE, KeyStatus.RESERVED]).count()
        if unsold:
            raise SharedKeyRejected(
                f"This product still has {unsold} unsold key(s) in its pool. Retire them before switching it "
                "to a shared key."
            )
        ciphertext = encrypt_secret(value)
        Product.objects.filter(pk=product.pk).update(shared_key_ciphertext=ciphertext)
        product.shared_key_ciphertext = ciphertext
    logger.info("%s set the shared key of product %s", actor, product.pk)
