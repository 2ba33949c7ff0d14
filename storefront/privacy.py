"""A shopper's data, on their request (GDPR articles 15, 17 and 20; PIPL articles 45 and 47): all of it as JSON, or
erased.

Erasing keeps what accounting and disputes need. Orders stay (number, dates, lines, amounts, payments, refunds,
shipping country) under an address of their own that leads nowhere; the name, street address, IP, user agent,
device and card identifiers and the reveal and download log's IPs go. An order still inside the dispute window
(PRIVACY_DISPUTE_WINDOW_DAYS after payment), or whose dispute is open, keeps its evidence until that closes; the
purge beat (storefront.flow.privacy_jobs) erases it then. Subscriptions are cancelled at once, the account is
closed and its memberships end. Fraud lists that staff keep (riskengine) stay: preventing fraud is their purpose.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from fulfillment.models import DeliveryAccess, LicenseActivation, Membership
from fulfillment.services import memberships_end
from orders.models import Order, Subscription, SubscriptionStatus
from payments.models import Payment, Refund
from storefront.accounts import email_normalise
from storefront.flow.privacy_jobs import email_digest, erasure_continue
from storefront.flow.renewals import subscription_cancel_now
from storefront.models import PrivacyErasure, ShopperSignInLink


def _when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _order_export(order: Order, payments: list, refunds: list, accesses: list) -> dict:
    return {
        "number": order.number,
        "url": settings.SITE_URL + reverse("order-detail", kwargs={"token": order.token}),
        "placed_at": _when(order.created_at),
        "paid_at": _when(order.paid_at),
        "completed_at": _when(order.completed_at),
        "status": order.status,
        "payment_state": order.payment_state,
        "email": order.email,
        "language": order.locale,
        "currency": order.currency,
        "subtotal_minor_units": order.subtotal_amount,
        "shipping_minor_units": order.shipping_amount,
        "total_minor_units": order.total_amount,
        "shipping_address": {
            "name": order.ship_name,
            "line1": order.ship_line1,
            "line2": order.ship_line2,
            "city": order.ship_city,
            "postal_code": order.ship_postal_code,
            "country": order.ship_country,
        },
        "ip_address": order.purchase_ip,
        "user_agent": order.user_agent,
        "device_id": order.device_id,
        "card_country": order.card_country,
        "billing_country": order.billing_country,
        "lines": [
            {
                "product": line.product_name,
                "kind": line.kind,
                "quantity": line.quantity,
                "unit_price_minor_units": line.unit_price,
                "line_total_minor_units": line.line_total,
                "delivered_at": _when(line.delivered_at),
                "shipped_at": _when(line.shipped_at),
                "refunded_at": _when(line.refunded_at),
                "booking_reference": line.booking_reference,
                "downloads": line.download_count,
            }
            for line in order.lines.all()
        ],
        "payments": [
            {"provider": p.provider, "status": p.status, "amount_minor_units": p.amount, "at": _when(p.created_at)}
            for p in payments
        ],
        "refunds": [
            {"status": r.status, "amount_minor_units": r.amount, "reason": r.reason, "at": _when(r.created_at)}
            for r in refunds
        ],
        # keys are not in the file: the order page shows them, and logs each time it does
        "key_reveals_and_downloads": [
            {
                "what": a.kind,
                "product": a.line.product_name,
                "at": _when(a.created_at),
                "ip_address": a.ip,
                "user_agent": a.user_agent,
            }
            for a in accesses
        ],
    }


def privacy_export(*, email: str, user=None) -> dict:
    """Everything kept about the address (and its account), as plain JSON-ready data."""
    email = email_normalise(email)
    orders = list(Order.objects.filter(email=email).prefetch_related("lines").order_by("created_at"))
    ids = [order.pk for order in orders]
    payments, refunds, accesses = {}, {}, {}
    for payment in Payment.objects.filter(order_id__in=ids).order_by("pk"):
        payments.setdefault(payment.order_id, []).append(payment)
    for refund in Refund.objects.filter(order_id__in=ids).order_by("pk"):
        refunds.setdefault(refund.order_id, []).append(refund)
    for access in DeliveryAccess.objects.filter(order_id__in=ids).select_related("line").order_by("pk"):
        accesses.setdefault(access.order_id, []).append(access)
    subscriptions = Subscription.objects.filter(email=email).select_related("product").order_by("created_at")
    account = None
    if user is not None:
        account = {
            "email": user.email,
            "created_at": _when(user.date_joined),
            "last_sign_in": _when(user.last_login),
            "password_set": user.has_usable_password(),
            "memberships": [
                {"group": m.group.name, "starts_at": _when(m.starts_at), "ends_at": _when(m.ends_at)}
                for m in Membership.objects.filter(user=user).select_related("group").order_by("pk")
            ],
        }
    return {
        "exported_at": _when(timezone.now()),
        "email": email,
        "account": account,
        "orders": [
            _order_export(o, payments.get(o.pk, []), refunds.get(o.pk, []), accesses.get(o.pk, [])) for o in orders
        ],
        "subscriptions": [
            {
                "product": s.product.name,
                "status": s.status,
                "interval": s.interval,
                "quantity": s.quantity,
                "amount_minor_units": s.amount,
                "currency": s.currency,
                "started_at": _when(s.created_at),
                "current_period_end": _when(s.current_period_end),
                "cancelled_at": _when(s.cancelled_at),
                "url": settings.SITE_URL + reverse("subscription-manage", kwargs={"token": s.token}),
            }
            for s in subscriptions
        ],
        "license_activations": [
            {
                "product": a.license.product.name,
                "order": a.license.key.order_line.order.number,
                "machine": a.name,
                "activated_at": _when(a.created_at),
                "deactivated_at": _when(a.deactivated_at),
            }
            for a in LicenseActivation.objects.filter(license__key__order_line__order_id__in=ids)
            .select_related("license__product", "license__key__order_line__order")
            .order_by("pk")
        ],
        "sign_in_links": [
            {"sent_at": _when(link.created_at), "used_at": _when(link.used_at)}
            for link in ShopperSignInLink.objects.filter(email=email).order_by("created_at")
        ],
    }


@dataclass(frozen=True)
class ErasureOutcome:
    orders_erased: int
    orders_kept: int
    kept_until: datetime | None  # when the last kept order's window closes (a dispute may hold it longer)


def privacy_erase(*, email: str, user=None, actor: str, now: datetime | None = None) -> ErasureOutcome:
    """Erase the address's personal data now, except the dispute evidence of orders still in their window (kept
    until it closes, then erased by the purge beat). Cancels its subscriptions and closes its account."""
    now = now or timezone.now()
    email = email_normalise(email)
    live = Subscription.objects.filter(email=email).exclude(status=SubscriptionStatus.CANCELLED)
    for subscription_id in live.values_list("pk", flat=True):
        subscription_cancel_now(subscription_id=subscription_id, actor=actor, note="The shopper asked to be erased.")
    with transaction.atomic():
        erasure = PrivacyErasure.objects.create(
            email=email, email_digest=email_digest(email), requested_at=now, erase_after=now
        )
        total = Order.objects.filter(email=email, created_at__lte=now).count()
        erasure_continue(erasure=erasure, now=now)
        kept = Order.objects.filter(email=email, created_at__lte=now).count()
        ShopperSignInLink.objects.filter(email=email).delete()
        if user is not None:
            _account_close(user, now=now)
    return ErasureOutcome(
        orders_erased=total - kept,
        orders_kept=kept,
        kept_until=erasure.erase_after if erasure.completed_at is None else None,
    )


def _account_close(user, *, now: datetime) -> None:
    """The account goes: memberships end, and the user row stays only as an anonymous, inactive placeholder
    (memberships and audit rows point at it)."""
    memberships_end(
        memberships=list(Membership.objects.filter(user=user, ended=False).select_related("group")), now=now
    )
    user.username = f"erased-{user.pk}"
    user.email = user.first_name = user.last_name = ""
    user.is_active = False
    user.set_unusable_password()
    user.save(update_fields=["username", "email", "first_name", "last_name", "is_active", "password"])
