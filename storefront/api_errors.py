"""Every API error is JSON of one shape: {"error": {"code", "message", "fields"?}}."""

from django.http import Http404, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import requires_csrf_token
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from orders.errors import CheckoutError


class ApiErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable and machine-readable, e.g. product_not_found, invalid.")
    message = serializers.CharField(help_text="For the shopper, in the request's language.")
    fields = serializers.DictField(required=False, help_text="With code 'invalid': the errors of each field.")
    order_url = serializers.CharField(
        required=False, help_text="With code 'order_not_payable': the order's page, where the shopper sees it."
    )


class ApiErrorSerializer(serializers.Serializer):
    error = ApiErrorBodySerializer()


def error_responses(*statuses: int) -> dict:
    """The error statuses an operation can answer, for extend_schema(responses=...): every one is ApiError."""
    return dict.fromkeys(statuses, ApiErrorSerializer)


class ApiError(exceptions.APIException):
    def __init__(self, code: str, message: str, http_status: int = status.HTTP_400_BAD_REQUEST, **extra: str):
        super().__init__(detail=message, code=code)
        self.status_code = http_status
        self.error_code = code
        self.extra = extra  # more for the client to act on, beside code and message (e.g. order_url)


def exception_handler(exc, context):
    if isinstance(exc, CheckoutError):
        return Response({"error": {"code": exc.code, "message": exc.message}}, status=400)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, Http404):
        body = {"code": "not_found", "message": _("Not found.")}
    elif isinstance(exc, ApiError):
        body = {"code": exc.error_code, "message": str(exc.detail), **exc.extra}
    elif isinstance(exc, exceptions.ValidationError):
        body = {"code": "invalid", "message": _("Some fields are invalid."), "fields": response.data}
    else:
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        detail = getattr(exc, "detail", str(exc))
        body = {"code": code if isinstance(code, str) else "error", "message": str(detail)}
    response.data = {"error": body}
    return response


@requires_csrf_token
def api_not_found(request, *args, **kwargs) -> JsonResponse:
    """Any path under /api/ that no endpoint matches: the same envelope as every other API error."""
    return JsonResponse({"error": {"code": "not_found", "message": _("Not found.")}}, status=404)
