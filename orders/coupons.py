"""Coupons: what a code takes off an order, whether this shopper may use it now, and its uses.

A coupon takes its discount off the order's lines, never off shipping, and never more than they cost. The
discount is shared out over the lines it applies to, in whole minor units, so each line knows what was paid
for it (`OrderLine.paid_amount`): a partial refund returns that, not the list price.

A use counts against the coupon's limits once its order is paid, and for `USE_HELD_FOR` while the order
waits for payment (so two tabs cannot both take the last use; an abandoned order frees it). Refunded orders
still count: a coupon farmer gains nothing by refunding. Per shopper means per mailbox (orders.mailbox:
"a.b+x@gmail.com" is "ab@gmail.com") and per device; the card is known only once paid, and the risk engine's
coupon rule scores one card or device redeeming under many mailboxes.
"""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from orders.cart import CartLine
from orders.errors import CheckoutError
from orders.mailbox import email_key
from orders.models import Coupon, CouponKind, CouponRedemption, Order, OrderStatus

USE_HELD_FOR = timedelta(hours=1)

REASONS = {
    "unknown": _("there is no such code."),
    "not_started": _("it is not valid yet."),
    "ended": _("it has ended."),
    "used_up": _("it has been used up."),
    "shopper_limit": _("you have used it already."),
    "first_order": _("it is for a first order only."),
    "minimum": _("the order is below its minimum."),
    "currency": _("it does not apply in this currency."),
    "nothing_applies": _("it does not apply to anything in this order."),
}


class CouponInvalid(CheckoutError):
    """A code that cannot be used on this order: code "coupon_invalid", with the reason for the shopper."""

    def __init__(self, *, code: str, reason: str):
        self.reason = reason
        super().__init__("coupon_invalid", coupon=code[:40], reason=REASONS[reason])


@dataclass(frozen=True)
class Discount:
    """A coupon's discount on some lines: the total and each line's share, in the lines' order."""

    coupon: Coupon | None = None
    amount: int = 0
    shares: tuple[int, ...] = field(default=())

    @property
    def code(self) -> str:
        return self.coupon.code if self.coupon is not None else ""


NO_DISCOUNT = Discount()


def coupon_code_normalise(code: str) -> str:
    return "".join(code.split()).upper()[:40]


def coupon_find(*, code: str, lock: bool = False) -> Coupon | None:
    """The coupon with this code, whatever its case (locked for the caller's transaction with `lock`)."""
    code = coupon_code_normalise(code)
    if not code:
        return None
    found = Coupon.objects.filter(code__iexact=code)
    if lock:
        found = found.select_for_update()
    return found.prefetch_related("products", "categories").first()


def discount_share_out(amount: int, weights: Sequence[int]) -> tuple[int, ...]:
    """Split `amount` over `weights` in proportion, in whole units: the shares add up to `amount` exactly and none
    is above its weight (`amount` must not exceed their sum). The units left by rounding down go to the largest
    remainders, the earlier line first on a tie."""
    total = sum(weights)
    if amount < 0 or amount > total:
        raise ValueError("the amount must lie between zero and the sum of the weights")
    if total == 0:
        return tuple(0 for _ in weights)
    floors = [amount * weight // total for weight in weights]
    left = amount - sum(floors)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(amount * weights[i] % total), i))
    for i in by_remainder[:left]:
        floors[i] += 1
    return tuple(floors)


def coupon_applies_to_line(coupon: Coupon, line: CartLine) -> bool:
    """Whether the coupon takes anything off this line (its products and categories, quantity prices,
    subscriptions)."""
    product = line.product
    product_ids = {p.pk for p in coupon.products.all()}
    category_ids = {c.pk for c in coupon.categories.all()}
    if (product_ids or category_ids) and product.pk not in product_ids and product.category_id not in category_ids:
        return False
    if product.billing_interval and not coupon.first_period_of_subscriptions:
        return False  # renewals charge the subscription's own price: a coupon is for the first period only
    return coupon.stacks_with_quantity_prices or line.unit_price >= product.price_amount


def coupon_discount(*, coupon: Coupon, lines: Sequence[CartLine]) -> Discount:
    """What the coupon takes off these lines, ignoring who uses it and when (pure arithmetic on the lines)."""
    weights = [line.line_total if coupon_applies_to_line(coupon, line) else 0 for line in lines]
    applicable = sum(weights)
    if coupon.kind == CouponKind.PERCENT:
        amount = applicable * min(coupon.percent_off, 100) // 100
    else:
        amount = min(coupon.amount_off, applicable)
    return Discount(coupon=coupon, amount=amount, shares=discount_share_out(amount, weights))


