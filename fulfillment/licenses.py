"""Licenses: sold keys the merchant's software activates, validates and deactivates (the license API).

A license is found by its key's HMAC fingerprint (fulfillment.crypto), never by decrypting a key. Its status is
derived, never stored: `revoked` follows the key (revoked by a refund or a dispute, at once), then `disabled` (the
merchant), `expired`, and `active` with at least one activation, `inactive` without. Activations are counted in
`License.activation_usage`, changed only under the license's row lock, so two machines racing for the last slot
cannot both get it (the check constraint on the count is the last line of defence).
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from fulfillment.crypto import fingerprint_secret
from fulfillment.models import KeyStatus, License, LicenseActivation, LicensePolicy
from orders.models import OrderLine

logger = logging.getLogger(__name__)

ACTIVE, INACTIVE, EXPIRED, REVOKED, DISABLED = "active", "inactive", "expired", "revoked", "disabled"
USABLE = (ACTIVE, INACTIVE)
MAX_LICENSE_KEY_LENGTH = 500
MAX_INSTANCE_NAME_LENGTH = 200


class LicenseError(Exception):
    """A license call refused; `code` is what the API answers in `error`."""

    code = "license_error"

    def __init__(self, license: License | None = None):
        super().__init__(self.code)
        self.license = license


class LicenseNotFound(LicenseError):
    code = "license_not_found"


class InstanceNotFound(LicenseError):
    code = "instance_not_found"


class ActivationLimitReached(LicenseError):
    code = "activation_limit_reached"


class LicenseNotUsable(LicenseError):
    """Activating a revoked, disabled or expired license: `code` is license_<status>."""

    def __init__(self, license: License, status: str):
        super().__init__(license)
        self.code = f"license_{status}"


def license_status(license: License, *, now=None) -> str:
    """The license's status now: revoked, disabled, expired, active or inactive (in that order of precedence)."""
    now = now or timezone.now()
    if license.key.status in (KeyStatus.REVOKED, KeyStatus.RETIRED):
        return REVOKED
    if license.disabled:
        return DISABLED
    if license.expires_at is not None and license.expires_at <= now:
        return EXPIRED
    return ACTIVE if license.activation_usage else INACTIVE


def policy_for_product(product) -> LicensePolicy | None:
    """The product's license policy or None (read once per product instance, as Product.keys_unlimited does)."""
    return getattr(product, "license_policy", None)


def licenses_create_for_line(*, line: OrderLine, policy: LicensePolicy, now, expires_at=None) -> int:
    """Track the line's sold keys that have no license yet (generated keys, or pool keys the policy tracks).

    They expire at `expires_at` when given (a subscription's paid period), else as the policy says. A pool key
    whose fingerprint another product's license holds already stays untracked (logged). Call inside the
    delivering transaction. Returns how many licenses were created.
    """
    keys = list(line.license_keys.filter(status=KeyStatus.SOLD, license__isnull=True).values_list("pk", "fingerprint"))
    if not keys:
        return 0
    if expires_at is None and policy.expires_after_days is not None:
        expires_at = now + timedelta(days=policy.expires_after_days)
    License.objects.bulk_create(
        [
            License(
                key_id=key_id,
                product_id=line.product_id,
                fingerprint=fingerprint,
                activation_limit=policy.activation_limit,
                expires_at=expires_at,
                created_at=now,
            )
            for key_id, fingerprint in keys
        ],
        ignore_conflicts=True,
    )
    made = License.objects.filter(key_id__in=[key_id for key_id, _ in keys]).count()
    if made < len(keys):
        logger.warning("order line %s: %d key(s) share a fingerprint with another license", line.pk, len(keys) - made)
    return made


def _subscription_licenses(subscription_id: int):
    return License.objects.filter(key__order_line__order__subscription_id=subscription_id)


def licenses_extend_for_subscription(*, subscription_id: int, until, other_than_line: int | None = None) -> int:
    """A subscription's period was paid (or given): the keys its first order delivered (those of lines other than
    `other_than_line`) work until `until`; how many. A license the merchant disabled stays disabled; a revoked
    key stays revoked (its status says so first)."""
    return _subscription_licenses(subscription_id).exclude(key__order_line_id=other_than_line).update(expires_at=until)


def licenses_expire_for_subscription(*, subscription_id: int, now) -> int:
    """A subscription ended: its keys stop working now (validation answers `expired`)."""
    still_valid = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    return _subscription_licenses(subscription_id).filter(still_valid).update(expires_at=now)


def license_find(*, license_key: str) -> License | None:
    """The license of this key, by its fingerprint, or None."""
    value = (license_key or "").strip()
    if not value or len(value) > MAX_LICENSE_KEY_LENGTH:
        return None
    return License.objects.select_related("key", "product").filter(fingerprint=fingerprint_secret(value)).first()


def _lock(license_id: int) -> License:
    return License.objects.select_for_update(of=("self",)).select_related("key", "product").get(pk=license_id)


