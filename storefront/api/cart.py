"""The session's cart for a headless front end."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.models import Product
from orders.cart import cart_clear, cart_lines, cart_set_quantity
from storefront.api_errors import ApiError, error_responses


class CartLineSerializer(serializers.Serializer):
    product = serializers.SlugField()
    quantity = serializers.IntegerField(min_value=0, max_value=1000)


class CartSerializer(serializers.Serializer):
    lines = serializers.ListField(child=serializers.DictField(), read_only=True)
    subtotal_amount = serializers.IntegerField(read_only=True)
    currency = serializers.CharField(read_only=True)


def _cart_payload(session) -> dict:
    lines = cart_lines(session)
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
        "subtotal_amount": sum(line.line_total for line in lines),
        "currency": lines[0].product.currency if lines else "",
    }


def _product(slug: str) -> Product:
    product = Product.objects.filter(slug=slug).first()
    if product is None:
        raise ApiError("product_not_found", _("No product with that slug."), status.HTTP_404_NOT_FOUND)
    return product


class CartApi(APIView):
    """The session's cart. PUT a line to set its quantity (0 removes it)."""

    @extend_schema(responses=CartSerializer, tags=["cart"])
    def get(self, request):
        return Response(_cart_payload(request.session))

    @extend_schema(
        request=CartLineSerializer, responses={200: CartSerializer, **error_responses(400, 404, 415)}, tags=["cart"]
    )
    def put(self, request):
        data = CartLineSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        cart_set_quantity(
            request.session, product=_product(data.validated_data["product"]), quantity=data.validated_data["quantity"]
        )
        return Response(_cart_payload(request.session))

    @extend_schema(responses={204: None}, tags=["cart"])
    def delete(self, request):
        cart_clear(request.session)
        return Response(status=status.HTTP_204_NO_CONTENT)
