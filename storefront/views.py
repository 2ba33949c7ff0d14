"""Shopper pages. Thin: they read through selectors and act through services."""

import logging

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog.models import Product
from catalog.selectors import product_get_for_sale, product_in_stock, product_list_for_sale
from fulfillment.services import DownloadUnavailable, download_resolve, download_token_for_line
from orders.cart import cart_add, cart_clear, cart_lines, cart_set_quantity
from orders.errors import CheckoutError
from orders.models import OrderStatus
from orders.selectors import order_find_for_lookup, order_get_by_token
from orders.services import checkout_create_order, checkout_requires_shipping
from orders.tasks import send_order_email
from payments.providers.base import PaymentError
from payments.services import payment_start_for_order
from storefront.forms import CheckoutForm, OrderLookupForm
from storefront.ratelimit import client_ip, rate_limit_hit

logger = logging.getLogger(__name__)


@require_GET
def product_list(request):
    products = [(p, product_in_stock(p)) for p in product_list_for_sale()]
    return render(request, "storefront/product_list.html", {"products": products})


@require_GET
def product_detail(request, slug: str):
    try:
        product = product_get_for_sale(slug=slug)
    except Product.DoesNotExist:
        raise Http404 from None
    return render(
        request,
        "storefront/product_detail.html",
        {"product": product, "in_stock": product_in_stock(product), "quantities": range(1, product.max_per_order + 1)},
    )


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
    context = {
        "lines": lines,
        "subtotal": sum(line.line_total for line in lines),
        "currency": lines[0].product.currency if lines else "",
    }
    return render(request, "storefront/cart.html", context)


@require_http_methods(["GET", "POST"])
def checkout_view(request):
    lines = cart_lines(request.session)
    if not lines:
        return redirect("cart")
    needs_shipping = checkout_requires_shipping(lines)
    form = CheckoutForm(request.POST or None, requires_shipping=needs_shipping)
    if request.method == "POST" and form.is_valid():
        try:
            order = checkout_create_order(
                lines=lines,
                email=form.cleaned_data["email"],
                shipping=form.shipping_address(),
                locale=get_language() or settings.LANGUAGE_CODE,
                purchase_ip=client_ip(request),
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
            )
        except CheckoutError as exc:
            form.add_error(None, exc.message)
        else:
            cart_clear(request.session)
            return redirect("pay", token=order.token)
    subtotal = sum(line.line_total for line in lines)
    shipping = settings.SHIPPING_FLAT_FEE if needs_shipping else 0
    context = {
        "form": form,
        "lines": lines,
        "requires_shipping": needs_shipping,
        "subtotal": subtotal,
        "shipping": shipping,
        "total": subtotal + shipping,
        "currency": lines[0].product.currency,
    }
    return render(request, "storefront/checkout.html", context)


@require_GET
def pay_view(request, token: str):
    order = order_get_by_token(token=token)
    if order is None:
        raise Http404
    if order.status != OrderStatus.PENDING_PAYMENT:
        return redirect("order-detail", token=token)
    error = ""
    try:
        payment = payment_start_for_order(order=order)
    except PaymentError:
        payment, error = None, _("Payment is unavailable right now; please try again in a moment.")
    context = {
        "order": order,
        "payment": payment,
        "error": error,
        "stripe_js_url": settings.STRIPE_JS_URL,
        "stripe_publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
    }
    return render(request, "storefront/pay.html", context)


def order_page_path(order) -> str:
    return reverse("order-detail", kwargs={"token": order.token})


@require_GET
def order_detail(request, token: str):
    order = order_get_by_token(token=token)
    if order is None:
        raise Http404
    lines = []
    for line in order.lines.all():
        keys = []
        if order.status not in (OrderStatus.REFUNDED, OrderStatus.CANCELLED):
            keys = [key.reveal() for key in sorted(line.license_keys.all(), key=lambda k: k.unit_index or 0)]
        download_url = ""
        if line.kind == "download" and line.delivered_at and order.status != OrderStatus.REFUNDED:
            download_url = reverse("download", kwargs={"token": download_token_for_line(line)})
        lines.append({"line": line, "keys": keys, "download_url": download_url})
    context = {
        "order": order,
        "lines": lines,
        "waiting": order.status in (OrderStatus.PENDING_PAYMENT, OrderStatus.PAID),
    }
    response = render(request, "storefront/order_detail.html", context)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_http_methods(["GET", "POST"])
def order_lookup(request):
    """Emails the order link to the address on the order. The answer never says whether it exists."""
    form = OrderLookupForm(request.POST or None)
    sent = False
    if request.method == "POST" and form.is_valid():
        if rate_limit_hit(
            scope="lookup", key=client_ip(request) or "-", limit=settings.ORDER_LOOKUP_RATE, window_seconds=3600
        ):
            return render(request, "storefront/order_lookup.html", {"form": form, "limited": True}, status=429)
        order = order_find_for_lookup(email=form.cleaned_data["email"], number=form.cleaned_data["number"])
        if order is not None:
            send_order_email.delay(order.pk, "order_link")
        sent = True
    return render(request, "storefront/order_lookup.html", {"form": form, "sent": sent})


@require_GET
def download_view(request, token: str):
    try:
        line = download_resolve(token=token)
    except DownloadUnavailable as exc:
        return HttpResponse(_("This download link is no longer valid."), status=exc.status, content_type="text/plain")
    handle = line.product.download_file.open("rb")
    filename = line.product.download_file.name.rsplit("/", 1)[-1]
    return FileResponse(handle, as_attachment=True, filename=filename)
