"""What the engine looks at for one order: gathered once, read by every rule."""

from dataclasses import dataclass, field

from orders.geo import ip_country
from orders.models import Order
from orders.selectors import order_lines
from riskengine.mailbox import email_key

__all__ = ["Signals", "email_key", "identifiers", "ip_country", "signals_for_order"]


@dataclass(frozen=True)
class Signals:
    order_id: int
    email: str
    email_domain: str
    ip: str
    ip_country: str
    device_id: str
    card_fingerprint: str
    card_country: str
    billing_country: str
    amount: int
    currency: str
    product_ids: tuple[int, ...]
    high_risk_products: tuple[str, ...]
    radar: dict = field(default_factory=dict)
    units: int = 0  # items ordered, all lines together
    product_units: tuple[tuple[int, int], ...] = ()  # (product id, units), one per line
    coupon_id: int | None = None  # the coupon the order used (riskengine.rules.rule_coupon_abuse)
    # Per-evaluation cache shared by rules (velocity counts, linked orders); never compared.
    memo: dict = field(default_factory=dict, compare=False, repr=False)


def signals_for_order(order: Order, *, radar: dict | None = None) -> Signals:
    lines = [(line.product_id, line.product.name, line.product.high_risk, line.quantity) for line in order_lines(order)]
    email = order.email.lower()
    return Signals(
        order_id=order.pk,
        email=email,
        email_domain=email.rsplit("@", 1)[-1],
        ip=order.purchase_ip or "",
        ip_country=ip_country(order.purchase_ip),
        device_id=order.device_id,
        card_fingerprint=order.card_fingerprint,
        card_country=order.card_country,
        billing_country=order.billing_country or order.ship_country,
        amount=order.total_amount,
        currency=order.currency,
        product_ids=tuple(product_id for product_id, _, _, _ in lines),
        high_risk_products=tuple(name for _, name, high_risk, _ in lines if high_risk),
        radar=radar or {},
        units=sum(quantity for _, _, _, quantity in lines),
        product_units=tuple((product_id, quantity) for product_id, _, _, quantity in lines),
        coupon_id=order.coupon_id,
    )


def identifiers(signals: Signals) -> dict[str, str]:
    """The identifiers velocity and link rules count by, non-empty only."""
    values = {
        "email": signals.email,
        "ip": signals.ip,
        "device": signals.device_id,
        "card": signals.card_fingerprint,
    }
    return {k: v for k, v in values.items() if v}
