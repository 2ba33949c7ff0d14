"""Delivery: keys, download links, service bookings, memberships, and the evidence log."""

import logging
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core import signing
from django.core.files import File
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from catalog.models import FulfilmentKind
from fulfillment.crypto import decrypt_secret
from fulfillment.generation import keys_generate_for_line
from fulfillment.keys import keys_claim_for_line
from fulfillment.licenses import (
    licenses_create_for_line,
    licenses_expire_for_subscription,
    licenses_extend_for_subscription,
    policy_for_product,
)
from fulfillment.models import DeliveryAccess, KeySource, KeyStatus, LicenseKey, Membership
from fulfillment.signals import order_delivered
from orders.coupons import coupon_issue_for_waiting
from orders.models import Order, OrderEventType, OrderLine, OrderStatus
from orders.selectors import order_lines
from orders.status import determine_fulfilment_status, order_event_record, order_lock, order_transition
from orders.subscriptions import subscription_access_until
from orders.tasks import send_order_email

logger = logging.getLogger(__name__)

DELIVERABLE_STATUSES = (OrderStatus.PAID, OrderStatus.AWAITING_STOCK)
_DOWNLOAD_SALT = "fulfillment.download"
# What opening a stored file raises when it is missing or the storage cannot be reached (a folder, or S3).
STORAGE_ERRORS: tuple[type[Exception], ...] = (OSError,)
try:
    from botocore.exceptions import BotoCoreError, ClientError

    STORAGE_ERRORS += (BotoCoreError, ClientError)
except ImportError:  # no S3 support installed
    pass


def _deliver_line(line: OrderLine, now, *, first_time: bool) -> None:
    if line.kind == FulfilmentKind.LICENSE_KEY and not line.product.is_reusable_key:
        if not _deliver_keys(line, now, first_time=first_time):
            return
    elif line.kind == FulfilmentKind.SERVICE:
        line.booking_reference = line.booking_reference or "BK-" + secrets.token_hex(4).upper()
    elif line.kind == FulfilmentKind.MEMBERSHIP:
        membership_grant(line=line, now=now)
    line.delivered_at = now
    line.save(update_fields=["delivered_at", "booking_reference"])


def _deliver_keys(line: OrderLine, now, *, first_time: bool) -> bool:
    """The line's keys: generated or claimed from the pool (False: the pool ran out, the line waits), tracked as
    licenses when the policy says so. A later order of a key sold by period (a renewal, or the first charge
    after a free trial) gets no key: the keys its subscription's first order delivered work one period more."""
    policy = policy_for_product(line.product)  # generated keys, license tracking (fulfillment.licenses)
    subscription = line.order.subscription if line.order.subscription_id else None
    until = subscription_access_until(subscription) if subscription is not None else None
    if subscription is not None and licenses_extend_for_subscription(
        subscription_id=subscription.pk, until=until, other_than_line=line.pk
    ):
        return True
    filled = set() if first_time else set(line.license_keys.values_list("unit_index", flat=True))
    missing = [i for i in range(line.quantity) if i not in filled]
    if policy is not None and policy.key_source == KeySource.GENERATED:
        keys_generate_for_line(line=line, units=missing, pattern=policy.pattern, now=now)
    elif keys_claim_for_line(line=line, units=missing) < len(missing):
        return False
    if policy is not None and policy.tracked:
        licenses_create_for_line(line=line, policy=policy, now=now, expires_at=until)
    return True


@transaction.atomic
def order_deliver(*, order_id: int, actor: str = "fulfillment") -> Order:
    """Deliver whatever the order is still owed, and move it to where it now stands.

    Safe to run any number of times, concurrently too: the order row is locked first, an
    order that is not paid-and-approved is left alone, and delivered lines are skipped.
    """
    return order_deliver_locked(order=order_lock(order_id=order_id), actor=actor)


