"""Order business actions: create the order at checkout, ship its physical lines."""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from catalog.models import FulfilmentKind, Product
from orders.cart import CartLine
from orders.coupons import NO_DISCOUNT, Discount, coupon_check, coupon_redeem
from orders.errors import CheckoutError
from orders.models import Order, OrderEventType, OrderLine, OrderStatus
from orders.selectors import order_lines_remember
from orders.status import (
    IllegalTransition,
    determine_fulfilment_status,
    order_event_record,
    order_lock,
    order_transition,
)
from orders.subscriptions import trial_days_offered

logger = logging.getLogger(__name__)

MAX_ORDER_TOTAL = 2**31 - 1  # what the order's amount columns hold, in minor units


@dataclass(frozen=True)
class ShippingAddress:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str = ""

    def is_complete(self) -> bool:
        return all(v.strip() for v in (self.name, self.line1, self.city, self.postal_code, self.country))


def _merge_by_product(lines: list[CartLine]) -> list[CartLine]:
    """One line per product, at the product's current database state and price (products read in this request
    with their price breaks, as the cart and the API read them, are current: they are not read again)."""
    quantities: dict[int, int] = {}
    for line in lines:
        quantities[line.product.pk] = quantities.get(line.product.pk, 0) + line.quantity
    given = {line.product.pk: line.product for line in lines}
    if all("price_breaks" in getattr(p, "_prefetched_objects_cache", {}) for p in given.values()):
        products = given
    else:
        products = Product.objects.prefetch_related("price_breaks").in_bulk(list(quantities))
    return [CartLine(product=products[pk], quantity=qty) for pk, qty in quantities.items() if pk in products]


def checkout_validate_lines(lines: list[CartLine]) -> None:
    """Raise CheckoutError if these lines cannot be bought now."""
    if not lines:
        raise CheckoutError("empty_cart")
    if len({line.product.currency for line in lines}) > 1:
        raise CheckoutError("mixed_currency")
    if any(line.product.billing_interval for line in lines) and len(lines) > 1:
        raise CheckoutError("one_subscription_per_order")  # its renewals charge exactly what it costs
    for line in lines:
        product = line.product
        if line.quantity < 1:
            raise CheckoutError("invalid_quantity")
        if not product.is_active:
            raise CheckoutError("product_unavailable", product=product.localized_name)
        if line.quantity > product.max_per_order:
            raise CheckoutError("quantity_over_maximum", maximum=product.max_per_order)
        if product.kind == FulfilmentKind.LICENSE_KEY and not product.is_reusable_key:
            available = product.keys_available  # kept by fulfillment.stock, checked against the keys
            if available < line.quantity and not product.keys_unlimited:  # generated keys never run out
                raise CheckoutError("out_of_stock", available=available, product=product.localized_name)


def checkout_requires_shipping(lines: list[CartLine]) -> bool:
    return any(line.product.requires_shipping for line in lines)


@transaction.atomic(savepoint=False)  # inside checkout's transaction: no savepoint of its own
def order_create(
    *,
    lines: list[CartLine],
    email: str,
    shipping: ShippingAddress | None,
    locale: str,
    purchase_ip: str | None,
    user_agent: str,
    device_id: str = "",
    device_fingerprint: str = "",
    actor: str = "shopper",
    coupon: str = "",
) -> Order:
    """Create a pending order for the cart lines at today's prices (storefront.flow.checkout places it).

    Shipping is asked for, charged and stored only when a line needs it. A `coupon` code is checked for this
    shopper with the coupon locked (orders.coupons; CouponInvalid, code "coupon_invalid", creates nothing), its
    discount shared out over the lines and its use written down with the order.
    """
    email = email.strip()
    try:
        validate_email(email)
    except ValidationError:
        raise CheckoutError("invalid_email") from None
    lines = _merge_by_product(lines)
    checkout_validate_lines(lines)
    needs_shipping = checkout_requires_shipping(lines)
    if needs_shipping and (shipping is None or not shipping.is_complete()):
        raise CheckoutError("shipping_required")
    subtotal = sum(line.line_total for line in lines)
    shipping_amount = settings.SHIPPING_FLAT_FEE if needs_shipping else 0
    if subtotal + shipping_amount > MAX_ORDER_TOTAL:
        raise CheckoutError("order_too_large")
    discount = NO_DISCOUNT
    trial_days = trial_days_offered(product=lines[0].product, email=email) if len(lines) == 1 else 0
    if trial_days and coupon.strip():
        raise CheckoutError("coupon_with_trial")
    if trial_days:  # nothing charged today: the whole first order is the trial's (its card is kept at payment)
        discount = Discount(amount=subtotal, shares=(subtotal,))
    elif coupon.strip():
        discount = coupon_check(code=coupon, lines=lines, email=email, device_id=device_id[:64], lock=True)
    address = shipping if needs_shipping else None
    order = Order.objects.create(
        email=email.strip().lower(),
        locale=locale[:10],
        currency=lines[0].product.currency,
        subtotal_amount=subtotal,
        shipping_amount=shipping_amount,
        discount_amount=discount.amount,
        total_amount=subtotal + shipping_amount - discount.amount,
        coupon=discount.coupon,
        ship_name=address.name if address else "",
        ship_line1=address.line1 if address else "",
        ship_line2=address.line2 if address else "",
        ship_city=address.city if address else "",
        ship_postal_code=address.postal_code if address else "",
        ship_country=address.country.upper()[:2] if address else "",
        purchase_ip=purchase_ip,
        user_agent=user_agent[:300],
        device_id=device_id[:64],
        trial_days=trial_days,
    )
    created = OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            product=line.product,
            product_name=line.product.name,
            kind=line.product.kind,
            unit_price=line.unit_price,
            quantity=line.quantity,
            line_total=line.line_total,
            discount_amount=discount.shares[i] if discount.shares else 0,
        )
        for i, line in enumerate(lines)
    )
    order_lines_remember(order, created)
    coupon_redeem(order=order, discount=discount, device_id=device_id)
    order_event_record(
        order=order,
        type=OrderEventType.ORDER_CREATED,
        actor=actor,
        data={
            "total": order.total_amount,
            "device_fingerprint": device_fingerprint,
            **({"coupon": discount.code, "discount": discount.amount} if discount.coupon else {}),
            **({"trial_days": trial_days} if trial_days else {}),
        },
    )
    return order


@transaction.atomic
def order_mark_lines_shipped(*, order_id: int, actor: str) -> Order:
    """Mark every physical line shipped; completes the order when nothing else is outstanding."""
    order = order_lock(order_id=order_id)
    if order.status != OrderStatus.AWAITING_SHIPMENT:
        raise IllegalTransition(order, OrderStatus.SHIPPED)
    now = timezone.now()
    order.lines.filter(kind=FulfilmentKind.PHYSICAL, shipped_at__isnull=True).update(shipped_at=now)
    target = determine_fulfilment_status(list(order.lines.all()))
    if target != order.status:
        order = order_transition(order=order, to_status=target, actor=actor, note="Physical items shipped.")
    return order
