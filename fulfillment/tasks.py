import logging

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.db.models import Exists, OuterRef
from django.utils import timezone

from fulfillment.imports import key_imports_resume_stalled, run_key_import  # noqa: F401  (registers the task)
from fulfillment.keys import keys_release_expired
from fulfillment.models import KeyStatus, LicenseKey
from fulfillment.services import backorders_fill, memberships_end, order_deliver
from fulfillment.stock import keys_stock_recount
from orders.models import Order, OrderStatus

logger = logging.getLogger(__name__)


@shared_task(
    autoretry_for=(OperationalError,), retry_backoff=True, retry_backoff_max=60, max_retries=10, acks_late=True
)
def deliver_order(order_id: int) -> str:
    return order_deliver(order_id=order_id).status


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=10, acks_late=True)
def fill_backorders(product_id: int) -> int:
    return backorders_fill(product_id=product_id)


@shared_task
def sweep_undelivered_orders() -> int:
    """Re-enqueue delivery for paid orders nobody finished (lost task, killed worker), and for
    orders awaiting stock whose product has keys again. Safe to run any number of times."""
    cutoff = timezone.now() - settings.FULFILMENT_SWEEP_AFTER
    stale_paid = Order.objects.filter(status=OrderStatus.PAID, paid_at__lt=cutoff)
    restocked = Order.objects.filter(status=OrderStatus.AWAITING_STOCK).filter(
        Exists(
            LicenseKey.objects.filter(
                product__order_lines__order=OuterRef("pk"),
                status=KeyStatus.AVAILABLE,
            )
        )
    )
    ids = sorted(set(stale_paid.values_list("pk", flat=True)) | set(restocked.values_list("pk", flat=True)))
    for order_id in ids:
        deliver_order.delay(order_id)
    if ids:
        logger.info("sweeper re-enqueued delivery for %d orders", len(ids))
    return len(ids)


@shared_task
def resume_stalled_key_imports() -> int:
    """Beat job: start again the key imports whose run died without a word (worker killed, task lost)."""
    return len(key_imports_resume_stalled())


@shared_task
def release_expired_reservations() -> int:
    return keys_release_expired()


@shared_task
def end_expired_memberships() -> int:
    return memberships_end()


@shared_task
def recount_key_stock() -> int:
    """Beat job: the products' kept stock counts checked against their keys (a crash between a commit and its
    count leaves one off); returns how many were fixed."""
    return keys_stock_recount()
