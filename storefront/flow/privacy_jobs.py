"""Personal data kept no longer than disputes and the law need (GDPR, PIPL): the purge beat runs, and erasing one order.

- IP addresses, user agents and device ids (the order's, its key reveals' and downloads', the device fingerprint in
  its first event) are purged PRIVACY_NETWORK_DATA_DAYS after the order was placed, except on an order whose
  dispute is still open: that evidence stays until the dispute closes.
- An erasure the shopper asked for (storefront.privacy) erases at once the orders no dispute can reach any more, and
  the rest here, once PRIVACY_DISPUTE_WINDOW_DAYS have passed since their payment (and their disputes closed).
- Sign-in links past their expiry are deleted.

What an erased order keeps is what accounting needs: its number, dates, lines, amounts, payments, refunds and the
shipping country; the address becomes a placeholder of its own, so velocity and fraud links never join two erased
orders. Everything here is idempotent: a run that dies part-way is finished by the next one.
"""

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from fulfillment.models import DeliveryAccess, LicenseActivation
from orders.models import Order, OrderEvent, Subscription
from payments.models import Dispute, DisputeStatus
from storefront.models import PrivacyErasure, ShopperSignInLink

logger = logging.getLogger(__name__)

OPEN_DISPUTES = (DisputeStatus.NEEDS_RESPONSE, DisputeStatus.SUBMITTED, DisputeStatus.UNDER_REVIEW)
ERASED_DOMAIN = "erased.invalid"  # .invalid never resolves: nothing is ever mailed to an erased order
# Keys of an order event's data that identify a person or their device or card (orders.services, flow.payment).
PERSONAL_EVENT_KEYS = ("device_fingerprint", "card", "email", "ip", "user_agent")
BATCH = 500


def email_digest(email: str) -> str:
    """The address as the erasure record keeps it once done: a keyed hash, to answer "was X erased?" only."""
    return hashlib.sha256(f"{settings.SECRET_KEY}:privacy:{email.strip().lower()}".encode()).hexdigest()


def erased_email(order: Order) -> str:
    return f"order-{order.pk}@{ERASED_DOMAIN}"


def disputed_order_ids(order_ids) -> set[int]:
    """Those of `order_ids` with a dispute still open: their evidence is kept whatever its age."""
    return set(
        Dispute.objects.filter(order_id__in=order_ids, status__in=OPEN_DISPUTES).values_list("order_id", flat=True)
    )


def dispute_window_end(order: Order) -> datetime | None:
    """Until when a dispute may still be opened on this order (None: never paid, nothing to dispute)."""
    if order.paid_at is None:
        return None
    return order.paid_at + timedelta(days=settings.PRIVACY_DISPUTE_WINDOW_DAYS)


def order_erasable(order: Order, *, now: datetime, disputed: set[int]) -> bool:
    """Whether the order's personal data may go now: its dispute window closed and no dispute open on it."""
    window_end = dispute_window_end(order)
    return order.pk not in disputed and (window_end is None or window_end <= now)


def order_personal_data_erase(*, order: Order) -> None:
    """Erase the shopper's personal data from one order, keeping what accounting needs (idempotent).

    The email becomes a placeholder of this order's own; the name and street address, IP, user agent, device id
    and card fingerprint are blanked (the shipping country stays, for tax); the reveal and download log keeps when
    and what, not from where; license activations lose the machine names; order events lose the device and card
    identifiers; the dispute's evidence copy loses the address, name, IP and access log.
    """
    with transaction.atomic():
        Order.objects.filter(pk=order.pk).update(
            email=erased_email(order),
            ship_name="",
            ship_line1="",
            ship_line2="",
            ship_city="",
            ship_postal_code="",
            purchase_ip=None,
            user_agent="",
            device_id="",
            card_fingerprint="",
        )
        DeliveryAccess.objects.filter(order_id=order.pk).update(ip=None, user_agent="")
        # the machines the shopper named when activating the order's keys (the activations themselves stay)
        LicenseActivation.objects.filter(license__key__order_line__order_id=order.pk).update(name="erased")
        _events_forget(OrderEvent.objects.filter(order_id=order.pk), PERSONAL_EVENT_KEYS)
        for dispute in Dispute.objects.filter(order_id=order.pk).exclude(evidence={}):
            evidence = {k: v for k, v in dispute.evidence.items() if k not in _PERSONAL_EVIDENCE}
            Dispute.objects.filter(pk=dispute.pk).update(evidence=evidence)


_PERSONAL_EVIDENCE = ("customer_email", "customer_name", "purchase_ip", "access_log")


def _events_forget(events, keys) -> int:
    query = Q()
    for key in keys:
        query |= Q(data__has_key=key)
    changed = 0
    for event in events.filter(query).only("pk", "data"):
        OrderEvent.objects.filter(pk=event.pk).update(data={k: v for k, v in event.data.items() if k not in keys})
        changed += 1
    return changed


def subscriptions_email_erase(*, email: str) -> int:
    """Subscriptions of the address (cancelled by then) keep their amounts and periods, not the address."""
    changed = 0
    for subscription in Subscription.objects.filter(email=email).only("pk"):
        changed += Subscription.objects.filter(pk=subscription.pk).update(
            email=f"subscription-{subscription.pk}@{ERASED_DOMAIN}"
        )
    return changed


