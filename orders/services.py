"""Order business actions: checkout, payment received, shipping."""

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from catalog.models import FulfilmentKind, Product
from fulfillment.models import KeyStatus
from orders.cart import CartLine
from orders.errors import CheckoutError
from orders.models import Order, OrderLine, OrderStatus, PaymentState
from orders.status import (
    IllegalTransition,
    determine_fulfilment_status,
    order_event_record,
    order_lock,
    order_transition,
)
from riskengine.models import RiskDecision
from riskengine.services import risk_record_event

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
    """One line per product, at the product's current database state and price."""
    quantities: dict[int, int] = {}
    for line in lines:
        quantities[line.product.pk] = quantities.get(line.product.pk, 0) + line.quantity
    products = Product.objects.prefetch_related("price_breaks").in_bulk(list(quantities))
    return [CartLine(product=products[pk], quantity=qty) for pk, qty in quantities.items() if pk in products]


def checkout_validate_lines(lines: list[CartLine]) -> None:
    """Raise CheckoutError if these lines cannot be bought now."""
    if not lines:
        raise CheckoutError("empty_cart")
    if len({line.product.currency for line in lines}) > 1:
        raise CheckoutError("mixed_currency")
    for line in lines:
        product = line.product
        if line.quantity < 1:
            raise CheckoutError("invalid_quantity")
        if not product.is_active:
            raise CheckoutError("product_unavailable", product=product.localized_name)
        if line.quantity > product.max_per_order:
            raise CheckoutError("quantity_over_maximum", maximum=product.max_per_order)
        if product.kind == FulfilmentKind.LICENSE_KEY and not product.is_reusable_key:
            available = product.license_keys.filter(status=KeyStatus.AVAILABLE).count()
            if available < line.quantity:
                raise CheckoutError("out_of_stock", available=available, product=product.localized_name)


def checkout_requires_shipping(lines: list[CartLine]) -> bool:
    return any(line.product.requires_shipping for line in lines)


@transaction.atomic
def checkout_create_order(
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
) -> Order:
    """Create a pending order for the cart lines at today's prices.

    Shipping is asked for, charged and stored only when a line needs it.
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
    address = shipping if needs_shipping else None
    order = Order.objects.create(
        email=email.strip().lower(),
        locale=locale[:10],
        currency=lines[0].product.currency,
        subtotal_amount=subtotal,
        shipping_amount=shipping_amount,
        total_amount=subtotal + shipping_amount,
        ship_name=address.name if address else "",
        ship_line1=address.line1 if address else "",
        ship_line2=address.line2 if address else "",
        ship_city=address.city if address else "",
        ship_postal_code=address.postal_code if address else "",
        ship_country=address.country.upper()[:2] if address else "",
        purchase_ip=purchase_ip,
        user_agent=user_agent[:300],
        device_id=device_id[:64],
    )
    OrderLine.objects.bulk_create(
        OrderLine(
            order=order,
            product=line.product,
            product_name=line.product.name,
            kind=line.product.kind,
            unit_price=line.unit_price,
            quantity=line.quantity,
            line_total=line.line_total,
        )
        for line in lines
    )
    order_event_record(
        order=order,
        type="order_created",
        actor=actor,
        data={"total": order.total_amount, "device_fingerprint": device_fingerprint},
    )
    risk_record_event(order=order, event="order_placed")
    return order


@dataclass(frozen=True)
class PaymentSignals:
    """What the payment told us about the payer, for the risk engine (all optional)."""

    card_fingerprint: str = ""
    card_country: str = ""
    billing_country: str = ""
    radar: dict | None = None


@transaction.atomic
def order_mark_paid(
    *,
    order_id: int,
    amount: int,
    currency: str,
    payment_ref: str,
    actor: str,
    signals: PaymentSignals | None = None,
) -> Order:
    """Record that the order's payment cleared, check the amount, assess risk, then release, hold or decline.

    Idempotent: an order that is no longer pending payment is returned unchanged. A payment
    whose amount or currency differs from the order is flagged for staff and releases nothing.
    Risk 'review' opens a case in the ops queue; 'decline' holds the order and refunds it after commit.
    """
    from fulfillment.tasks import deliver_order
    from riskengine.review import review_case_open
    from riskengine.services import risk_assess_order, risk_record_event
    from riskengine.tasks import refund_declined_order

    order = order_lock(order_id=order_id)
    if order.status != OrderStatus.PENDING_PAYMENT:
        logger.info("order %s already past payment (%s); payment %s ignored", order.number, order.status, payment_ref)
        return order
    signals = signals or PaymentSignals()
    order.card_fingerprint = signals.card_fingerprint or order.card_fingerprint
    order.card_country = signals.card_country or order.card_country
    order.billing_country = signals.billing_country or order.billing_country
    order.save(update_fields=["card_fingerprint", "card_country", "billing_country"])
    order.paid_at = timezone.now()
    if amount != order.total_amount or currency.upper() != order.currency.upper():
        order.payment_state = PaymentState.MISMATCH
        order.save(update_fields=["paid_at", "payment_state", "updated_at"])
        expected = {"amount": order.total_amount, "currency": order.currency}
        received = {"amount": amount, "currency": currency.upper()}
        logger.warning("order %s: payment %s amount mismatch %s != %s", order.number, payment_ref, received, expected)
        return order_transition(
            order=order,
            to_status=OrderStatus.ON_HOLD,
            actor=actor,
            note="Paid amount does not match the order; held for staff.",
            data={"reason": "payment_mismatch", "expected": expected, "received": received, "payment": payment_ref},
        )
    order.payment_state = PaymentState.PAID
    order.save(update_fields=["paid_at", "payment_state", "updated_at"])
    order = order_transition(order=order, to_status=OrderStatus.PAID, actor=actor, data={"payment": payment_ref})
    risk_record_event(order=order, event="card_used")
    assessment = risk_assess_order(order=order, radar=signals.radar)
    if assessment.decision == RiskDecision.APPROVE:
        # robust: if the broker is down the sweeper delivers; the payment must still be recorded
        transaction.on_commit(lambda: deliver_order.delay(order.pk), robust=True)
        return order
    top = "; ".join(r["reason"] for r in assessment.reasons[:3])
    order = order_transition(
        order=order,
        to_status=OrderStatus.ON_HOLD,
        actor="riskengine",
        note=f"Risk {assessment.decision} ({assessment.score}): {top}",
        data={"reason": "risk", "decision": assessment.decision, "score": assessment.score},
    )
    if assessment.decision == RiskDecision.REVIEW:
        review_case_open(order=order, assessment=assessment)
    else:
        transaction.on_commit(lambda: refund_declined_order.delay(order.pk), robust=True)
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
