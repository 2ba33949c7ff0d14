import logging

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments.providers.base import WebhookRejected
from payments.services import webhook_process

logger = logging.getLogger(__name__)

MAX_WEBHOOK_BYTES = 512 * 1024


@csrf_exempt
@require_POST
def stripe_webhook(request):
    """Stripe notifications. Unverified or oversized bodies get 400 and change nothing."""
    if int(request.META.get("CONTENT_LENGTH") or 0) > MAX_WEBHOOK_BYTES:
        return JsonResponse({"error": {"code": "payload_too_large"}}, status=400)
    try:
        outcome = webhook_process(
            provider_name="stripe",
            payload=request.body,
            headers={"Stripe-Signature": request.headers.get("Stripe-Signature", "")},
        )
    except WebhookRejected as exc:
        logger.warning("stripe webhook rejected: %s", exc)
        return JsonResponse({"error": {"code": "invalid_webhook", "message": str(exc)}}, status=400)
    return JsonResponse({"received": True, "outcome": outcome})