@dataclass(frozen=True)
class PurgeReport:
    orders: int
    accesses: int
    events: int
    erasures_finished: int
    links_deleted: int


def network_data_purge(*, now: datetime) -> tuple[int, int, int]:
    """Blank IPs, user agents and device ids older than PRIVACY_NETWORK_DATA_DAYS, except under an open dispute.

    Returns how many orders, accesses and order events were changed. Batched: no long lock on busy tables."""
    cutoff = now - timedelta(days=settings.PRIVACY_NETWORK_DATA_DAYS)
    open_disputes = Dispute.objects.filter(status__in=OPEN_DISPUTES, order__created_at__lt=cutoff)
    disputed = set(open_disputes.values_list("order_id", flat=True))
    orders = Order.objects.filter(created_at__lt=cutoff).exclude(pk__in=disputed)
    orders = orders.filter(~Q(purchase_ip=None) | ~Q(user_agent="") | ~Q(device_id=""))
    changed_orders = _in_batches(
        orders, lambda ids: Order.objects.filter(pk__in=ids).update(purchase_ip=None, user_agent="", device_id="")
    )
    accesses = DeliveryAccess.objects.filter(created_at__lt=cutoff).exclude(order_id__in=disputed)
    accesses = accesses.filter(~Q(ip=None) | ~Q(user_agent=""))
    changed_accesses = _in_batches(
        accesses, lambda ids: DeliveryAccess.objects.filter(pk__in=ids).update(ip=None, user_agent="")
    )
    events = OrderEvent.objects.filter(created_at__lt=cutoff, data__has_key="device_fingerprint").exclude(
        order_id__in=disputed
    )
    changed_events = _events_forget(events, ("device_fingerprint",))
    return changed_orders, changed_accesses, changed_events


def _in_batches(queryset, update) -> int:
    changed = 0
    while ids := list(queryset.values_list("pk", flat=True)[:BATCH]):
        done = update(ids)
        changed += done
        if not done:  # nothing changed (rows gone meanwhile): the same batch would come back for ever
            break
    return changed


def erasure_orders(erasure: PrivacyErasure):
    """The orders an erasure covers: those placed with the address before it was asked for, none placed since."""
    return Order.objects.filter(email=erasure.email, created_at__lte=erasure.requested_at)


def erasure_continue(*, erasure: PrivacyErasure, now: datetime) -> bool:
    """Erase what the erasure may erase now; True once it is complete (then the address itself is blanked)."""
    if erasure.completed_at is not None:
        return True
    orders = list(erasure_orders(erasure))
    disputed = disputed_order_ids([order.pk for order in orders])
    waiting = []
    for order in orders:
        if order_erasable(order, now=now, disputed=disputed):
            order_personal_data_erase(order=order)
        else:
            waiting.append(order)
    if waiting:
        # a window is looked at again when it closes; an open dispute, every day until it closes
        next_looks = [dispute_window_end(order) for order in waiting if order.pk not in disputed]
        if any(order.pk in disputed for order in waiting):
            next_looks.append(now + timedelta(days=1))
        erasure.erase_after = min(when for when in next_looks if when is not None)
        PrivacyErasure.objects.filter(pk=erasure.pk).update(erase_after=erasure.erase_after)
        return False
    if erasure.email:
        subscriptions_email_erase(email=erasure.email)
    erasure.email, erasure.completed_at = "", now
    PrivacyErasure.objects.filter(pk=erasure.pk).update(email="", completed_at=now)
    return True


def erasures_finish(*, now: datetime) -> int:
    """Carry on every erasure whose waiting time is over; returns how many were completed."""
    finished = 0
    for erasure in PrivacyErasure.objects.filter(completed_at=None, erase_after__lte=now):
        finished += erasure_continue(erasure=erasure, now=now)
    return finished


def sign_in_links_delete_expired(*, now: datetime) -> int:
    return ShopperSignInLink.objects.filter(expires_at__lt=now).delete()[0]


def personal_data_purge(*, now: datetime | None = None) -> PurgeReport:
    """Everything the purge beat does, in one call (see the module's docstring)."""
    now = now or timezone.now()
    orders, accesses, events = network_data_purge(now=now)
    finished = erasures_finish(now=now)
    links = sign_in_links_delete_expired(now=now)
    report = PurgeReport(orders, accesses, events, finished, links)
    logger.info(
        "privacy purge: %s orders, %s accesses, %s events purged; %s erasures completed; %s sign-in links deleted",
        *(report.orders, report.accesses, report.events, report.erasures_finished, report.links_deleted),
    )
    return report


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=3)
def purge_personal_data() -> dict:
    """Every 6 hours (CELERY_BEAT_SCHEDULE "purge-personal-data"): storefront.flow.privacy_jobs.personal_data_purge."""
    report = personal_data_purge()
    return {
        "orders": report.orders,
        "accesses": report.accesses,
        "events": report.events,
        "erasures_finished": report.erasures_finished,
        "links_deleted": report.links_deleted,
    }
