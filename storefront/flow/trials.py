"""Free trials: a product sold by period with trial days is checked out at nothing today, and the card it
renews with is kept at once, without a charge, through a card setup the shopper's browser confirms (Stripe's
SetupIntent, with 3-D Secure when the bank asks); the first charge is period 1, when the trial ends
(storefront.flow.renewals charges it off-session like any renewal, with a reminder before it). One trial per
email and product (orders.subscriptions.trial_days_offered).

Starting a trial releases goods without a payment, so it is screened as a free order is (flow.free_orders):
rate-limited per mailbox, device and address, the risk engine's screen before the card is kept (blocklist,
velocity), then every rule as for a paid order, with the kept card's fingerprint and country (flow.payment):
released, held for review or declined by the same path.
"""

import uuid

from django.core.cache import cache
from django.db import transaction

from catalog.models import Product
from orders.errors import CheckoutError
from orders.models import Order, OrderStatus
from orders.subscriptions import SavedCard, order_renewing_line, trial_taken
from payments.models import PaymentChannel, Provider
from payments.providers.base import CardSetup, PaymentDeclined, PaymentError
from payments.routing import channels_for_order
from payments.saved_cards import card_setup_fetch, card_setup_open
from payments.services import OrderNotPayable, PaymentBlocked
from riskengine.models import RiskDecision
from riskengine.services import risk_check_before_payment
from storefront.flow.free_orders import DAY, free_order_rate_limited
from storefront.flow.payment import PaymentSignals, order_mark_paid
from storefront.logs import bind_order

TRIAL_ACTOR = "checkout:trial"


def trial_channel(*, order: Order, code: str = "") -> PaymentChannel | None:
    """The card channel that keeps the trial's card (`code` if it is one of those offered): renewals are charged
    off-session, so only a provider that keeps cards can carry a trial."""
    cards = [o.channel for o in channels_for_order(order=order) if o.channel.provider == Provider.STRIPE]
    return next((c for c in cards if c.code == code), cards[0] if cards else None)


def _trial_checked(order: Order, channel: PaymentChannel | None) -> PaymentChannel:
    if order.status != OrderStatus.PENDING_PAYMENT or not order.trial_days:
        raise OrderNotPayable(order.number)
    channel = channel or trial_channel(order=order)
    if channel is None or channel.provider != Provider.STRIPE:
        raise PaymentError("A free trial needs a card, and cards are unavailable right now.")
    return channel


def trial_card_setup(*, order: Order, channel: PaymentChannel | None = None) -> CardSetup:
    """Step one: screen the order, then open the card's setup for the shopper's browser to confirm (Stripe.js
    confirmCardSetup, with 3-D Secure when the bank asks). Nothing is kept or started yet.

    Raises OrderNotPayable (no longer pending), CheckoutError "free_order_limit", PaymentBlocked (the screen
    declined it) or PaymentError (no card channel, or the provider refused)."""
    bind_order(order.number)
    channel = _trial_checked(order, channel)
    # counted once per order: a shopper who types the card again (declined, the bank's check failed) is not
    # taken for someone trying many trials
    if cache.add(f"trial-screened-{order.pk}", 1, timeout=DAY) and free_order_rate_limited(order=order):
        raise CheckoutError("free_order_limit")
    if risk_check_before_payment(order=order).decision == RiskDecision.DECLINE:
        raise PaymentBlocked(order.number)
    # a new setup per attempt (one whose card was refused cannot be confirmed again); nothing is charged by it
    key = f"order-{order.number}-trial-setup-{uuid.uuid4().hex[:12]}"
    return card_setup_open(channel=channel, email=order.email, order_number=order.number, key=key)


def trial_start(*, order: Order, setup_ref: str, channel: PaymentChannel | None = None) -> Order:
    """Step two: the browser confirmed the setup `setup_ref`; keep its card and start the trial (see the module's
    docstring). Asked again for an order already started, it returns the order unchanged.

    Raises OrderNotPayable, PaymentDeclined (the setup is not this order's, or did not succeed: nothing kept)
    or PaymentError."""
    bind_order(order.number)
    if order.status != OrderStatus.PENDING_PAYMENT and order.subscription_id:
        return order  # started already (a second click, a retried request)
    channel = _trial_checked(order, channel)
    setup = card_setup_fetch(channel=channel, ref=setup_ref)
    if setup.order_number != order.number or setup.status != "succeeded" or setup.card is None:
        raise PaymentDeclined("The card was not confirmed; please enter it again.")
    kept = setup.card
    with transaction.atomic():
        # one trial per mailbox and per card, checked again with the product locked: two orders placed before
        # either started (two tabs) must not both start one
        line = order_renewing_line(order)
        Product.objects.select_for_update().filter(pk=line.product_id).first()
        email, card, pk = order.email, kept.fingerprint, order.pk
        if trial_taken(product_id=line.product_id, email=email, card_fingerprint=card, other_than=pk):
            raise CheckoutError("trial_used")
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
