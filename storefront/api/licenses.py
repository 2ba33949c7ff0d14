"""The public license API the merchant's software calls: activate, validate and deactivate a key on a machine.

No credentials: the license key is the credential. Calls are rate-limited per client IP and per key (its
fingerprint, never the key). Keys are found by fingerprint (fulfillment.licenses). Answers never hold the buyer's
email or anything personal. Paths and fields are fixed (README, *Selling software*): client libraries rely on them.
"""

from django.conf import settings
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import FormParser
from rest_framework.response import Response
from rest_framework.views import APIView

from fulfillment import licenses
from fulfillment.crypto import fingerprint_secret
from fulfillment.models import License, LicenseActivation
from storefront.flow.licenses import license_activate, license_deactivate
from storefront.parsers import JSONParser
from storefront.ratelimit import RATE_LIMITED_MESSAGE, client_rate_limited, rate_limit_hit, retry_after_seconds

MESSAGES = {
    "license_not_found": _("This license key is not known."),
    "instance_not_found": _("This instance is not an activation of this license."),
    "activation_limit_reached": _("This license key has reached its activation limit."),
    "license_revoked": _("This license key was revoked."),
    "license_disabled": _("This license key is disabled."),
    "license_expired": _("This license key has expired."),
}


class ProductRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class LicenseSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["active", "inactive", "expired", "revoked", "disabled"])
    activation_limit = serializers.IntegerField(allow_null=True, help_text="null: unlimited.")
    activation_usage = serializers.IntegerField()
    expires_at = serializers.DateTimeField(allow_null=True, help_text="null: never.")
    product = ProductRefSerializer()


class InstanceSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField()


class ActivateRequestSerializer(serializers.Serializer):
    license_key = serializers.CharField(max_length=licenses.MAX_LICENSE_KEY_LENGTH)
    instance_name = serializers.CharField(max_length=licenses.MAX_INSTANCE_NAME_LENGTH)


class ValidateRequestSerializer(serializers.Serializer):
    license_key = serializers.CharField(max_length=licenses.MAX_LICENSE_KEY_LENGTH)
    instance_id = serializers.CharField(max_length=64, required=False, allow_blank=True)


class DeactivateRequestSerializer(serializers.Serializer):
    license_key = serializers.CharField(max_length=licenses.MAX_LICENSE_KEY_LENGTH)
    instance_id = serializers.CharField(max_length=64)


class ActivateResultSerializer(serializers.Serializer):
    activated = serializers.BooleanField()
    instance = InstanceSerializer()
    license = LicenseSerializer()


class ValidateResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    instance = InstanceSerializer(allow_null=True)
    license = LicenseSerializer()


class DeactivateResultSerializer(serializers.Serializer):
    deactivated = serializers.BooleanField()
    license = LicenseSerializer()


class LicenseErrorSerializer(serializers.Serializer):
    error = serializers.CharField(
        help_text="license_not_found, instance_not_found, activation_limit_reached, license_revoked, "
        "license_disabled, license_expired, invalid_request or rate_limited."
    )
    message = serializers.CharField()
    valid = serializers.BooleanField(required=False, help_text="false, with license_not_found.")
    license = LicenseSerializer(required=False, allow_null=True)
    fields = serializers.DictField(required=False, help_text="With invalid_request: the errors of each field.")


def license_data(license: License) -> dict:
    return {
        "status": licenses.license_status(license),
        "activation_limit": license.activation_limit,
        "activation_usage": license.activation_usage,
        "expires_at": license.expires_at.isoformat() if license.expires_at else None,
        "product": {"id": license.product_id, "name": license.product.name},
    }


def instance_data(instance: LicenseActivation) -> dict:
    return {"id": str(instance.instance_id), "name": instance.name, "created_at": instance.created_at.isoformat()}


ERRORS = dict.fromkeys((400, 404, 415, 422, 429), LicenseErrorSerializer)


def _no_store(response: Response) -> Response:
    response["Cache-Control"] = "no-store"
    return response


