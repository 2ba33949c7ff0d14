"""Shopper pages. Thin: they read through selectors and act through services."""

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog.models import FulfilmentKind, Product
from fulfillment.models import KeyStatus
from fulfillment.services import DownloadUnavailable, download_start, download_token_for_line, order_reveal_keys
from orders.cart import cart_add, cart_clear, cart_coupon_read, cart_lines, cart_set_quantity
from orders.errors import MESSAGES, CheckoutError
from orders.models import OrderLine, OrderStatus
from orders.selectors import order_get_by_token
from orders.services import checkout_requires_shipping
from orders.subscriptions import subscription_access_until
from orders.tasks import send_order_links
from payments.models import PaymentStatus, Provider
from payments.providers.base import PaymentDeclined, PaymentError
from payments.refunds import RefundNotAllowed
from payments.routing import channels_for_order
from payments.selectors import stripe_js_url
from payments.services import OrderOutOfStock, PaymentBlocked
from riskengine.models import RiskSettings
from storefront.accounts import signed_in_email
from storefront.coupon_views import cart_discount
from storefront.device import device_fingerprint
from storefront.flow.checkout import checkout_create_order, payment_capture, payment_open_for_order, payment_refresh
from storefront.flow.refunds import refund_issue, shopper_refund_check
from storefront.flow.trials import trial_channel
from storefront.forms import CheckoutForm, OrderLookupForm
from storefront.license_views import order_licenses_for_page
from storefront.outages import unavailable_page
from storefront.ratelimit import RATE_LIMITED_MESSAGE, client_ip, client_rate_limited

logger = logging.getLogger(__name__)


def _quantity(request) -> int:
    try:
        return int(request.POST.get("quantity", "1"))
    except ValueError:
        return -1


@require_POST
def cart_add_view(request, slug: str):
    product = get_object_or_404(Product, slug=slug, is_active=True)
    try:
        cart_add(request.session, product=product, quantity=_quantity(request))
    except CheckoutError as exc:
        messages.error(request, exc.message)
        return redirect("product-detail", slug=slug)
    messages.success(request, _("Added to your cart."))
    return redirect("cart")


@require_http_methods(["GET", "POST"])
def cart_view(request):
    if request.method == "POST":
        try:
            product_id = int(request.POST.get("product", ""))
        except ValueError:
            raise Http404 from None
        product = get_object_or_404(Product, pk=product_id)
        quantity = 0 if "remove" in request.POST else _quantity(request)
        try:
            cart_set_quantity(request.session, product=product, quantity=quantity)
        except CheckoutError as exc:
            messages.error(request, exc.message)
        return redirect("cart")
    lines = cart_lines(request.session)
    discount, coupon_error = cart_discount(request.session, lines)
    subtotal = sum(line.line_total for line in lines)
    context = {
        "lines": lines,
        "subtotal": subtotal,
        "discount": discount,
        "coupon_error": coupon_error,
        "total": subtotal - discount.amount,
        "currency": lines[0].product.currency if lines else "",
    }
    return render(request, "storefront/cart.html", context)


