"""Reads for the coupon rule: who else redeemed this order's coupon from the same device or card."""

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from orders.models import CouponRedemption
from riskengine.asof import as_of_now


def coupon_other_mailboxes(
    *, coupon_id: int, order_id: int, mailbox: str, device_id: str, card_fingerprint: str, days: int
) -> dict[str, int]:
    """How many other mailboxes (orders.mailbox) redeemed the coupon in the last `days` from this device and with
    this card, each counted once: {"device": n, "card": m}, only for the identifiers the order has."""
    wanted = {"device": ("device_id", device_id), "card": ("order__card_fingerprint", card_fingerprint)}
    wanted = {kind: pair for kind, pair in wanted.items() if pair[1]}
    if not wanted:
        return {}
    moment = as_of_now() or timezone.now()
    same = Q()
    for field, value in wanted.values():
        same |= Q(**{field: value})
    rows = (
        CouponRedemption.objects.filter(same, coupon_id=coupon_id, created_at__gte=moment - timedelta(days=days))
        .filter(created_at__lte=moment)
        .exclude(order_id=order_id)
        .exclude(email_key=mailbox)
        .values_list("email_key", "device_id", "order__card_fingerprint")
    )
    found: dict[str, set[str]] = {kind: set() for kind in wanted}
    for key, device, card in rows:
        if "device" in wanted and device == device_id:
            found["device"].add(key)
        if "card" in wanted and card == card_fingerprint:
            found["card"].add(key)
    return {kind: len(keys) for kind, keys in found.items()}
