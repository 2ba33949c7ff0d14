"""The shopper's subscription page, reached by the unguessable link in every subscription email and on the order
page: see it and its past renewals, cancel at period end (with an optional reason), resume, change the card."""

import json
import logging

from django.contrib import messages
from django.db import transaction
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from orders.models import Subscription, SubscriptionStatus
from orders.subscriptions import (
    subscription_cancel_at_period_end,
    subscription_lock,
    subscription_orders,
    subscription_resume,
)
from payments.models import PaymentChannel, Provider
from payments.providers.base import PaymentError
from payments.selectors import stripe_js_url
from storefront.flow.renewals import subscription_update_card
from storefront.ratelimit import RATE_LIMITED_MESSAGE, client_rate_limited

logger = logging.getLogger(__name__)


def _subscription(token: str) -> Subscription:
    subscription = Subscription.objects.select_related("product").filter(token=token).first() if token else None
    if subscription is None:
        raise Http404
    return subscription


@require_GET
def subscription_manage(request, token: str):
    subscription = _subscription(token)
    context = {
        "subscription": subscription,
        "orders": subscription_orders(subscription),
        "live": subscription.status != SubscriptionStatus.CANCELLED,
    }
    channel = PaymentChannel.objects.filter(code=subscription.channel_code, provider=Provider.STRIPE).first()
    if channel is not None and context["live"]:
        context["stripe_js_url"] = stripe_js_url(channel)
        context["stripe_publishable_key"] = channel.credential("public_key")
    return render(request, "storefront/subscription.html", context)


@require_POST
def subscription_change(request, token: str):
    """Cancel at period end or resume (post/redirect/get)."""
    subscription = _subscription(token)
    action = request.POST.get("action", "")
    with transaction.atomic():
        locked = subscription_lock(subscription.pk)
        if action == "cancel":
            subscription_cancel_at_period_end(
                subscription=locked, actor="shopper", reason=request.POST.get("reason", "")[:300]
            )
            messages.success(request, _("Your subscription will end when this period does. Nothing more is charged."))
        elif action == "resume":
            subscription_resume(subscription=locked, actor="shopper")
            messages.success(request, _("Your subscription continues."))
        else:
            messages.error(request, _("Nothing was changed."))
    response = redirect("subscription-manage", token=token)
    response.status_code = 303
    return response


@require_POST
def subscription_card(request, token: str):
    """A new card (a Stripe.js token) for the coming renewals; a past-due renewal is tried with it at once."""
    subscription = _subscription(token)
    if client_rate_limited(request, scope="subscription-card", limit=20):
        return JsonResponse({"error": {"message": str(RATE_LIMITED_MESSAGE)}}, status=429)
    try:
        body = json.loads(request.body or b"{}")
        card_token = str(body.get("card_token", ""))[:100] if isinstance(body, dict) else ""
    except ValueError:
        card_token = ""
    if not card_token or subscription.status == SubscriptionStatus.CANCELLED:
        return JsonResponse({"error": {"message": _("The card could not be read; please enter it again.")}}, status=400)
    try:
        subscription_update_card(subscription=subscription, card_token=card_token, actor="shopper")
    except PaymentError as exc:
        return JsonResponse({"error": {"message": str(exc)}}, status=402)
    return JsonResponse({"updated": True})