@require_http_methods(["GET", "POST"])
def checkout_view(request):
    lines = cart_lines(request.session)
    if not lines:
        return redirect("cart")
    needs_shipping = checkout_requires_shipping(lines)
    # a signed-in shopper finds their address filled in (and may change it); a guest gives it, and nothing else
    initial = {"email": signed_in_email(request)}
    form = CheckoutForm(request.POST or None, requires_shipping=needs_shipping, initial=initial)
    # every attempt counts, valid or not; a refused one creates nothing and keeps the cart
    limited = request.method == "POST" and client_rate_limited(request, scope="checkout", limit=settings.CHECKOUT_RATE)
    if limited:
        form.add_error(None, RATE_LIMITED_MESSAGE)
    elif request.method == "POST" and form.is_valid():
        try:
            order = checkout_create_order(
                lines=lines,
                email=form.cleaned_data["email"],
                shipping=form.shipping_address(),
                locale=get_language() or settings.LANGUAGE_CODE,
                purchase_ip=client_ip(request),
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                device_id=getattr(request, "device_id", ""),
                device_fingerprint=device_fingerprint(request.POST.get("device_fp", "")),
                coupon=cart_coupon_read(request.session),
            )
        except CheckoutError as exc:
            form.add_error(None, exc.message)
        else:
            cart_clear(request.session)
            return redirect("pay", token=order.token)
    subtotal = sum(line.line_total for line in lines)
    shipping = settings.SHIPPING_FLAT_FEE if needs_shipping else 0
    discount, _coupon_error = cart_discount(request.session, lines)
    context = {
        "form": form,
        "lines": lines,
        "requires_shipping": needs_shipping,
        "subtotal": subtotal,
        "shipping": shipping,
        "discount": discount,
        "total": subtotal + shipping - discount.amount,
        "currency": lines[0].product.currency,
    }
    return render(request, "storefront/checkout.html", context, status=429 if limited else 200)


@require_GET
def pay_view(request, token: str):
    """The order's payment: the best channel that answers, and the other ways to pay.

    `?method=<channel>` picks one. When the best channel fails to open a payment, the next is offered
    at once with a note, and nothing the shopper entered is lost (the order holds it all).
    """
    order = order_get_by_token(token=token)
    if order is None:
        raise Http404
    if order.status != OrderStatus.PENDING_PAYMENT:
        return redirect("order-detail", token=token)
    if order.trial_days:  # nothing to pay today: the card is kept for the first charge (flow.trials)
        return _trial_pay_page(request, order)
    offered = [offer.channel for offer in channels_for_order(order=order)]
    chosen = next((c for c in offered if c.code == request.GET.get("method")), None)
    cancelled = request.GET.get("cancelled", "")
    if chosen is None and cancelled:  # back from a provider's page without paying: offer the best other way
        chosen = next((c for c in offered if c.code != cancelled), None)
    error, payment, unavailable = "", None, []
    try:
        started = payment_open_for_order(order=order, channel=chosen)
        payment, unavailable = started.payment, list(started.failed_channels)
    except OrderOutOfStock:
        error = MESSAGES["order_sold_out"]
    except PaymentBlocked:
        error = MESSAGES["payment_blocked"]
    except PaymentError:
        error = _("Payment is unavailable right now; please try again in a moment.")
    channel = payment.channel if payment is not None else None
    still_offered = [offer.channel for offer in channels_for_order(order=order)]
    context = {
        "order": order,
        "payment": payment,
        "channel": channel,
        "error": error,
        "unavailable": unavailable,
        "others": [c for c in still_offered if c != channel and c not in unavailable],
        "cancelled": bool(cancelled),
        "declined": request.GET.get("declined") == "1",
    }
    if channel is not None and channel.provider == Provider.STRIPE:
        context["stripe_js_url"] = stripe_js_url(channel)
        context["stripe_publishable_key"] = channel.credential("public_key")
    return render(request, "storefront/pay.html", context)


def _trial_pay_page(request, order):
    channel = trial_channel(order=order)
    first_charge = timezone.now() + timedelta(days=order.trial_days)
    context = {"order": order, "channel": channel, "trial_first_charge": first_charge, "others": []}
    if channel is None:
        context["error"] = _("A free trial needs a card, and cards are unavailable right now.")
    else:
        context["stripe_js_url"] = stripe_js_url(channel)
        context["stripe_publishable_key"] = channel.credential("public_key")
    return render(request, "storefront/pay.html", context)


