"""Emails to shoppers. They carry the order link, never a key."""

from django.conf import settings
from django.core.mail import send_mail
from django.template import engines
from django.urls import reverse
from django.utils import translation

from orders.links import shopper_refund_token
from orders.models import Order, OrderEventType
from orders.selectors import order_list_for_lookup
from orders.status import order_event_record

TEMPLATES = {"order_delivered", "order_awaiting_stock", "order_link", "order_refunded", "order_partially_refunded"}


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
