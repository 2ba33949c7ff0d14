"""The merchant REST API (/api/v1/merchant/): the shop's orders and licenses for the merchant's other systems.

Authenticated by a merchant API key (`Authorization: Bearer mk_...`, made in admin), each endpoint needs a scope:
`orders:read` to list and read orders, `licenses:manage` to list licenses and their activations, disable or enable
one and reset its activations. Every call, refused ones too, is audited (admin: *Merchant API calls*).
"""

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from fulfillment import licenses
from fulfillment.models import License
from orders.models import Order, OrderStatus
from storefront.api.licenses import LicenseSerializer, license_data
from storefront.api_errors import error_responses
from storefront.merchant_keys import api_call_record, api_key_authenticate
from storefront.ratelimit import client_ip, rate_limit_hit


class Page(LimitOffsetPagination):
    default_limit = 50
    max_limit = 100


class MerchantKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        header = get_authorization_header(request).decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        key = api_key_authenticate(token.strip())
        if key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return (None, key)

    def authenticate_header(self, request):
        return 'Bearer realm="merchant-api"'


class MerchantKeyScheme(OpenApiAuthenticationExtension):
    target_class = "storefront.api.merchant.MerchantKeyAuthentication"
    name = "merchantApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A merchant API key (mk_...), made in admin."}


class HasScope(BasePermission):
    message = "This API key lacks the scope this endpoint needs."

    def has_permission(self, request, view):
        if request.auth is None:
            raise exceptions.NotAuthenticated("An API key is required: Authorization: Bearer mk_...")
        if rate_limit_hit(
            scope="merchant-api", key=str(request.auth.pk), limit=settings.MERCHANT_API_RATE, window_seconds=3600
        ):
            raise exceptions.Throttled()
        return view.scope in request.auth.scopes


class MerchantApi(APIView):
    authentication_classes = [MerchantKeyAuthentication]
    permission_classes = [HasScope]
    scope = ""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        key = getattr(request, "auth", None) if hasattr(request, "_authenticator") else None
        api_call_record(
            key=key, method=request.method, path=request.path, status=response.status_code, ip=client_ip(request)
        )
        response["Cache-Control"] = "no-store"
        return response


# --- Orders ------------------------------------------------------------------------------------------------


class MerchantOrderLineSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    product_id = serializers.IntegerField()
    product_name = serializers.CharField()
    kind = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.IntegerField()
    line_total = serializers.IntegerField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    refunded_at = serializers.DateTimeField(allow_null=True)


class MerchantOrderSerializer(serializers.Serializer):
    number = serializers.CharField()
    status = serializers.CharField()
    payment_state = serializers.CharField()
    email = serializers.EmailField()
    currency = serializers.CharField()
    total_amount = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    lines = MerchantOrderLineSerializer(many=True, source="lines.all")


ORDER_STATUS = OpenApiParameter("status", str, enum=OrderStatus.values, required=False)


@extend_schema(
    tags=["merchant"],
    parameters=[ORDER_STATUS],
    responses={200: MerchantOrderSerializer(many=True), **error_responses(401, 403, 429)},
)
class MerchantOrderListApi(MerchantApi):
    """Orders, newest first (limit/offset, at most 100 a page)."""

    scope = "orders:read"

    def get(self, request):
        orders = Order.objects.order_by("-created_at", "-pk").prefetch_related("lines")
        wanted = request.query_params.get("status")
        if wanted:
            orders = orders.filter(status=wanted)
        paginator = Page()
        page = paginator.paginate_queryset(orders, request, view=self)
        return paginator.get_paginated_response(MerchantOrderSerializer(page, many=True).data)


@extend_schema(
    tags=["merchant"],
    parameters=[OpenApiParameter("number", str, OpenApiParameter.PATH, pattern=r"^[A-Za-z0-9-]+$")],
    responses={200: MerchantOrderSerializer, **error_responses(401, 403, 404, 429)},
)
class MerchantOrderDetailApi(MerchantApi):
    scope = "orders:read"

    def get(self, request, number: str):
        order = get_object_or_404(Order.objects.prefetch_related("lines"), number=number)
        return Response(MerchantOrderSerializer(order).data)


