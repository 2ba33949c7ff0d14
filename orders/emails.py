"""Emails to shoppers. They carry the order link, never a key."""

from django.conf import settings
from django.core.mail import send_mail
from django.template import engines
from django.urls import reverse
from django.utils import translation

from orders.coupons import coupon_offered_for_waiting
from orders.links import shopper_refund_token
from orders.models import Coupon, Order, OrderEventType, Subscription
from orders.selectors import order_list_for_lookup
from orders.status import order_event_record

TEMPLATES = {
    "order_delivered",
    "order_awaiting_stock",
    "order_link",
    "order_refunded",
    "order_partially_refunded",
    "coupon_for_waiting",
}


def order_url(order: Order) -> str:
    return settings.SITE_URL + reverse("order-detail", kwargs={"token": order.token})


def order_email_send(*, order: Order, template: str) -> None:
    """Render `emails/<template>.txt` (first line is the subject) in the order's language and send it.

    Plain text, so the "text" template engine renders it without HTML escaping."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown email template {template!r}")
    context = {"order": order, "order_url": order_url(order), "lines": list(order.lines.select_related("product"))}
    if template == "order_awaiting_stock":
        signature = shopper_refund_token(order)
        context["refund_url"] = settings.SITE_URL + reverse(
            "order-refund", kwargs={"token": order.token, "signature": signature}
        )
        context["waiting_offer"] = coupon_offered_for_waiting()  # the merchant's compensation for waiting
    if template == "coupon_for_waiting":  # the merchant's thanks for waiting, once the order was filled
        context["thanks_coupon"] = Coupon.objects.get(issued_for_order=order)
    with translation.override(order.locale or settings.LANGUAGE_CODE):
        text = engines["text"].get_template(f"{template}.txt").render(context)
    subject, _, body = text.strip().partition("\n")
    send_mail(subject.strip(), body.strip() + "\n", settings.DEFAULT_FROM_EMAIL, [order.email])
    order_event_record(order=order, type=OrderEventType.EMAIL_SENT, actor="mailer", data={"template": template})


def order_links_send(*, email: str) -> int:
    """Email the links of the address's recent orders to that address, in the language of the latest one.

    Sends nothing when the address has no order; returns how many links went out."""
    orders = order_list_for_lookup(email=email)
    if not orders:
        return 0
    context = {"orders": [{"order": order, "url": order_url(order)} for order in orders]}
    with translation.override(orders[0].locale or settings.LANGUAGE_CODE):
        text = engines["text"].get_template("order_links.txt").render(context)
    subject, _, body = text.strip().partition("\n")
    send_mail(subject.strip(), body.strip() + "\n", settings.DEFAULT_FROM_EMAIL, [orders[0].email])
    for order in orders:
        order_event_record(
            order=order, type=OrderEventType.EMAIL_SENT, actor="mailer", data={"template": "order_links"}
        )
    return len(orders)


SUBSCRIPTION_TEMPLATES = {"subscription_reminder", "subscription_renewal_failed", "subscription_cancelled"}


def subscription_url(subscription: Subscription) -> str:
    return settings.SITE_URL + reverse("subscription-manage", kwargs={"token": subscription.token})


def subscription_email_send(*, subscription: Subscription, template: str, order: Order | None = None) -> None:
    """A subscription's email (`emails/<template>.txt`): the reminder before a renewal, a failed renewal with the
    links to pay it and to change the card, the cancellation. A renewal's receipt is its order's own email."""
    if template not in SUBSCRIPTION_TEMPLATES:
        raise ValueError(f"unknown email template {template!r}")
    context = {
        "subscription": subscription,
        "product": subscription.product,
        "manage_url": subscription_url(subscription),
        "pay_url": settings.SITE_URL + reverse("pay", kwargs={"token": order.token}) if order is not None else "",
        "amount": subscription.amount,
    }
    with translation.override(subscription.locale or settings.LANGUAGE_CODE):
        text = engines["text"].get_template(f"{template}.txt").render(context)
    subject, _, body = text.strip().partition("\n")
    send_mail(subject.strip(), body.strip() + "\n", settings.DEFAULT_FROM_EMAIL, [subscription.email])
