"""The stock of license-key products as a kept count: `Product.keys_available`, its keys with status available.

Pages, checkout and the low-stock alert read the counter; nothing counts the pool on a read. Every move of a
key into or out of 'available' (fulfillment.keys, fulfillment.imports) calls keys_stock_adjust inside the
transaction that moves it, and the counter is updated once that transaction commits, by one UPDATE in
autocommit: the product row is locked for that statement only, so buyers of one product never queue behind
each other's transactions, and a move that rolls back is never counted. The low-stock alert is decided
right after that UPDATE, from the counter it left.

A process that dies between its commit and that UPDATE leaves the counter off by its move:
keys_stock_recount, run now and then, compares the counters with the keys and fixes those that drifted.
"""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import Count, F, FilteredRelation, Q

from catalog.models import FulfilmentKind, Product
from catalog.selectors import merchant_emails
from fulfillment.models import KeyStatus
from fulfillment.signals import stock_low

logger = logging.getLogger(__name__)


def keys_stock_adjust(*, product_id: int, delta: int) -> None:
    """Count `delta` keys of the product into (+) or out of (-) 'available', once the caller's transaction commits.

    Call it in the transaction that moves the keys (outside one it applies at once). After the counter's
    UPDATE the low-stock alert is re-evaluated. robust: a failure there is logged and leaves the committed
    move alone; the counter is then off by `delta` until keys_stock_recount fixes it.
    """
    if delta:
        transaction.on_commit(lambda: _stock_apply(product_id=product_id, delta=delta), robust=True)


# One autocommit statement per move (PostgreSQL): the counter moves and returns what the low-stock decision needs.
_APPLY_SQL = f"""
UPDATE {Product._meta.db_table} SET keys_available = keys_available + %(delta)s WHERE id = %(product)s
RETURNING keys_available, low_stock_threshold, low_stock_alerted,
          kind = %(key_kind)s AND shared_key_ciphertext IS NOT NULL
"""


def _stock_apply(*, product_id: int, delta: int) -> None:
    if connection.vendor != "postgresql":  # the SQLite demo: two statements (its RETURNING misreads IS NULL)
        Product.objects.filter(pk=product_id).update(keys_available=F("keys_available") + delta)
        _low_stock_check(product_id=product_id)
        return
    with connection.cursor() as cursor:
        cursor.execute(
            _APPLY_SQL, {"delta": delta, "product": product_id, "key_kind": FulfilmentKind.LICENSE_KEY.value}
        )
        row = cursor.fetchone()
    if row is not None:
        available, threshold, alerted, reusable = row
        _low_stock_decide(
            product_id=product_id, available=available, threshold=threshold, alerted=alerted, reusable=reusable
        )


def keys_after_stock_change(*, product_id: int) -> None:
    """Alert merchants once when stock falls to the low-stock threshold; re-arm when it rises above.

    Decided from the counter once the caller's transaction has committed, so after its own moves were counted.
    Every keys_stock_adjust already ends with this check: call it only to check again.
    """
    transaction.on_commit(lambda: _low_stock_check(product_id=product_id), robust=True)


def _low_stock_check(*, product_id: int) -> None:
    product = (
        Product.objects.filter(pk=product_id)
        .only("kind", "shared_key_ciphertext", "keys_available", "low_stock_threshold", "low_stock_alerted")
        .first()
    )
    if product is not None:
        _low_stock_decide(
            product_id=product_id,
            available=product.keys_available,
            threshold=product.low_stock_threshold,
            alerted=product.low_stock_alerted,
            reusable=product.keys_unlimited,
        )


def _low_stock_decide(*, product_id: int, available: int, threshold: int, alerted: bool, reusable: bool) -> None:
    if reusable:  # one shared code sold to every buyer: no pool to run low
        return
    low = available <= threshold
    if low == bool(alerted):
        return
    # Only the UPDATE that flips the flag alerts: concurrent moves cannot send twice.
    flipped = Product.objects.filter(pk=product_id, low_stock_alerted=not low).update(low_stock_alerted=low)
    if low and flipped:
        transaction.on_commit(lambda: stock_alert_send(product_id=product_id))
        stock_low.send(sender=Product, product_id=product_id, available=available, threshold=threshold)


def keys_stock(product: Product) -> int:
    """Keys a shopper can buy now (available: not reserved, locked or sold), as the counter has them."""
    return Product.objects.values_list("keys_available", flat=True).get(pk=product.pk)


def stock_alert_send(*, product_id: int) -> None:
    """Email the merchants (staff who may change products) that a product is low on keys."""
    product = Product.objects.get(pk=product_id)
    recipients = merchant_emails()
    if not recipients:
        logger.warning("product %s is low on stock and no merchant has an email address", product_id)
        return
    stock = product.keys_available
    send_mail(
        f"Low stock: {product.name} ({stock} keys left)",
        f"{product.name} has {stock} keys left (threshold {product.low_stock_threshold}).\n"
        f"Import more in admin: {settings.SITE_URL}/admin/catalog/product/{product.pk}/change/\n",
        settings.DEFAULT_FROM_EMAIL,
        recipients,
    )


def keys_stock_recount(*, product_ids: list[int] | None = None) -> int:
    """Check the stock counters (all, or those of `product_ids`) against the keys; fix the ones that drifted.

    One grouped query reads each counter and its true count in the same snapshot (the join takes available
    keys only, through their partial index) and returns only the products where they differ. Each is set
    to its true count only if its counter still holds what that query read, so a move counted meanwhile is
    never overwritten: that product is looked at again on the next run. Each fix is logged at warning and
    re-evaluates the low-stock alert. Idempotent; returns how many counters were fixed.
    """
    products = Product.objects.all() if product_ids is None else Product.objects.filter(pk__in=product_ids)
    drifted = (
        products.annotate(
            pool=FilteredRelation("license_keys", condition=Q(license_keys__status=KeyStatus.AVAILABLE)),
            true_count=Count("pool"),
        )
        .exclude(keys_available=F("true_count"))
        .order_by("pk")
        .values_list("pk", "keys_available", "true_count")
    )
    fixed = 0
    for product_id, counted, true_count in drifted:
        if not Product.objects.filter(pk=product_id, keys_available=counted).update(keys_available=true_count):
            continue
        logger.warning(
            "product %s: the stock counter said %d keys available, the pool has %d; counter fixed",
            product_id,
            counted,
            true_count,
        )
        fixed += 1
        _low_stock_check(product_id=product_id)
    return fixed
