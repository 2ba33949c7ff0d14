"""Shopper accounts: optional, keyed by the email address, signed in by a link mailed to it (a password may be set).

An account is Django's auth.User found by its email in any case, as fulfillment.services.membership_grant makes
them (an unusable password until the shopper sets one). It shows every order placed with that address, guest
orders included: opening the link proved the shopper reads that mailbox.

Staff never sign in here. An address that belongs to staff, a superuser or anyone holding a permission gets no link
and no password sign-in, so this door never leads to admin or the review queue, which keep their own login and
second factor.

A link carries a random token in its fragment (`/account/sign-in/link/#<token>`): browsers never send a fragment to
the server, so no access log, proxy or Referer header ever holds it; the page posts it. Only its SHA-256 is stored,
it works once and for ACCOUNT_LINK_MINUTES, and the worker that mails it makes it (the broker never sees it).
"""

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template import engines
from django.urls import reverse
from django.utils import timezone, translation

from orders.models import Order, Subscription
from storefront.models import ShopperSignInLink

LINKS_PER_ADDRESS_PER_HOUR = 5  # however many IPs ask: one mailbox is not flooded
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{40,64}$")


class SignInLinkInvalid(Exception):
    """The link is unknown, used already, expired, or its address may not sign in here."""


def email_normalise(email: str) -> str:
    """Addresses as orders keep them (orders.services.order_create): trimmed, lower case."""
    return email.strip().lower()


def is_shopper(user) -> bool:
    """A signed-in shopper: active, and neither staff, superuser nor holder of any permission."""
    return bool(
        user is not None
        and user.is_authenticated
        and user.is_active
        and not user.is_staff
        and not user.is_superuser
        and not user.get_all_permissions()
    )


def shopper_find(*, email: str):
    """The account of the address (any case), or None. The oldest when there are several, as membership_grant."""
    return get_user_model().objects.filter(email__iexact=email_normalise(email)).order_by("pk").first()


def _shopper_get_or_create(*, email: str):
    email = email_normalise(email)
    user = shopper_find(email=email)
    if user is not None:
        return user
    user_model = get_user_model()
    username = email if len(email) <= 150 else f"shopper-{hashlib.sha256(email.encode()).hexdigest()[:40]}"
    try:
        with transaction.atomic():
            return user_model.objects.create_user(username=username, email=email)  # unusable password
    except IntegrityError:  # the same address signing in twice at once, or a staff username equal to it
        user = shopper_find(email=email)
        if user is not None:
            return user
        return user_model.objects.create_user(username=f"shopper-{secrets.token_hex(8)}", email=email)


def signed_in_email(request) -> str:
    """The verified address of the signed-in shopper, or "" (guests, and staff signed in to admin)."""
    user = getattr(request, "user", None)
    return email_normalise(user.email) if is_shopper(user) and user.email else ""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign_in_link_url(token: str) -> str:
    return f"{settings.SITE_URL}{reverse('account-link')}#{token}"


def sign_in_link_create(*, email: str, now: datetime | None = None) -> str | None:
    """A new single-use sign-in token for the address, or None when it may not have one (staff, or too many
    links asked for it in the last hour). The token is returned once and kept only as its hash."""
    now = now or timezone.now()
    email = email_normalise(email)
    user = shopper_find(email=email)
    if user is not None and (user.is_staff or user.is_superuser or user.get_all_permissions()):
        return None
    if ShopperSignInLink.objects.filter(email=email, created_at__gt=now - timedelta(hours=1)).count() >= (
        LINKS_PER_ADDRESS_PER_HOUR
    ):
        return None
    token = secrets.token_urlsafe(32)
    ShopperSignInLink.objects.create(
        token_hash=_hash(token),
        email=email,
        created_at=now,
        expires_at=now + timedelta(minutes=settings.ACCOUNT_LINK_MINUTES),
    )
    return token


def sign_in_link_send(*, email: str, locale: str) -> bool:
    """Make a link for the address and mail it there, in the shopper's language. False when none was sent."""
    token = sign_in_link_create(email=email)
    if token is None:
        return False
    context = {"link_url": sign_in_link_url(token), "minutes": settings.ACCOUNT_LINK_MINUTES}
    with translation.override(locale or settings.LANGUAGE_CODE):
        text = engines["text"].get_template("account_sign_in.txt").render(context)
    subject, _, body = text.strip().partition("\n")
    send_mail(subject.strip(), body.strip() + "\n", settings.DEFAULT_FROM_EMAIL, [email_normalise(email)])
    return True


def sign_in_link_redeem(*, token: str, now: datetime | None = None):
    """The shopper's account for a valid link, created on first use; the link is spent either way.

    Raises SignInLinkInvalid for an unknown, used or expired link, or an address that belongs to staff."""
    now = now or timezone.now()
    if not _TOKEN.match(token or ""):
        raise SignInLinkInvalid("malformed")
    token_hash = _hash(token)
    with transaction.atomic():
        spent = ShopperSignInLink.objects.filter(token_hash=token_hash, used_at=None, expires_at__gt=now).update(
            used_at=now
        )
        if not spent:  # two tabs posting the same link: one wins, the other is told the link was used
            raise SignInLinkInvalid("unknown, used or expired")
        link = ShopperSignInLink.objects.get(token_hash=token_hash)
        user = _shopper_get_or_create(email=link.email)
    if not is_shopper(user):
        raise SignInLinkInvalid("not a shopper's address")
    return user


def password_sign_in(*, email: str, password: str):
    """The shopper whose address and password these are, or None. Staff are refused whatever their password;
    an unknown address costs the same hashing time as a known one."""
    user = shopper_find(email=email)
    if user is None or not is_shopper(user) or not user.has_usable_password():
        make_password(password)
        return None
    return user if user.check_password(password) else None


# Reads ------------------------------------------------------------------------------------------------------------


def account_orders(*, email: str):
    """Every order placed with the address, guest orders included, newest first."""
    return Order.objects.filter(email=email_normalise(email)).order_by("-created_at")


def account_subscriptions(*, email: str) -> list[Subscription]:
    return list(Subscription.objects.filter(email=email_normalise(email)).select_related("product"))