@require_GET
def pay_return(request, token: str):
    """Where PayPal sends the shopper after approving: capture now and show the order.

    Capturing is idempotent (the approval webhook and reconciliation may capture the same order);
    if PayPal cannot be reached now, the order page waits and reconciliation finishes the capture.
    """
    order = order_get_by_token(token=token)
    if order is None:
        raise Http404
    payment = order.payments.filter(provider=Provider.PAYPAL, provider_ref=request.GET.get("token", "")).first()
    if payment is None:
        raise Http404
    if payment.status != PaymentStatus.SUCCEEDED:
        try:
            payment_capture(payment=payment, actor="paypal:return")
        except PaymentDeclined:
            return redirect(reverse("pay", kwargs={"token": token}) + "?declined=1")
        except PaymentError:
            logger.warning("order %s: capture on return failed; reconciliation will finish it", order.number)
    return redirect("order-detail", token=token)


def order_page_path(order) -> str:
    return reverse("order-detail", kwargs={"token": order.token})


def _order_page(request, order, *, revealed: dict[int, list[str]] | None = None, status: int = 200):
    revealed = revealed or {}
    live = order.status not in (OrderStatus.REFUNDED, OrderStatus.CANCELLED)
    licensed = order_licenses_for_page(order)  # keys tracked by the license API, with their activations
    lines = []
    for line in order.lines.all():
        download_url = ""
        line_live = live and not line.refunded_at
        if line.kind == FulfilmentKind.DOWNLOAD and line.delivered_at and line_live:
            download_url = reverse("download", kwargs={"token": download_token_for_line(line)})
        has_keys = line.kind == FulfilmentKind.LICENSE_KEY and line.delivered_at is not None
        has_keys = line_live and (has_keys or any(k.status == KeyStatus.SOLD for k in line.license_keys.all()))
        # a later order of a key sold by period delivers no key: the first order's key works one period more
        renews_key = bool(order.subscription_id and has_keys and not line.license_keys.all())
        lines.append(
            {
                "line": line,
                "keys": revealed.get(line.pk, []),
                "can_reveal": has_keys and not renews_key and line.pk not in revealed,
                "renews_key_until": subscription_access_until(order.subscription) if renews_key and line_live else None,
                "download_url": download_url,
                "downloads_left": max(0, line.product.download_max - line.download_count),
                "licenses": licensed.get(line.pk, []) if line_live else [],
            }
        )
    payment_failed = ""  # the last attempt at an unpaid order failed: say why and offer another try
    if order.status == OrderStatus.PENDING_PAYMENT:
        last_payment = order.payments.order_by("-created_at").first()
        if last_payment is not None and last_payment.status == PaymentStatus.FAILED:
            payment_failed = last_payment.failure_message or _("the payment was declined.")
    failed = bool(payment_failed)
    context = {
        "order": order,
        "lines": lines,
        "payment_failed": payment_failed,
        "waiting": order.status in (OrderStatus.PENDING_PAYMENT, OrderStatus.PAID) and not failed,
        "has_digital": any(not item["line"].requires_shipping for item in lines),
        "has_keys": any(item["line"].kind == FulfilmentKind.LICENSE_KEY for item in lines),
        "has_downloads": any(item["line"].kind == FulfilmentKind.DOWNLOAD for item in lines),
        "review_hours": RiskSettings.current().review_deadline_hours if order.status == OrderStatus.ON_HOLD else 0,
    }
    response = render(request, "storefront/order_detail.html", context, status=status)
    response["Cache-Control"] = "no-store"
    # same-origin, not no-referrer: the token never leaves the site, and browsers still send a
    # real Origin on the reveal form (with no-referrer they send "Origin: null" and CSRF refuses it)
    response["Referrer-Policy"] = "same-origin"
    return response


