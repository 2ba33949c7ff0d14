"""The cart's coupon: entered on the cart page, shown in the cart and checkout totals, used at checkout.

The code is kept in the session beside the cart and checked again when the order is placed (orders.coupons:
limits per shopper need the email, and the coupon may have run out meanwhile)."""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from orders.cart import CartLine, cart_coupon_read, cart_coupon_set, cart_lines
from orders.coupons import NO_DISCOUNT, Discount, coupon_check, coupon_code_normalise
from orders.errors import CheckoutError
from storefront.ratelimit import RATE_LIMITED_MESSAGE, client_rate_limited


def cart_discount(session, lines: list[CartLine]) -> tuple[Discount, str]:
    """The discount of the cart's coupon and, when the kept code no longer applies, why (it is then dropped)."""
    code = cart_coupon_read(session)
    if not code or not lines:
        return NO_DISCOUNT, ""
    try:
        return coupon_check(code=code, lines=lines), ""
    except CheckoutError as exc:
        cart_coupon_set(session, code="")
        return NO_DISCOUNT, exc.message


@require_POST
def cart_coupon_view(request):
    """Apply the code typed in the cart (or remove it), then back to the cart. Guessing codes is rate-limited."""
    if "remove" in request.POST:
        cart_coupon_set(request.session, code="")
        messages.success(request, _("Coupon removed."))
        return redirect("cart")
    if client_rate_limited(request, scope="coupon", limit=settings.CHECKOUT_RATE):
        messages.error(request, str(RATE_LIMITED_MESSAGE))
        return redirect("cart")
    code = coupon_code_normalise(request.POST.get("coupon", ""))
    if not code:
        messages.error(request, _("Please enter a coupon code."))
        return redirect("cart")
    try:
        coupon_check(code=code, lines=cart_lines(request.session))
    except CheckoutError as exc:
        messages.error(request, exc.message)
    else:
        cart_coupon_set(request.session, code=code)
        messages.success(request, _("Coupon %(code)s applied.") % {"code": code})
    return redirect("cart")