class LicenseApi(APIView):
    authentication_classes: list = []  # the key is the credential; no session, no CSRF
    parser_classes = [JSONParser, FormParser]
    request_serializer: type[serializers.Serializer]
    outcome = ""  # activated, valid or deactivated: false in every error answer

    def post(self, request):
        if client_rate_limited(request, scope="license-ip", limit=settings.LICENSE_API_RATE_PER_IP):
            return self._limited()
        try:
            payload = request.data
        except (exceptions.ParseError, exceptions.UnsupportedMediaType) as refused:
            body = {self.outcome: False, "error": "invalid_request", "message": str(refused.detail)}
            return _no_store(Response(body, status=refused.status_code))
        form = self.request_serializer(data=payload)
        if not form.is_valid():
            body = {"error": "invalid_request", "message": _("Some fields are invalid."), "fields": form.errors}
            return _no_store(Response({self.outcome: False, **body}, status=status.HTTP_400_BAD_REQUEST))
        data = form.validated_data
        key_bucket = fingerprint_secret(data["license_key"])[:32]
        if rate_limit_hit(
            scope="license-key", key=key_bucket, limit=settings.LICENSE_API_RATE_PER_KEY, window_seconds=3600
        ):
            return self._limited()
        try:
            return _no_store(self.answer(data))
        except licenses.LicenseError as refused:
            return _no_store(self._refused(refused))

    def answer(self, data: dict) -> Response:
        raise NotImplementedError

    def _refused(self, refused: licenses.LicenseError) -> Response:
        body = {self.outcome: False, "error": refused.code, "message": MESSAGES.get(refused.code, refused.code)}
        if isinstance(refused, licenses.LicenseNotFound):
            return Response({**body, "valid": False, "license": None}, status=status.HTTP_404_NOT_FOUND)
        body["license"] = license_data(refused.license) if refused.license is not None else None
        if isinstance(refused, licenses.InstanceNotFound):
            return Response(body, status=status.HTTP_404_NOT_FOUND)
        return Response(body, status=status.HTTP_422_UNPROCESSABLE_ENTITY)

    def _limited(self) -> Response:
        body = {self.outcome: False, "error": "rate_limited", "message": str(RATE_LIMITED_MESSAGE)}
        response = Response(body, status=status.HTTP_429_TOO_MANY_REQUESTS)
        response["Retry-After"] = str(retry_after_seconds())
        return _no_store(response)


@extend_schema(
    tags=["licenses"],
    request=ActivateRequestSerializer,
    responses={201: ActivateResultSerializer, 200: ActivateResultSerializer, **ERRORS},
    description="Activate a license key on a machine. 201 with the new instance; 200 with the existing one when "
    "this instance_name is active already; 422 activation_limit_reached, license_revoked, license_disabled or "
    "license_expired; 404 license_not_found (valid: false).",
)
class LicenseActivateApi(LicenseApi):
    request_serializer = ActivateRequestSerializer
    outcome = "activated"

    def answer(self, data: dict) -> Response:
        result = license_activate(license_key=data["license_key"], instance_name=data["instance_name"])
        body = {"activated": True, "instance": instance_data(result.instance), "license": license_data(result.license)}
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


@extend_schema(
    tags=["licenses"],
    request=ValidateRequestSerializer,
    responses={200: ValidateResultSerializer, **ERRORS},
    description="Whether a license key may be used now: valid is true when its status is active or inactive and, "
    "with instance_id, that instance is one of its live activations. 404 license_not_found (valid: false).",
)
class LicenseValidateApi(LicenseApi):
    request_serializer = ValidateRequestSerializer
    outcome = "valid"

    def answer(self, data: dict) -> Response:
        result = licenses.license_validate(license_key=data["license_key"], instance_id=data.get("instance_id"))
        instance = instance_data(result.instance) if result.instance is not None else None
        return Response({"valid": result.valid, "instance": instance, "license": license_data(result.license)})


@extend_schema(
    tags=["licenses"],
    request=DeactivateRequestSerializer,
    responses={200: DeactivateResultSerializer, **ERRORS},
    description="Free an instance's activation (again: the same answer). 404 license_not_found or instance_not_found.",
)
class LicenseDeactivateApi(LicenseApi):
    request_serializer = DeactivateRequestSerializer
    outcome = "deactivated"

    def answer(self, data: dict) -> Response:
        license, _instance = license_deactivate(license_key=data["license_key"], instance_id=data["instance_id"])
        return Response({"deactivated": True, "license": license_data(license)})


@extend_schema(exclude=True)
class ApiV1NotFound(APIView):
    """Any other path under /api/v1/, whatever the method: the JSON 404 of the API (a program's POST included)."""

    authentication_classes: list = []

    def _not_found(self, request, *args, **kwargs):
        raise exceptions.NotFound()

    get = post = put = patch = delete = _not_found