def _instance_uuid(instance_id) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(instance_id))
    except (TypeError, ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class Activation:
    license: License
    instance: LicenseActivation
    created: bool


def license_activate(*, license_key: str, instance_name: str, now=None) -> Activation:
    """Activate the license on a machine named `instance_name`; the same name again returns its activation.

    Raises LicenseNotFound, LicenseNotUsable (revoked, disabled, expired) or ActivationLimitReached.
    """
    now = now or timezone.now()
    found = license_find(license_key=license_key)
    if found is None:
        raise LicenseNotFound()
    name = instance_name.strip()[:MAX_INSTANCE_NAME_LENGTH]
    with transaction.atomic():
        license = _lock(found.pk)
        status = license_status(license, now=now)
        if status not in USABLE:
            raise LicenseNotUsable(license, status)
        existing = license.activations.filter(name=name, deactivated_at__isnull=True).first()
        if existing is not None:
            return Activation(license=license, instance=existing, created=False)
        if license.activation_limit is not None and license.activation_usage >= license.activation_limit:
            raise ActivationLimitReached(license)
        instance = LicenseActivation.objects.create(license=license, name=name, created_at=now)
        license.activation_usage += 1
        license.save(update_fields=["activation_usage"])
    return Activation(license=license, instance=instance, created=True)


@dataclass(frozen=True)
class Validation:
    license: License
    status: str
    valid: bool
    instance: LicenseActivation | None


def license_validate(*, license_key: str, instance_id: str | None = None, now=None) -> Validation:
    """Whether the license is usable now (and, given `instance_id`, activated on that instance).

    Raises LicenseNotFound.
    """
    now = now or timezone.now()
    license = license_find(license_key=license_key)
    if license is None:
        raise LicenseNotFound()
    status = license_status(license, now=now)
    instance = None
    if instance_id not in (None, ""):
        wanted = _instance_uuid(instance_id)
        instance = (
            license.activations.filter(instance_id=wanted, deactivated_at__isnull=True).first() if wanted else None
        )
        valid = status in USABLE and instance is not None
    else:
        valid = status in USABLE
    return Validation(license=license, status=status, valid=valid, instance=instance)


def _deactivate(*, license_id: int, instance_id, actor: str, now) -> tuple[License, LicenseActivation]:
    wanted = _instance_uuid(instance_id)
    with transaction.atomic():
        license = _lock(license_id)
        instance = license.activations.filter(instance_id=wanted).first() if wanted else None
        if instance is None:
            raise InstanceNotFound(license)
        if instance.deactivated_at is None:  # a second call finds it done: the same answer, nothing counted
            LicenseActivation.objects.filter(pk=instance.pk).update(deactivated_at=now, deactivated_by=actor[:100])
            instance.deactivated_at, instance.deactivated_by = now, actor[:100]
            license.activation_usage -= 1
            license.save(update_fields=["activation_usage"])
    return license, instance


def license_deactivate(*, license_key: str, instance_id, actor: str = "license-api", now=None):
    """Free the instance's slot. Raises LicenseNotFound or InstanceNotFound. Returns (license, instance)."""
    now = now or timezone.now()
    license = license_find(license_key=license_key)
    if license is None:
        raise LicenseNotFound()
    return _deactivate(license_id=license.pk, instance_id=instance_id, actor=actor, now=now)


def activation_free(*, license: License, instance_id, actor: str, now=None) -> tuple[License, LicenseActivation]:
    """Free one activation of a license the caller found (the shopper's order page, the merchant)."""
    return _deactivate(license_id=license.pk, instance_id=instance_id, actor=actor, now=now or timezone.now())


def license_set_disabled(*, license_id: int, disabled: bool, actor: str) -> License:
    """The merchant disables a license (it validates false) or enables it again."""
    with transaction.atomic():
        license = _lock(license_id)
        if license.disabled != disabled:
            license.disabled = disabled
            license.save(update_fields=["disabled"])
    logger.info("%s %s license %s", actor, "disabled" if disabled else "enabled", license_id)
    return license


def license_reset_activations(*, license_id: int, actor: str, now=None) -> tuple[License, int]:
    """The merchant frees every activation of a license at once. Returns it and how many were freed."""
    now = now or timezone.now()
    with transaction.atomic():
        license = _lock(license_id)
        freed = license.activations.filter(deactivated_at__isnull=True).update(
            deactivated_at=now, deactivated_by=actor[:100]
        )
        license.activation_usage = 0
        license.save(update_fields=["activation_usage"])
    logger.info("%s reset %d activation(s) of license %s", actor, freed, license_id)
    return license, freed


def licenses_of_order(*, order_id: int) -> list[License]:
    """The order's licenses with their live activations, by line and unit (the order page)."""
    return list(
        License.objects.filter(key__order_line__order_id=order_id)
        .select_related("key", "product")
        .order_by("key__order_line_id", "key__unit_index")
    )
