"""A delivered line's keys for a headless front end: every reveal logged as dispute evidence."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from fulfillment.services import order_reveal_keys
from storefront.api.orders import ORDER_TOKEN, _order_or_404
from storefront.api_errors import ApiError, error_responses
from storefront.parsers import JSONParser
from storefront.ratelimit import client_ip


class RevealRequestSerializer(serializers.Serializer):
    line = serializers.IntegerField()


class RevealResultSerializer(serializers.Serializer):
    line = serializers.IntegerField()
    keys = serializers.ListField(child=serializers.CharField())
    redemption_instructions = serializers.CharField()


class OrderRevealApi(APIView):
    """A line's keys in clear. Every call is logged (time, IP, user agent) as dispute evidence."""

    # JSON only: an HTML form on another site can post urlencoded, multipart or text/plain bodies without a CORS
    # preflight, and with a leaked token would reveal the keys in the shopper's name. Those get a 415.
    parser_classes = [JSONParser]

    @extend_schema(
        request=RevealRequestSerializer,
        parameters=[ORDER_TOKEN],
        responses={200: RevealResultSerializer, **error_responses(400, 404, 415)},
        tags=["orders"],
    )
    def post(self, request, token: str):

        order = _order_or_404(token)
        data = RevealRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        line = order.lines.select_related("product").filter(pk=data.validated_data["line"]).first()
        if line is None:
            raise ApiError("line_not_found", _("No such line in this order."), status.HTTP_404_NOT_FOUND)
        keys = order_reveal_keys(
            order=order,
            line=line,
            ip=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
            channel="api",
        )
        response = Response(
            {"line": line.pk, "keys": keys, "redemption_instructions": line.product.localized_redemption_instructions}
        )
        response["Cache-Control"] = "no-store"
        return response
