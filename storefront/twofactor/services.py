"""Second-factor writes: enrol an authenticator app, check a code, replace the recovery codes.

Codes are checked through django_otp.verify_token, which locks the device row and applies django-otp's
throttling (each refusal doubles the wait before the next try), so a code cannot be guessed in bulk; a TOTP code
is accepted once (a replayed code is refused). Every outcome is written to the sign-in record.
"""

import re

from django.db import transaction
from django_otp import devices_for_user, verify_token
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from storefront.models import StaffSignInKind
from storefront.twofactor.audit import staff_sign_in_record

RECOVERY_CODES = 10
TOTP_CODE = re.compile(r"^\d{6}$")
APP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"


def _clean(token: str) -> str:
    return re.sub(r"[\s-]", "", token or "").lower()


def totp_device_pending(*, user) -> TOTPDevice:
    """The authenticator app being set up (not yet confirmed by a code); the same one until it is confirmed."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=APP_DEVICE_NAME, confirmed=False)


def second_factor_enrol(*, request, device: TOTPDevice, token: str) -> list[str] | None:
    """Confirm the app being set up with a code it shows; then make recovery codes and mark the session verified.

    Returns the new recovery codes (to be shown once), or None when the code is wrong.
    """
    user = request.user
    if device.user_id != user.pk or device.confirmed or not TOTP_CODE.match(_clean(token)):
        staff_sign_in_record(kind=StaffSignInKind.SECOND_FACTOR_REFUSED, request=request, user=user)
        return None
    if verify_token(user, device.persistent_id, _clean(token)) is None:
        staff_sign_in_record(kind=StaffSignInKind.SECOND_FACTOR_REFUSED, request=request, user=user)
        return None
    with transaction.atomic():
        TOTPDevice.objects.filter(pk=device.pk).update(confirmed=True)
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        codes = _recovery_codes_new(user=user)
    device.confirmed = True
    _signed_in_with(request, device)
    staff_sign_in_record(kind=StaffSignInKind.ENROLLED, request=request, user=user)
    return codes


def recovery_codes_replace(*, request) -> list[str]:
    """New recovery codes for a user signed in with their second factor (the caller checks), recorded."""
    codes = _recovery_codes_new(user=request.user)
    staff_sign_in_record(kind=StaffSignInKind.RECOVERY_CODES_REPLACED, request=request, user=request.user)
    return codes


def _recovery_codes_new(*, user) -> list[str]:
    """New single-use recovery codes for the user; every earlier one stops working. Returned for showing once."""
    with transaction.atomic():
        device, _ = StaticDevice.objects.get_or_create(
            user=user, name=RECOVERY_DEVICE_NAME, defaults={"confirmed": True}
        )
        device.token_set.all().delete()
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
        StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def second_factor_verify(*, request, token: str) -> bool:
    """Check a code from the user's app (6 digits) or one of their recovery codes, and mark the session verified."""
    user = request.user
    code = _clean(token)
    kind = StaticDevice if not TOTP_CODE.match(code) else TOTPDevice
    for device in devices_for_user(user):
        if isinstance(device, kind) and verify_token(user, device.persistent_id, code) is not None:
            _signed_in_with(request, device)
            used = StaffSignInKind.RECOVERY_CODE_USED if kind is StaticDevice else StaffSignInKind.VERIFIED
            staff_sign_in_record(kind=used, request=request, user=user)
            return True
    staff_sign_in_record(kind=StaffSignInKind.SECOND_FACTOR_REFUSED, request=request, user=user)
    return False


def _signed_in_with(request, device) -> None:
    """A new session key for the stronger sign-in (a session id seen before it is worth nothing after)."""
    request.session.cycle_key()
    otp_login(request, device)