def order_deliver_locked(*, order: Order, actor: str = "fulfillment", events: list | None = None) -> Order:
    """order_deliver for an order whose row lock the caller already holds (the payment that just paid it);
    `events` collects the status event for the caller to write in bulk (orders.status.order_transition)."""
    if order.status not in DELIVERABLE_STATUSES:
        return order
    lines = order_lines(order)
    now = timezone.now()
    first_time = order.status == OrderStatus.PAID  # nothing of it delivered yet: no key claimed for its lines
    waited = order.status == OrderStatus.AWAITING_STOCK
    for line in lines:
        if not line.delivered_at and not line.requires_shipping and not line.refunded_at:
            _deliver_line(line, now, first_time=first_time)
    target = determine_fulfilment_status(lines)
    if target == order.status:
        return order
    order = order_transition(order=order, to_status=target, actor=actor, locked=True, events=events)
    if target in (OrderStatus.FULFILLED, OrderStatus.AWAITING_SHIPMENT):
        order_delivered.send(sender=Order, order=order, delivered_at=now)
    email = "order_awaiting_stock" if target == OrderStatus.AWAITING_STOCK else "order_delivered"
    # robust: a broker outage must not fail the request that delivered; the page works without email
    transaction.on_commit(lambda: send_order_email.delay(order.pk, email), robust=True)
    if waited and target != OrderStatus.AWAITING_STOCK and coupon_issue_for_waiting(order=order, now=now):
        # the merchant's thanks for waiting (orders.coupons), once per order, after the delivery email
        transaction.on_commit(lambda: send_order_email.delay(order.pk, "coupon_for_waiting"), robust=True)
    return order


def backorders_fill(*, product_id: int) -> int:
    """Deliver orders waiting for this product's stock, oldest payment first. Returns how many completed."""
    waiting = (
        Order.objects.filter(status=OrderStatus.AWAITING_STOCK, lines__product_id=product_id)
        .order_by("paid_at", "pk")
        .values_list("pk", flat=True)
        .distinct()
    )
    filled = 0
    for order_id in list(waiting):
        order = order_deliver(order_id=order_id, actor="backorder")
        if order.status != OrderStatus.AWAITING_STOCK:
            filled += 1
        elif not LicenseKey.objects.filter(product_id=product_id, status=KeyStatus.AVAILABLE).exists():
            break  # this product ran out again: later orders keep their place in the queue
    return filled


def membership_grant(*, line: OrderLine, now) -> Membership:
    """Add the buyer (an account keyed by their email, created if needed) to the product's group."""
    user_model = get_user_model()
    email = line.order.email
    user = user_model.objects.filter(email__iexact=email).order_by("pk").first()
    if user is None:
        user = user_model.objects.create_user(username=email[:150], email=email)  # unusable password
    group = line.product.membership_group
    if group is None:
        raise ValueError(f"membership product {line.product_id} has no group")
    if line.order.subscription_id:  # the paid period, and the grace a failed renewal's retries need
        ends_at = subscription_access_until(line.order.subscription)
    else:
        ends_at = now + timedelta(days=line.product.membership_days * line.quantity)
    membership, _ = Membership.objects.get_or_create(
        line=line, defaults={"user": user, "group": group, "starts_at": now, "ends_at": ends_at}
    )
    user.groups.add(group)
    return membership


def subscription_access_extend(*, subscription_id: int, until) -> int:
    """Move the end of a subscription's open memberships and its license keys' expiry to `until` (a free
    period, a card recovered)."""
    licenses_extend_for_subscription(subscription_id=subscription_id, until=until)
    return Membership.objects.filter(line__order__subscription_id=subscription_id, ended=False).update(ends_at=until)


def subscription_access_end(*, subscription_id: int, now=None) -> int:
    """End a cancelled subscription's memberships and license keys now (download links run out by themselves)."""
    licenses_expire_for_subscription(subscription_id=subscription_id, now=now or timezone.now())
    open_ones = list(
        Membership.objects.filter(line__order__subscription_id=subscription_id, ended=False).select_related(
            "user", "group"
        )
    )
    return memberships_end(memberships=open_ones, now=now)


def memberships_end(*, memberships: list[Membership] | None = None, now=None) -> int:
    """Remove buyers from groups whose membership ran out (or was refunded). Idempotent."""
    now = now or timezone.now()
    due = memberships if memberships is not None else list(Membership.objects.filter(ended=False, ends_at__lte=now))
    for membership in due:
        with transaction.atomic():
            Membership.objects.filter(pk=membership.pk).update(ended=True, ends_at=min(membership.ends_at, now))
            still_member = Membership.objects.filter(
                user=membership.user, group=membership.group, ended=False, ends_at__gt=now
            ).exists()
            if not still_member:
                membership.user.groups.remove(membership.group)
    return len(due)


def delivery_record_access(
    *, line: OrderLine, kind: str, ip: str | None, user_agent: str, channel: str = "web"
) -> None:
    DeliveryAccess.objects.create(
        order_id=line.order_id, line=line, kind=kind, ip=ip, user_agent=user_agent[:300], channel=channel
    )


