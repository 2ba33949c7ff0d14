"""The session's cart for a headless front end."""

from django.conf import settings
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.models import Product
from orders.cart import cart_clear, cart_coupon_read, cart_coupon_set, cart_lines, cart_set_quantity
from orders.coupons import NO_DISCOUNT, coupon_check, coupon_code_normalise
from orders.errors import CheckoutError
from storefront.api_errors import ApiError, error_responses
from storefront.ratelimit import RATE_LIMITED_MESSAGE, client_rate_limited


def _coupon_guesses_limited(request) -> None:
    """Trying codes counts like checking out (the same hourly limit per client, the cart page's too)."""
    if client_rate_limited(request, scope="coupon", limit=settings.CHECKOUT_RATE):
        raise ApiError("rate_limited", str(RATE_LIMITED_MESSAGE), status.HTTP_429_TOO_MANY_REQUESTS)


class CartLineSerializer(serializers.Serializer):
    product = serializers.SlugField()
    quantity = serializers.IntegerField(min_value=0, max_value=1000)


class CartUpdateSerializer(serializers.Serializer):
    product = serializers.SlugField(required=False)
    quantity = serializers.IntegerField(min_value=0, max_value=1000, required=False)
    coupon = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=40,
        help_text='A coupon code kept with the cart and used at checkout ("" removes it). Unknown or spent: 400 '
        "coupon_invalid.",
    )

    def validate(self, attrs):
        if ("product" in attrs) != ("quantity" in attrs):
            raise serializers.ValidationError(_("Give a product and its quantity together."))
        return attrs


class CartSerializer(serializers.Serializer):
    lines = serializers.ListField(child=serializers.DictField(), read_only=True)
    subtotal_amount = serializers.IntegerField(read_only=True)
    coupon = serializers.CharField(read_only=True, allow_null=True, help_text="The coupon code applied, or null.")
    discount_amount = serializers.IntegerField(read_only=True, help_text="What the coupon takes off, minor units.")
    total_amount = serializers.IntegerField(
        read_only=True, help_text="Subtotal less the discount (shipping, when a line ships, is added at checkout)."
    )
    currency = serializers.CharField(read_only=True)


def _cart_payload(session, *, coupon: str | None = None) -> dict:
    """The cart with the discount of `coupon` (checked: CouponInvalid), or of the code kept with the cart (dropped
    when it no longer applies)."""
    lines = cart_lines(session)
    discount = NO_DISCOUNT
    if coupon is not None:
        discount = coupon_check(code=coupon, lines=lines) if lines and coupon else NO_DISCOUNT
    elif cart_coupon_read(session) and lines:
        try:
            discount = coupon_check(code=cart_coupon_read(session), lines=lines)
        except CheckoutError:
            cart_coupon_set(session, code="")
    subtotal = sum(line.line_total for line in lines)
    return {
        "lines": [
            {
                "product": line.product.slug,
                "name": line.product.localized_name,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_total": line.line_total,
            }
            for line in lines
        ],
        "subtotal_amount": subtotal,
        "coupon": discount.code or None,
        "discount_amount": discount.amount,
        "total_amount": subtotal - discount.amount,
        "currency": lines[0].product.currency if lines else "",
    }


def _product(slug: str) -> Product:
    product = Product.objects.filter(slug=slug).first()
    if product is None:
        raise ApiError("product_not_found", _("No product with that slug."), status.HTTP_404_NOT_FOUND)
    return product


class CartApi(APIView):
    """The session's cart. PUT a line to set its quantity (0 removes it), and/or a `coupon` to keep with the cart."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "coupon", str, OpenApiParameter.QUERY, required=False, description="Price the cart with this code."
            )
        ],
        responses={200: CartSerializer, **error_responses(400, 429)},
        tags=["cart"],
    )
    def get(self, request):
        coupon = request.query_params.get("coupon")
        if coupon:
            _coupon_guesses_limited(request)
        return Response(_cart_payload(request.session, coupon=coupon[:100] if coupon is not None else None))

    @extend_schema(
        request=CartUpdateSerializer,
        responses={200: CartSerializer, **error_responses(400, 404, 415, 429)},
        tags=["cart"],
    )
    def put(self, request):
        data = CartUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if "product" in data.validated_data:
            cart_set_quantity(
                request.session,
                product=_product(data.validated_data["product"]),
                quantity=data.validated_data["quantity"],
            )
        coupon = data.validated_data.get("coupon")
        if coupon is not None:
            if coupon:
                _coupon_guesses_limited(request)
            code = coupon_code_normalise(coupon)
            payload = _cart_payload(request.session, coupon=code)  # CouponInvalid: 400, the cart's code unchanged
            cart_coupon_set(request.session, code=code)
            return Response(payload)
        return Response(_cart_payload(request.session))

    @extend_schema(responses={204: None}, tags=["cart"])
    def delete(self, request):
        cart_clear(request.session)
        return Response(status=status.HTTP_204_NO_CONTENT)
