"""Free trials: a product sold by period with trial days is checked out at nothing today, and the card it renews
with is kept at once; the first charge is period 1, when the trial ends (storefront.flow.renewals charges it
off-session like any renewal, with a reminder before it). One trial per email and product
(orders.subscriptions.trial_days_offered).

Starting a trial releases goods without a payment, so it is screened as a free order is (flow.free_orders):
rate-limited per mailbox, device and address, the risk engine's screen before the card is kept (blocklist,
velocity), then every rule as for a paid order, with the kept card's fingerprint and country (flow.payment):
released, held for review or declined by the same path.
"""

from django.db import transaction

from orders.errors import CheckoutError
from orders.models import Order, OrderStatus
from orders.subscriptions import SavedCard
from payments.models import PaymentChannel, Provider
from payments.providers.base import PaymentError
from payments.routing import channels_for_order
from payments.saved_cards import card_save
from payments.services import OrderNotPayable, PaymentBlocked
from riskengine.models import RiskDecision
from riskengine.services import risk_check_before_payment
from storefront.flow.free_orders import free_order_rate_limited
from storefront.flow.payment import PaymentSignals, order_mark_paid
from storefront.logs import bind_order

TRIAL_ACTOR = "checkout:trial"


def trial_channel(*, order: Order, code: str = "") -> PaymentChannel | None:
    """The card channel that keeps the trial's card (`code` if it is one of those offered): renewals are charged
    off-session, so only a provider that keeps cards can carry a trial."""
    cards = [o.channel for o in channels_for_order(order=order) if o.channel.provider == Provider.STRIPE]
    return next((c for c in cards if c.code == code), cards[0] if cards else None)


def trial_start(*, order: Order, card_token: str, channel: PaymentChannel | None = None) -> Order:
    """Keep the card behind `card_token` and start the order's free trial (see the module's docstring).

    Raises OrderNotPayable (no longer pending), CheckoutError "free_order_limit", PaymentBlocked (the screen
    declined it; no card is kept), or PaymentError (no card channel, or the card could not be kept). Asked again
    for an order already started, it returns the order unchanged."""
    bind_order(order.number)
    if order.status != OrderStatus.PENDING_PAYMENT or not order.trial_days:
        raise OrderNotPayable(order.number)
    channel = channel or trial_channel(order=order)
    if channel is None or channel.provider != Provider.STRIPE:
        raise PaymentError("A free trial needs a card, and cards are unavailable right now.")
    if free_order_rate_limited(order=order):
        raise CheckoutError("free_order_limit")
    if risk_check_before_payment(order=order).decision == RiskDecision.DECLINE:
        raise PaymentBlocked(order.number)
    # outside any transaction: a provider call never holds a row lock (the key makes a retried call one customer)
    kept = card_save(
        channel=channel, email=order.email, card_token=card_token, key=f"order-{order.number}-trial-{card_token}"
    )
    with transaction.atomic():
        return order_mark_paid(
            order_id=order.pk,
            amount=0,
            currency=order.currency,
            payment_ref="",
            actor=TRIAL_ACTOR,
            signals=PaymentSignals(card_fingerprint=kept.fingerprint, card_country=kept.country),
            saved_card=SavedCard(
                provider=channel.provider,
                channel_code=channel.code,
                customer_ref=kept.customer_ref,
                method_ref=kept.method_ref,
            ),
        )