@require_GET
def order_detail(request, token: str):
    order = order_get_by_token(token=token)
    if order is None:
        raise Http404
    if order.status == OrderStatus.PENDING_PAYMENT:
        # back from the bank's 3-D Secure check: ask the provider rather than wait for its webhook
        waiting = order.payments.filter(status=PaymentStatus.REQUIRES_ACTION).order_by("-created_at").first()
        if (
            waiting is not None
            and payment_refresh(payment=waiting, actor="shopper:order-page").status != waiting.status
        ):
            order = order_get_by_token(token=token)
    revealed = {}
    asked = request.session.pop(_reveal_session_key(order), None)  # on the reveal form just before
    line = order.lines.filter(pk=asked).first() if asked is not None else None
    if line is not None:  # shown once, and logged as a reveal
        ip, user_agent = client_ip(request), request.META.get("HTTP_USER_AGENT", "")
        revealed[line.pk] = order_reveal_keys(order=order, line=line, ip=ip, user_agent=user_agent)
    return _order_page(request, order, revealed=revealed)


@require_http_methods(["GET", "POST"])
def order_reveal(request, token: str):
    """Ask to see a line's keys, then go back to the order page (post/redirect/get: a refresh or a bookmark
    never posts again). The order page shows them once, in this browser only, and logs that reveal with time,
    IP and user agent (dispute evidence); the keys themselves are never kept in the session."""
    order = order_get_by_token(token=token)
    if order is None:
        raise Http404
    if request.method == "GET":
        return redirect(order_page_path(order))
    try:
        line = order.lines.get(pk=int(request.POST.get("line", "")))
    except (ValueError, OrderLine.DoesNotExist):
        raise Http404 from None
    request.session[_reveal_session_key(order)] = line.pk
    response = redirect(order_page_path(order))
    response.status_code = 303  # see other: the browser GETs the order page
    return response


def _reveal_session_key(order) -> str:
    return f"reveal:{order.pk}"


@require_http_methods(["GET", "POST"])
def order_refund(request, token: str, signature: str):
    """The one-click refund offered to a shopper whose order waits for stock (signed link from the email)."""
    order = order_get_by_token(token=token)
    if order is None:
        raise Http404
    try:
        shopper_refund_check(order=order, token=signature)
    except RefundNotAllowed:
        return render(request, "storefront/order_refund.html", {"order": order, "refusable": False}, status=410)
    if request.method == "POST":
        try:
            refund_issue(order=order, actor="shopper", reason="Shopper chose a refund while waiting for stock.")
        except (RefundNotAllowed, PaymentError):
            messages.error(request, _("The refund could not be made right now. Please try again later."))
            return redirect("order-refund", token=token, signature=signature)
        messages.success(request, _("Your order was refunded."))
        return redirect("order-detail", token=token)
    return render(request, "storefront/order_refund.html", {"order": order, "refusable": True})


@require_http_methods(["GET", "POST"])
def order_lookup(request):
    """Emails the links of that address's recent orders to it. The answer never says whether there are any."""
    form = OrderLookupForm(request.POST or None)
    sent = False
    if request.method == "POST" and form.is_valid():
        if client_rate_limited(request, scope="lookup", limit=settings.ORDER_LOOKUP_RATE):
            return render(request, "storefront/order_lookup.html", {"form": form, "limited": True}, status=429)
        send_order_links.delay(form.cleaned_data["email"])  # finds nothing, sends nothing: the answer is the same
        sent = True
    return render(request, "storefront/order_lookup.html", {"form": form, "sent": sent})


@require_GET
def download_view(request, token: str):
    try:
        line, handle = download_start(
            token=token, ip=client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", "")
        )
    except DownloadUnavailable as exc:
        if exc.reason == "file_unavailable":  # the shop's fault, not the link's: nothing was counted
            return unavailable_page(
                request,
                title=_("This file cannot be downloaded right now"),
                message=_(
                    "Your downloads left are unchanged. Please try again later; if it keeps happening, "
                    "contact us with your order number."
                ),
            )
        return HttpResponse(_("This download link is no longer valid."), status=exc.status, content_type="text/plain")
    filename = line.product.download_file.name.rsplit("/", 1)[-1]
    return FileResponse(handle, as_attachment=True, filename=filename)