def coupon_uses(coupon: Coupon, *, now: datetime) -> QuerySet[CouponRedemption]:
    """The uses that count against the coupon's limits now (see the module's docstring)."""
    return coupon.redemptions.filter(
        Q(order__paid_at__isnull=False)
        | Q(order__status=OrderStatus.PENDING_PAYMENT, created_at__gte=now - USE_HELD_FOR)
    )


def _first_order(*, email: str, device_id: str) -> bool:
    earlier = Q(email__iexact=email.strip())
    if device_id:
        earlier |= Q(device_id=device_id)
    return not Order.objects.filter(earlier, paid_at__isnull=False).exists()


def coupon_check(
    *,
    code: str,
    lines: Sequence[CartLine],
    email: str = "",
    device_id: str = "",
    lock: bool = False,
    now: datetime | None = None,
) -> Discount:
    """The discount `code` gives on these lines for this shopper now, or CouponInvalid saying why.

    Without an email (the cart, before checkout) the per-shopper limits are not checked yet; checkout checks
    them with the coupon row locked (`lock`), so two orders at once cannot both take the last use."""
    coupon = coupon_find(code=code, lock=lock)
    shown = coupon_code_normalise(code)
    if coupon is None or not coupon.is_active or coupon.offered_for_waiting:  # a template: its copies are used
        raise CouponInvalid(code=shown, reason="unknown")
    now = now or timezone.now()
    if coupon.starts_at and now < coupon.starts_at:
        raise CouponInvalid(code=shown, reason="not_started")
    if coupon.ends_at and now >= coupon.ends_at:
        raise CouponInvalid(code=shown, reason="ended")
    currency = lines[0].product.currency if lines else ""
    if coupon.currency and currency and coupon.currency.upper() != currency.upper():
        raise CouponInvalid(code=shown, reason="currency")
    if sum(line.line_total for line in lines) < coupon.min_order_amount:
        raise CouponInvalid(code=shown, reason="minimum")
    discount = coupon_discount(coupon=coupon, lines=lines)
    if discount.amount <= 0:
        raise CouponInvalid(code=shown, reason="nothing_applies")
    uses = coupon_uses(coupon, now=now)
    if coupon.max_uses is not None and uses.count() >= coupon.max_uses:
        raise CouponInvalid(code=shown, reason="used_up")
    if email:
        if coupon.max_uses_per_shopper is not None:
            same_shopper = Q(email_key=email_key(email))
            if device_id:
                same_shopper |= Q(device_id=device_id)
            if uses.filter(same_shopper).count() >= coupon.max_uses_per_shopper:
                raise CouponInvalid(code=shown, reason="shopper_limit")
        if coupon.first_order_only and not _first_order(email=email, device_id=device_id):
            raise CouponInvalid(code=shown, reason="first_order")
    return discount


def coupon_redeem(*, order: Order, discount: Discount, device_id: str = "") -> CouponRedemption | None:
    """Write down the use of the order's coupon (inside order_create's transaction, the coupon locked)."""
    if discount.coupon is None or discount.amount <= 0:
        return None
    return CouponRedemption.objects.create(
        coupon=discount.coupon,
        order=order,
        email_key=email_key(order.email),
        device_id=device_id[:64],
        amount=discount.amount,
    )


def coupon_offered_for_waiting(*, now: datetime | None = None) -> Coupon | None:
    """The coupon the merchant offers to shoppers who wait for stock (the newest active one), if any."""
    now = now or timezone.now()
    return (
        Coupon.objects.filter(offered_for_waiting=True, is_active=True, issued_for_order__isnull=True)
        .exclude(ends_at__lte=now)
        .order_by("-created_at")
        .first()
    )


def coupon_issue_for_waiting(*, order: Order, now: datetime | None = None) -> Coupon | None:
    """Give the shopper whose order waited for stock a one-use copy of the coupon offered for waiting, once per
    order (the one-to-one `issued_for_order`). Call with the order locked when it is filled. Returns the copy
    issued now, or None: no offer, or one was issued for this order already."""
    if Coupon.objects.filter(issued_for_order=order).exists():
        return None
    offer = coupon_offered_for_waiting(now=now)
    if offer is None:
        return None
    now = now or timezone.now()
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    issued = Coupon.objects.create(
        code="THANKS-" + "".join(secrets.choice(alphabet) for _ in range(8)),
        kind=offer.kind,
        percent_off=offer.percent_off,
        amount_off=offer.amount_off,
        currency=offer.currency,
        min_order_amount=offer.min_order_amount,
        ends_at=now + timedelta(days=offer.valid_days_when_offered),
        max_uses=1,
        max_uses_per_shopper=1,
        stacks_with_quantity_prices=offer.stacks_with_quantity_prices,
        issued_for_order=order,
    )
    issued.products.set(offer.products.all())
    issued.categories.set(offer.categories.all())
    return issued