# --- Licenses ----------------------------------------------------------------------------------------------


class ActivationSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="instance_id")
    name = serializers.CharField()
    created_at = serializers.DateTimeField()
    deactivated_at = serializers.DateTimeField(allow_null=True)


class MerchantLicenseSerializer(LicenseSerializer):
    id = serializers.IntegerField()
    order_number = serializers.CharField(allow_null=True)
    disabled = serializers.BooleanField()
    activations = ActivationSerializer(many=True)


def merchant_license_data(license: License, *, with_activations: bool = True) -> dict:
    line = license.key.order_line
    data = {
        "id": license.pk,
        **license_data(license),
        "order_number": line.order.number if line is not None else None,
        "disabled": license.disabled,
    }
    if with_activations:
        data["activations"] = ActivationSerializer(license.activations.all(), many=True).data
    return data


def _licenses():
    return License.objects.select_related("key__order_line__order", "product").prefetch_related("activations")


LICENSE_ID = OpenApiParameter("license_id", int, OpenApiParameter.PATH)


@extend_schema(
    tags=["merchant"],
    parameters=[
        OpenApiParameter("product", int, required=False),
        OpenApiParameter("order", str, required=False, description="An order number."),
    ],
    responses={200: MerchantLicenseSerializer(many=True), **error_responses(401, 403, 429)},
)
class MerchantLicenseListApi(MerchantApi):
    """Licenses with their activations, newest first (limit/offset, at most 100 a page)."""

    scope = "licenses:manage"

    def get(self, request):
        found = _licenses().order_by("-pk")
        product = request.query_params.get("product", "")
        if product.isdigit():
            found = found.filter(product_id=int(product))
        if request.query_params.get("order"):
            found = found.filter(key__order_line__order__number=request.query_params["order"])
        paginator = Page()
        page = paginator.paginate_queryset(found, request, view=self)
        return paginator.get_paginated_response([merchant_license_data(license) for license in page])


@extend_schema(
    tags=["merchant"],
    parameters=[LICENSE_ID],
    responses={200: MerchantLicenseSerializer, **error_responses(401, 403, 404, 429)},
)
class MerchantLicenseDetailApi(MerchantApi):
    scope = "licenses:manage"

    def get(self, request, license_id: int):
        return Response(merchant_license_data(get_object_or_404(_licenses(), pk=license_id)))


@extend_schema(
    tags=["merchant"],
    parameters=[LICENSE_ID],
    responses={200: ActivationSerializer(many=True), **error_responses(401, 403, 404, 429)},
)
class MerchantLicenseActivationsApi(MerchantApi):
    scope = "licenses:manage"

    def get(self, request, license_id: int):
        license = get_object_or_404(License, pk=license_id)
        return Response(ActivationSerializer(license.activations.all(), many=True).data)


class MerchantLicenseActionApi(MerchantApi):
    scope = "licenses:manage"
    action = ""

    @extend_schema(
        tags=["merchant"],
        request=None,
        parameters=[LICENSE_ID],
        responses={200: MerchantLicenseSerializer, **error_responses(401, 403, 404, 429)},
    )
    def post(self, request, license_id: int):
        get_object_or_404(License, pk=license_id)
        actor = f"api-key:{request.auth.pk}"
        if self.action == "reset":
            licenses.license_reset_activations(license_id=license_id, actor=actor)
        else:
            licenses.license_set_disabled(license_id=license_id, disabled=self.action == "disable", actor=actor)
        return Response(merchant_license_data(_licenses().get(pk=license_id)))


class MerchantLicenseDisableApi(MerchantLicenseActionApi):
    action = "disable"


class MerchantLicenseEnableApi(MerchantLicenseActionApi):
    action = "enable"


class MerchantLicenseResetApi(MerchantLicenseActionApi):
    action = "reset"
