"""Who needs a second factor, and the middleware that asks for it before any admin or review-queue page.

Everyone who can reach admin (staff) or the review queue may set one up, and once they have, they are asked for
it at every sign-in. Staff who may refund orders, export keys in clear or change payment channels must have one:
they cannot open an admin or review page until they have set it up and entered it (setting
STAFF_SECOND_FACTOR_REQUIRED; only the demo turns it off). The login and logout pages, and the second-factor
pages themselves, stay open so a user can always get through or out.
"""

from django.conf import settings
from django.http import HttpRequest
from django.shortcuts import redirect
from django.urls import NoReverseMatch, reverse
from django.utils.http import urlencode
from django_otp import user_has_device

# Permissions that can move money, leak keys or redirect payments: holders must use a second factor.
SENSITIVE_PERMISSIONS = (
    "orders.refund_order",
    "fulfillment.export_keys",
    "payments.add_paymentchannel",
    "payments.change_paymentchannel",
    "payments.delete_paymentchannel",
)
REVIEW_PERMISSION = "riskengine.review_orders"
GUARDED_NAMESPACES = {"admin", "review"}
OPEN_VIEWS = {"admin:login", "admin:logout", "review:login", "review:logout", "admin:jsi18n"}


def second_factor_required(user) -> bool:
    """Whether this user may not reach admin or the review queue without a second factor."""
    if not (user.is_authenticated and user.is_active):
        return False
    if not settings.STAFF_SECOND_FACTOR_REQUIRED:
        return False
    return user.is_superuser or any(user.has_perm(permission) for permission in SENSITIVE_PERMISSIONS)


def second_factor_offered(user) -> bool:
    """Whether this user reaches admin or the review queue, and so may set up a second factor."""
    return user.is_authenticated and user.is_active and (user.is_staff or user.has_perm(REVIEW_PERMISSION))


def is_verified(user) -> bool:
    return bool(getattr(user, "is_verified", None) and user.is_verified())


def _guarded(request: HttpRequest) -> bool:
    match = request.resolver_match
    if match is None or match.view_name in OPEN_VIEWS:
        return False
    return bool(GUARDED_NAMESPACES & set(match.namespaces)) or request.path.startswith(_admin_prefix())


def _admin_prefix() -> str:
    """Where admin lives ("/admin/"); a site without admin (a URL configuration of its own) guards nothing here."""
    try:
        return reverse("admin:index")
    except NoReverseMatch:
        return "\0"  # no path starts with it


class SecondFactorMiddleware:
    """Signed in but not verified: with a device, to the verify page; without one but required, to set-up.

    After django_otp's OTPMiddleware (request.user.is_verified) and the CSRF check (a forged POST is refused
    before it could be redirected anywhere).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not _guarded(request):  # first: a shopper's page never loads the session or the user for this
            return None
        user = request.user
        if not user.is_authenticated or is_verified(user):
            return None
        query = urlencode({"next": request.get_full_path()})
        if user_has_device(user):
            return redirect(f"{reverse('twofactor:verify')}?{query}")
        if second_factor_required(user):
            return redirect(f"{reverse('twofactor:setup')}?{query}")
        return None
