"""The second-factor pages: set up an authenticator app (QR code as SVG, recovery codes shown once) and verify.

Both need the password step done (a signed-in session); the middleware in policy.py sends users here.
"""

import qrcode
import qrcode.image.svg
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from django_otp import user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from storefront.twofactor.policy import is_verified, second_factor_offered, second_factor_required
from storefront.twofactor.services import (
    recovery_codes_replace,
    second_factor_enrol,
    second_factor_verify,
    totp_device_pending,
)


def _home(user) -> str:
    return reverse("admin:index") if user.is_staff else reverse("review:queue")


def _next(request) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return _home(request.user)


def _page(request, template: str, title: str, **context):
    logout = "admin:logout" if request.user.is_staff else "review:logout"
    context = {"title": title, "next": _next(request), "logout_url": reverse(logout), **context}
    response = render(request, template, context, status=context.pop("status", 200))
    response["Cache-Control"] = "no-store"  # recovery codes and the app's secret are never kept by a browser
    return response


def _signed_in_or_login(request):
    if not request.user.is_authenticated:
        login = "admin:login" if request.path.startswith(reverse("admin:index")) else "review:login"
        return redirect_to_login(request.get_full_path(), login_url=reverse(login))
    if not second_factor_offered(request.user):
        raise PermissionDenied
    return None


def _qr_svg(device: TOTPDevice) -> str:
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    return mark_safe(image.to_string(encoding="unicode"))  # our own drawing of our own URL: no outside markup


@never_cache
@require_http_methods(["GET", "POST"])
def setup(request):
    """Set up an authenticator app, or (with one set up and verified) make new recovery codes."""
    refused = _signed_in_or_login(request)
    if refused:
        return refused
    user = request.user
    if user_has_device(user):
        if not is_verified(user):  # a stolen password must not be enough to replace the second factor
            return redirect(f"{reverse('twofactor:verify')}?{urlencode({'next': reverse('twofactor:setup')})}")
        codes = recovery_codes_replace(request=request) if request.POST.get("action") == "codes" else None
        return _page(request, "twofactor/enrolled.html", _("Two-factor sign-in"), codes=codes)
    device = totp_device_pending(user=user)
    error = ""
    if request.method == "POST":
        codes = second_factor_enrol(request=request, device=device, token=request.POST.get("token", ""))
        if codes is not None:
            return _page(request, "twofactor/enrolled.html", _("Two-factor sign-in"), codes=codes, fresh_device=True)
        error = _("That code is not the one the app shows now. Check the app and the time on your phone.")
    return _page(
        request,
        "twofactor/setup.html",
        _("Set up two-factor sign-in"),
        qr_svg=_qr_svg(device),
        secret=device.config_url.split("secret=", 1)[1].split("&", 1)[0],
        required=second_factor_required(user),
        error=error,
        status=400 if error else 200,
    )


@never_cache
@require_http_methods(["GET", "POST"])
def verify(request):
    """Ask for the code of the user's app, or a recovery code, once per sign-in."""
    refused = _signed_in_or_login(request)
    if refused:
        return refused
    user = request.user
    if is_verified(user):
        return redirect(_next(request))
    if not user_has_device(user):
        return redirect(f"{reverse('twofactor:setup')}?{urlencode({'next': _next(request)})}")
    error = ""
    if request.method == "POST":
        if second_factor_verify(request=request, token=request.POST.get("token", "")):
            return redirect(_next(request))
        error = _("That code was not accepted. Wait for the next code, or use a recovery code.")
    return _page(request, "twofactor/verify.html", _("Enter your code"), error=error, status=400 if error else 200)
