import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.models import PaymentChannel
from payments.providers.base import PaymentError, WebhookRejected
from storefront.flow.webhooks import webhook_process

logger = logging.getLogger(__name__)

MAX_WEBHOOK_BYTES = 512 * 1024
# One answer for every notification that fails verification or cannot be read: what failed (a certificate
# host that refused or timed out, a bad signature, an unreadable body) is for the log, not for the sender.
REFUSED = {"code": "invalid_webhook", "message": "The notification could not be verified."}


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


@csrf_exempt
@require_POST
def channel_webhook(request, code: str):
    """A channel's notifications. Unverified, unreadable or oversized bodies get 400 and change nothing.

    A channel that is disabled still hears about its payments in flight; one that cannot be used (its
    credentials are missing) answers 503, so the provider delivers again later.
    """
    channel = PaymentChannel.objects.filter(code=code).first()
    if channel is None:
        return _error(404, "unknown_channel", "No such payment channel.")
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = MAX_WEBHOOK_BYTES + 1
    if length > MAX_WEBHOOK_BYTES:
        return _error(400, "payload_too_large", "The notification is too large.")
    try:
        outcome = webhook_process(channel=channel, payload=request.body, headers=dict(request.headers))
    except WebhookRejected as exc:
        logger.warning("%s webhook rejected: %s", channel.code, exc)
        response = JsonResponse({"error": REFUSED}, status=400)
        response._has_been_logged = True  # the line above says why; Django's "Bad Request" line would add nothing
        return response
    except PaymentError as exc:
        logger.warning("%s webhook not processed: %s", channel.code, type(exc).__name__)
        return _error(503, "unavailable", "Please deliver this notification again later.")
    return JsonResponse({"received": True, "outcome": outcome})


@csrf_exempt
@require_POST
def stripe_webhook(request):
    """The address Stripe was given before channels existed: the 'stripe' channel."""
    return channel_webhook(request, "stripe")
