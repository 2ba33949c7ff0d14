"""The shopper's licenses on the order page and in their account: each key's activations (machines), and freeing
one to move the key."""

import uuid

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from catalog.models import FulfilmentKind
from fulfillment.licenses import license_status, licenses_of_order
from fulfillment.models import License, LicenseActivation
from orders.selectors import order_get_by_token
from storefront.account_views import shopper_required
from storefront.accounts import signed_in_email
from storefront.flow.licenses import activation_free


def order_licenses_for_page(order) -> dict[int, list[dict]]:
    """The order's licenses by line id: status, usage, limit, expiry and live activations (no key)."""
    if not any(line.kind == FulfilmentKind.LICENSE_KEY for line in order.lines.all()):
        return {}  # no key, no query (the lines are the page's own, fetched with the order)
    return _for_page(licenses_of_order(order_id=order.pk))


def _for_page(found: list[License]) -> dict[int, list[dict]]:
    by_line: dict[int, list[dict]] = {}
    live = LicenseActivation.objects.filter(license__in=found, deactivated_at__isnull=True).order_by("id")
    activations: dict[int, list[LicenseActivation]] = {}
    for activation in live:
        activations.setdefault(activation.license_id, []).append(activation)
    for number, license in enumerate(found, start=1):
        by_line.setdefault(license.key.order_line_id, []).append(
            {
                "number": number,
                "status": license_status(license),
                "usage": license.activation_usage,
                "limit": license.activation_limit,
                "expires_at": license.expires_at,
                "activations": activations.get(license.pk, []),
                "product": license.product,
                "order": license.key.order_line.order,
            }
        )
    return by_line


@require_GET
@shopper_required
def account_licenses(request):
    """Every license of the signed-in shopper's orders, with its activations to free."""
    email = signed_in_email(request)
    found = list(
        License.objects.filter(key__order_line__order__email=email)
        .select_related("key__order_line__order", "product")
        .order_by("-key__order_line__order__created_at", "key__order_line_id", "key__unit_index")
    )
    rows = [row for line_rows in _for_page(found).values() for row in line_rows]
    return render(request, "storefront/account/licenses.html", {"licenses": rows})


@require_POST
@shopper_required
def account_activation_free(request):
    """Free one activation of a key of one of the signed-in shopper's orders."""
    email = signed_in_email(request)
    instance = request.POST.get("instance", "")
    activation = (
        LicenseActivation.objects.select_related("license__key")
        .filter(instance_id=instance, license__key__order_line__order__email=email)
        .first()
        if _is_uuid(instance)
        else None
    )
    if activation is None:
        raise Http404
    activation_free(license=activation.license, instance_id=activation.instance_id, actor="shopper:account")
    messages.success(request, _("The activation was freed: the key can be activated on another computer."))
    response = redirect("account-licenses")
    response.status_code = 303
    return response


@require_POST
def order_activation_free(request, token: str):
    """Free one machine's activation of a key of this order (post/redirect/get back to the order page)."""
    order = order_get_by_token(token=token)
    if order is None:
        raise Http404
    activation = (
        LicenseActivation.objects.select_related("license__key")
        .filter(instance_id=request.POST.get("instance", "")[:64] or None, license__key__order_line__order=order)
        .first()
        if _is_uuid(request.POST.get("instance", ""))
        else None
    )
    if activation is None:
        raise Http404
    activation_free(license=activation.license, instance_id=activation.instance_id, actor="shopper:order-page")
    messages.success(request, _("The activation was freed: the key can be activated on another computer."))
    response = redirect(reverse("order-detail", kwargs={"token": order.token}))
    response.status_code = 303
    return response


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return True
