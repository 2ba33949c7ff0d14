import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.models import PaymentChannel
from payments.providers.base import PaymentError, WebhookRejected
from payments.services import webhook_process

logger = logging.getLogger(__name__)

MAX_WEBHOOK_BYTES = 512 * 1024


@csrf_exempt
@require_POST
def channel_webhook(request, code: str):
    """A channel's notifications. Unverified or oversized bodies get 400 and change nothing.

    A channel that is disabled still hears about its payments in flight; one that cannot be used (its
    credentials are missing) answers 503, so the provider delivers again later.
    """
    channel = PaymentChannel.objects.filter(code=code).first()
    if channel is None:
        return JsonResponse({"error": {"code": "unknown_channel"}}, status=404)
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_WEBHOOK_BYTES:
        return JsonResponse({"error": {"code": "payload_too_large"}}, status=400)
    try:
        outcome = webhook_process(channel=channel, payload=request.body, headers=dict(request.headers))
    except WebhookRejected as exc:
        logger.warning("%s webhook rejected: %s", channel.code, exc)
        return JsonResponse({"error": {"code": "invalid_webhook", "message": str(exc)}}, status=400)
    except PaymentError as exc:
        logger.warning("%s webhook not processed: %s", channel.code, type(exc).__name__)
        return JsonResponse({"error": {"code": "unavailable"}}, status=503)
    return JsonResponse({"received": True, "outcome": outcome})


@csrf_exempt
@require_POST
def stripe_webhook(request):
    """The address Stripe was given before channels existed: the 'stripe' channel."""
    return channel_webhook(request, "stripe")
