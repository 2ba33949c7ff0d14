"""Payments on a saved card, with the shopper away: a subscription's renewals.

Two steps, each recorded: the payment is opened at the provider and recorded before any money moves, then
confirmed off-session. A worker that dies between them leaves a recorded payment that the next attempt asks
the provider about before doing anything, so a period is never charged twice even by a provider that does
not honour idempotency keys. Provider calls run outside transactions.
"""

import logging

from django.conf import settings
from django.urls import reverse

from orders.models import Order
from payments.health import provider_call
from payments.models import Payment, PaymentChannel, PaymentStatus
from payments.providers import provider_for_channel
from payments.providers.base import CardSetup, KeptCard, PaymentRequest, PaymentSnapshot
from payments.services import payment_channel_for, payments_of

logger = logging.getLogger(__name__)


def channel_by_code(code: str) -> PaymentChannel | None:
    return PaymentChannel.objects.filter(code=code).first()


def card_save(*, channel: PaymentChannel, email: str, card_token: str, key: str) -> KeptCard:
    """Keep a card for later charges on `channel`. Raises PaymentError."""
    with provider_call(channel=channel, operation="save_card"):
        return provider_for_channel(channel).save_card(email=email, card_token=card_token, idempotency_key=key)


def card_setup_open(*, channel: PaymentChannel, email: str, order_number: str, key: str) -> CardSetup:
    """Begin keeping a card without a charge on `channel` (the browser confirms it). Raises PaymentError."""
    with provider_call(channel=channel, operation="open_card_setup"):
        return provider_for_channel(channel).open_card_setup(
            email=email, order_number=order_number, idempotency_key=key
        )


def card_setup_fetch(*, channel: PaymentChannel, ref: str) -> CardSetup:
    """Where a card setup stands, with the kept card once it succeeded. Raises PaymentError."""
    with provider_call(channel=channel, operation="fetch_card_setup"):
        return provider_for_channel(channel).fetch_card_setup(ref=ref)


def payment_open_on_saved_card(
    *, order: Order, channel: PaymentChannel, customer_ref: str, method_ref: str, attempt: int
) -> Payment:
    """Open and record attempt number `attempt` to pay `order` with a saved card. Raises PaymentError."""
    provider = provider_for_channel(channel)
    with provider_call(channel=channel, operation="create_payment", order=order):
        snapshot = provider.create_saved_card_payment(
            PaymentRequest(
                order_number=order.number,
                amount=order.total_amount,
                currency=order.currency,
                email=order.email,
                idempotency_key=f"order-{order.number}-{channel.code}-renewal-{attempt}",
                metadata={"subscription": str(order.subscription_id), "period": str(order.subscription_period)},
                description=f"Order {order.number} (renewal)",
                return_url=settings.SITE_URL + reverse("pay-return", kwargs={"token": order.token}),
                locale=order.locale,
            ),
            customer_ref=customer_ref,
            method_ref=method_ref,
        )
    payment, _ = Payment.objects.get_or_create(
        provider=provider.name,
        provider_ref=snapshot.ref,
        defaults={
            "order": order,
            "channel": channel,
            "amount": order.total_amount,
            "currency": order.currency,
            "client_secret": snapshot.client_secret,
            "status": PaymentStatus.CREATED,
        },
    )
    return payment


def payment_confirm_off_session(*, payment: Payment) -> PaymentSnapshot:
    """Charge the recorded payment's saved card. Raises PaymentDeclined (the card said no) or PaymentError."""
    channel = payment_channel_for(payment)
    with provider_call(channel=channel, operation="capture", order=payment.order):
        return provider_for_channel(channel).confirm_off_session(
            ref=payment.provider_ref, idempotency_key=f"renewal-confirm-{payment.pk}"
        )


def renewal_attempts(order: Order) -> list[Payment]:
    """The payments tried so far for a renewal order, oldest first."""
    return sorted(payments_of(order), key=lambda p: p.pk)
