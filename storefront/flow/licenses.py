"""A license activated or deactivated (the public license API, the shopper's order page, the merchant API): the
change made by fulfillment.licenses, then the merchant's systems told (license.activated, license.deactivated)."""

from django.db import transaction
from django.utils import timezone

from fulfillment import licenses
from fulfillment.models import License, LicenseActivation
from storefront.flow.outbound import outbound_emit


def license_event_data(license: License, instance: LicenseActivation | None = None, *, now=None) -> dict:
    """What a license webhook says: the license (no key, nothing personal), its order's number and the instance."""
    data = {
        "license": {
            "id": license.pk,
            "status": licenses.license_status(license, now=now),
            "activation_limit": license.activation_limit,
            "activation_usage": license.activation_usage,
            "expires_at": license.expires_at.isoformat() if license.expires_at else None,
            "product": {"id": license.product_id, "name": license.product.name},
        },
        "order_number": license.key.order_line.order.number if license.key.order_line_id else None,
    }
    if instance is not None:
        data["instance"] = {
            "id": str(instance.instance_id),
            "name": instance.name,
            "created_at": instance.created_at.isoformat(),
        }
    return data


def license_activate(*, license_key: str, instance_name: str) -> licenses.Activation:
    """Activate a license on a machine (fulfillment.licenses.license_activate); a new activation is announced."""
    now = timezone.now()
    with transaction.atomic():
        result = licenses.license_activate(license_key=license_key, instance_name=instance_name, now=now)
        if result.created:
            outbound_emit(event="license.activated", data=license_event_data(result.license, result.instance, now=now))
    return result


def license_deactivate(*, license_key: str, instance_id, actor: str = "license-api"):
    """Free one machine's slot (by the license key); announced as license.deactivated."""
    now = timezone.now()
    with transaction.atomic():
        license, instance = licenses.license_deactivate(
            license_key=license_key, instance_id=instance_id, actor=actor, now=now
        )
        if instance.deactivated_at == now:  # freed by this call, not a repeat
            outbound_emit(event="license.deactivated", data=license_event_data(license, instance, now=now))
    return license, instance


def activation_free(*, license: License, instance_id, actor: str):
    """Free one machine's slot of a license the caller found (the shopper's order page); announced."""
    now = timezone.now()
    with transaction.atomic():
        license, instance = licenses.activation_free(license=license, instance_id=instance_id, actor=actor, now=now)
        if instance.deactivated_at == now:  # freed by this call, not a repeat
            outbound_emit(event="license.deactivated", data=license_event_data(license, instance, now=now))
    return license, instance