def order_reveal_keys(
    *, order: Order, line: OrderLine, ip: str | None, user_agent: str, channel: str = "web"
) -> list[str]:
    """The line's keys in clear, logged as a reveal (time, IP, user agent). Empty once revoked."""
    if line.order_id != order.pk or order.status in (OrderStatus.REFUNDED, OrderStatus.CANCELLED):
        return []
    if line.refunded_at:
        return []
    if line.product.is_reusable_key and line.delivered_at:
        keys = [decrypt_secret(line.product.shared_key_ciphertext)]
    else:
        keys = [k.reveal() for k in line.license_keys.filter(status=KeyStatus.SOLD).order_by("unit_index")]
    if keys:
        delivery_record_access(line=line, kind="reveal", ip=ip, user_agent=user_agent, channel=channel)
    return keys


def download_token_for_line(line: OrderLine) -> str:
    return signing.TimestampSigner(salt=_DOWNLOAD_SALT).sign(str(line.pk))


class DownloadUnavailable(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def download_resolve(*, token: str) -> OrderLine:
    """The line a signed download link points to, or DownloadUnavailable (404 bad link, 410 gone)."""
    signer = signing.TimestampSigner(salt=_DOWNLOAD_SALT)
    try:
        line_id = signer.unsign(token)
    except signing.BadSignature:
        raise DownloadUnavailable(404, "invalid") from None
    line = OrderLine.objects.select_related("order", "product").filter(pk=int(line_id)).first()
    if line is None or line.kind != FulfilmentKind.DOWNLOAD or not line.delivered_at:
        raise DownloadUnavailable(404, "invalid")
    try:
        signer.unsign(token, max_age=timedelta(hours=line.product.download_ttl_hours))
    except signing.SignatureExpired:
        raise DownloadUnavailable(410, "expired") from None
    if line.order.status in (OrderStatus.REFUNDED, OrderStatus.CANCELLED) or line.refunded_at:
        raise DownloadUnavailable(410, "refunded")
    if not line.product.download_file:
        raise DownloadUnavailable(404, "missing")
    return line


def download_start(*, token: str, ip: str | None, user_agent: str) -> tuple[OrderLine, File]:
    """Open the line's file, then count one download against the product's maximum and log it.

    Returns the line and its open file (the response streams and closes it). Raises DownloadUnavailable;
    a file that cannot be opened (missing from storage, storage unreachable) is 503 "file_unavailable", logged
    for staff with the order, and uses up none of the shopper's downloads.
    """
    line = download_resolve(token=token)
    try:
        handle = line.product.download_file.open("rb")
    except STORAGE_ERRORS as exc:
        logger.error(
            "order %s: the file of download product %s cannot be opened (%s); nothing was counted",
            line.order.number,
            line.product_id,
            type(exc).__name__,
        )
        raise DownloadUnavailable(503, "file_unavailable") from None
    counted = OrderLine.objects.filter(pk=line.pk, download_count__lt=line.product.download_max).update(
        download_count=F("download_count") + 1
    )
    if not counted:
        handle.close()
        raise DownloadUnavailable(410, "limit")
    delivery_record_access(line=line, kind="download", ip=ip, user_agent=user_agent)
    return line, handle


def order_resend_delivery_email(*, order: Order, actor: str) -> None:
    """Staff resend the delivery email (the order page always works, email or not)."""
    if order.status == OrderStatus.REFUNDED:
        template = "order_refunded"
    elif order.status == OrderStatus.AWAITING_STOCK:
        template = "order_awaiting_stock"
    else:
        template = "order_delivered"
    order_event_record(
        order=order, type=OrderEventType.EMAIL_RESEND_REQUESTED, actor=actor, data={"template": template}
    )
    transaction.on_commit(lambda: send_order_email.delay(order.pk, template))


def backorders_overdue(*, now=None) -> list[Order]:
    """Orders awaiting stock longer than the shortest backorder deadline among their products."""
    now = now or timezone.now()
    overdue = []
    for order in Order.objects.filter(status=OrderStatus.AWAITING_STOCK).prefetch_related("lines__product"):
        hours = min(line.product.backorder_refund_after_hours for line in order.lines.all())
        if order.paid_at and order.paid_at + timedelta(hours=hours) <= now:
            overdue.append(order)
    return overdue
