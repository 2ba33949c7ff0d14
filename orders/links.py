"""Signed links for an order's shopper: the "refund instead of waiting" link mailed while stock is awaited."""

from django.core import signing

from orders.models import Order

_SHOPPER_REFUND_SALT = "payments.backorder-refund"  # the salt links already mailed were signed with
SHOPPER_REFUND_LINK_DAYS = 60


class BadLink(Exception):
    pass


def shopper_refund_token(order: Order) -> str:
    return signing.TimestampSigner(salt=_SHOPPER_REFUND_SALT).sign(order.number)


def shopper_refund_token_check(*, order: Order, token: str) -> None:
    """Raise BadLink unless `token` was signed for this order, within SHOPPER_REFUND_LINK_DAYS."""
    try:
        number = signing.TimestampSigner(salt=_SHOPPER_REFUND_SALT).unsign(
            token, max_age=60 * 60 * 24 * SHOPPER_REFUND_LINK_DAYS
        )
    except signing.BadSignature:
        raise BadLink("invalid link") from None
    if number != order.number:
        raise BadLink("invalid link")
