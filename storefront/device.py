"""A first-party device id: a random cookie, kept a year, read by checkout for the risk engine."""

import re
import secrets

from django.conf import settings

COOKIE = "sf_device"
_VALID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{16,64}$")


class DeviceIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        value = request.COOKIES.get(COOKIE, "")
        known = bool(_VALID.match(value))
        request.device_id = value if known else secrets.token_urlsafe(16)
        response = self.get_response(request)
        if not known and not request.path.startswith("/payments/"):
            response.set_cookie(
                COOKIE,
                request.device_id,
                max_age=365 * 24 * 3600,
                httponly=True,
                samesite="Lax",
                secure=not settings.DEBUG,
            )
        return response


def device_fingerprint(value: str) -> str:
    """The browser's light fingerprint (a hex SHA-256 computed by the checkout page), or ''."""
    value = (value or "").strip().lower()
    return value if _FINGERPRINT.match(value) else ""
