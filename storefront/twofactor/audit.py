"""The sign-in record: every step of a staff or reviewer sign-in as a StaffSignIn row (shoppers are left out).

Django's user_logged_in / user_login_failed / user_logged_out signals (both login pages are Django's LoginView)
and the second-factor views call staff_sign_in_record; the receivers only pass the signal on. No password or
code is ever written: a refused attempt keeps the username that was typed, the address and the browser.
"""

import logging

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from storefront.models import StaffSignIn, StaffSignInKind
from storefront.ratelimit import client_ip
from storefront.twofactor.policy import second_factor_offered

STAFF_LOGIN_VIEWS = {"admin:login", "review:login"}

logger = logging.getLogger(__name__)


def staff_sign_in_record(*, kind: str, request=None, user=None, username: str = "") -> StaffSignIn:
    """Write one sign-in step; `username` is what was typed when there is no user (a refused password)."""
    meta = getattr(request, "META", {}) or {}
    entry = StaffSignIn.objects.create(
        user=user if user is not None and user.pk else None,
        username=(user.get_username() if user is not None else username)[:150],
        kind=kind,
        ip=client_ip(request) if request is not None and "REMOTE_ADDR" in meta else None,
        user_agent=meta.get("HTTP_USER_AGENT", "")[:300],
        path=(getattr(request, "path", "") or "")[:200],
    )
    if kind in (StaffSignInKind.PASSWORD_REFUSED, StaffSignInKind.SECOND_FACTOR_REFUSED):
        logger.warning("sign-in refused (%s) for %s from %s", kind, entry.username, entry.ip)
    return entry


def _at_a_staff_login(request) -> bool:
    match = getattr(request, "resolver_match", None)
    return match is not None and match.view_name in STAFF_LOGIN_VIEWS


# Staff and reviewers only: shoppers signing in to their accounts are not this record's business.


@receiver(user_logged_in, dispatch_uid="storefront.twofactor.audit.logged_in")
def _logged_in(sender, request, user, **kwargs):
    if second_factor_offered(user):
        staff_sign_in_record(kind=StaffSignInKind.PASSWORD_ACCEPTED, request=request, user=user)


@receiver(user_login_failed, dispatch_uid="storefront.twofactor.audit.login_failed")
def _login_failed(sender, credentials, request=None, **kwargs):
    if _at_a_staff_login(request):  # who it was is not known: what was typed at the admin or review login
        username = str(credentials.get("username", ""))
        staff_sign_in_record(kind=StaffSignInKind.PASSWORD_REFUSED, request=request, username=username)


@receiver(user_logged_out, dispatch_uid="storefront.twofactor.audit.logged_out")
def _logged_out(sender, request, user, **kwargs):
    if user is not None and second_factor_offered(user):
        staff_sign_in_record(kind=StaffSignInKind.SIGNED_OUT, request=request, user=user)
