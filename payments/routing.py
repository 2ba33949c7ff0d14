"""Which channels a shopper is offered for an order, best first.

A channel is offered when it is enabled, has its credentials, takes the order's currency, amount and
the shopper's country, and its breaker is closed. The rest are ordered by the merchant's priority,
then the fee the channel would cost on this order, then recent health (failure rate, then latency; unknown,
so no tie-breaker, while Redis is away).
Read fresh on every checkout, so a channel disabled in admin is gone from the very next one.
"""

from dataclasses import dataclass

from django.utils import timezone

from orders.geo import ip_country
from orders.models import Order
from payments.health import ChannelHealth, channel_health
from payments.models import PaymentChannel


@dataclass(frozen=True)
class ChannelOffer:
    channel: PaymentChannel
    expected_fee: int
    health: ChannelHealth


def shopper_country(order: Order) -> str:
    """Where the shopper is: the shipping country if goods ship, else the billing country, else by IP."""
    return (order.ship_country or order.billing_country or ip_country(order.purchase_ip)).upper()


def channel_refusal(channel: PaymentChannel, *, order: Order, country: str, now=None) -> str:
    """Why this channel cannot take this order now ('' when it can)."""
    if not channel.enabled:
        return "disabled"
    if channel.missing_credentials():
        return "credentials missing"
    if channel.currency_list and order.currency.upper() not in channel.currency_list:
        return "currency"
    if channel.min_amount is not None and order.total_amount < channel.min_amount:
        return "below minimum"
    if channel.max_amount is not None and order.total_amount > channel.max_amount:
        return "above maximum"
    if channel.country_list and country not in channel.country_list:
        return "country"
    if channel.breaker_open(now):
        return "breaker open"
    return ""


def channels_for_order(*, order: Order) -> list[ChannelOffer]:
    """The channels to offer for this order, best first."""
    now = timezone.now()
    country = shopper_country(order)
    channels = [
        channel
        for channel in PaymentChannel.objects.filter(enabled=True)
        if not channel_refusal(channel, order=order, country=country, now=now)
    ]
    health = channel_health(channel_ids=[channel.pk for channel in channels])
    offers = [
        ChannelOffer(
            channel=channel,
            expected_fee=channel.expected_fee(order.total_amount),
            health=health.get(channel.pk, ChannelHealth()),
        )
        for channel in channels
    ]
    offers.sort(
        key=lambda offer: (
            offer.channel.priority,
            offer.expected_fee,
            offer.health.failure_rate,
            offer.health.average_latency_ms or 0.0,
            offer.channel.pk,
        )
    )
    return offers
