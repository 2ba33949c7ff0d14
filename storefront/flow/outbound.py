"""Outbound webhooks: events sent to the merchant's endpoints, signed the Standard Webhooks way.

`outbound_emit` is called where something happens (inside its transaction); the delivery rows are written and the
sending task queued only once that transaction commits, so no request ever waits on an endpoint and nothing is sent
for a rollback. Each delivery is tried at once, then after 30 s, 2 min, 8 min ... (x4, at most a day apart) until it
is answered 2xx or three days have passed; every attempt is logged (admin: *Webhook deliveries*). A delivery that
fails for three days with no success of its endpoint meanwhile disables the endpoint and emails the merchants.
A beat job (`webhooks_send_due`, every minute) sends whatever is due, including deliveries whose task was lost.
"""

import base64
import json
import logging
import secrets
import time
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook
from urllib3.exceptions import HTTPError

from fulfillment.crypto import decrypt_secret
from storefront import safe_http
from storefront.flow.notify import notify_endpoint_disabled
from storefront.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

RETRY_FOR = timedelta(days=3)
FIRST_RETRY_SECONDS = 30
MAX_RETRY_DELAY = timedelta(hours=24)
LEASE = timedelta(minutes=2)  # how long a delivery being sent is kept from the sweeper
DUE_BATCH = 500


def retry_delay(attempts: int) -> timedelta:
    """How long after the n-th failed attempt the next one is made: 30 s, 2 min, 8 min, 32 min, ... at most a day."""
    return min(timedelta(seconds=FIRST_RETRY_SECONDS * 4 ** max(0, attempts - 1)), MAX_RETRY_DELAY)


def new_endpoint_secret() -> str:
    """A Standard Webhooks secret: whsec_ and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def outbound_emit(*, event: str, data: dict) -> None:
    """Send `event` with `data` (plain JSON, built now) to every enabled endpoint that chose it, once the
    caller's transaction commits. Never raises into the caller's story."""
    occurred = timezone.now()
    transaction.on_commit(lambda: _record(event=event, data=data, occurred=occurred), robust=True)


# Which events any enabled endpoint takes, kept in this process for SUBSCRIPTIONS_SECONDS (an endpoint saved
# here clears it at once, storefront.flow.events): an event nobody takes costs no query, the paid order's budget.
SUBSCRIPTIONS_SECONDS = 30
_subscriptions: dict = {"events": None, "until": 0.0}


def subscriptions_forget(**_signal) -> None:
    _subscriptions["events"] = None


def _anyone_takes(event: str) -> bool:
    if _subscriptions["events"] is None or time.monotonic() >= _subscriptions["until"]:
        taken: set[str] = set()
        for events in WebhookEndpoint.objects.filter(enabled=True).values_list("events", flat=True):
            taken.update(events or [])
        _subscriptions.update(events=taken, until=time.monotonic() + SUBSCRIPTIONS_SECONDS)
    return event in _subscriptions["events"]


def _record(*, event: str, data: dict, occurred: datetime) -> list[int]:
    if not _anyone_takes(event):
        return []
    endpoints = [e for e in WebhookEndpoint.objects.filter(enabled=True) if event in (e.events or [])]
    if not endpoints:
        return []
    now = timezone.now()
    payload = {"type": event, "timestamp": occurred.isoformat(), "data": data}
    created = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=endpoint,
            msg_id="msg_" + secrets.token_hex(16),
            event_type=event,
            payload=payload,
            next_attempt_at=now,
            created_at=now,
        )
        for endpoint in endpoints
    )
    ids = [delivery.pk for delivery in created]
    for delivery_id in ids:
        try:
            deliver_webhook.delay(delivery_id)
        except Exception:  # the broker away: the sweeper sends it within a minute
            logger.warning("webhook delivery %s could not be queued; the sweeper will send it", delivery_id)
    return ids


@shared_task(acks_late=True)
def deliver_webhook(delivery_id: int) -> str:
    """Make the delivery's next attempt if it is due. Idempotent: a delivery not due is left alone."""
    delivery = webhook_attempt(delivery_id=delivery_id)
    return delivery.status if delivery is not None else "busy"


@shared_task
def webhooks_send_due() -> int:
    """Beat job: queue every pending delivery that is due (retries, and first tries whose task was lost)."""
    due = list(
        WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now(), endpoint__enabled=True
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:DUE_BATCH]
    )
    for delivery_id in due:
        deliver_webhook.delay(delivery_id)
    return len(due)


def webhook_resend(*, delivery_id: int, actor: str) -> WebhookDelivery | None:
    """Staff send a delivery again now, whatever its state (same message id: receivers can tell a repeat)."""
    return webhook_attempt(delivery_id=delivery_id, actor=actor, manual=True)


def webhook_attempt(*, delivery_id: int, actor: str = "worker", manual: bool = False) -> WebhookDelivery | None:
    """Try the delivery once, outside any transaction, and log the attempt; schedule the next one or give up.

    The row is taken with SKIP LOCKED and leased for LEASE, so two workers never send it at the same time.
    Returns None when another worker holds it.
    """
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return None
        due = delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at and delivery.next_attempt_at <= now
        if not manual and (not due or not delivery.endpoint.enabled):
            return delivery
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=now + LEASE)
    status_code, error, elapsed_ms = _send(delivery=delivery, now=now)
    succeeded = status_code is not None and 200 <= status_code < 300
    return _after_attempt(
        delivery=delivery,
        now=now,
        status_code=status_code,
        error=error,
        elapsed_ms=elapsed_ms,
        succeeded=succeeded,
        actor=actor,
        manual=manual,
    )


def webhook_sign(*, secret: str, msg_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for this body: webhook-id, webhook-timestamp, webhook-signature."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp, data=body),
    }


def _send(*, delivery: WebhookDelivery, now: datetime) -> tuple[int | None, str, int]:
    body = json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False)
    headers = webhook_sign(
        secret=decrypt_secret(delivery.endpoint.secret_ciphertext), msg_id=delivery.msg_id, timestamp=now, body=body
    )
    headers |= {"content-type": "application/json", "user-agent": "Storefront-Webhooks/1"}
    started = time.perf_counter()
    try:
        answer = safe_http.post(
            delivery.endpoint.url,
            body=body.encode("utf-8"),
            headers=headers,
            timeout_seconds=settings.WEBHOOK_TIMEOUT_SECONDS,
        )
        status_code, error = answer.status, ""
    except safe_http.UnsafeUrl as exc:
        status_code, error = None, str(exc)
    except (HTTPError, OSError) as exc:
        status_code, error = None, type(exc).__name__
    elapsed_ms = round((time.perf_counter() - started) * 1000)
    if error:
        logger.warning("webhook delivery %s to endpoint %s failed: %s", delivery.pk, delivery.endpoint_id, error)
    return status_code, error[:200], elapsed_ms


def _after_attempt(
    *,
    delivery: WebhookDelivery,
    now: datetime,
    status_code: int | None,
    error: str,
    elapsed_ms: int,
    succeeded: bool,
    actor: str,
    manual: bool,
) -> WebhookDelivery:
    endpoint = delivery.endpoint
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery.pk)
        WebhookAttempt.objects.create(
            delivery=delivery,
            attempted_at=now,
            status_code=status_code,
            error=error if not succeeded else "",
            duration_ms=elapsed_ms,
            succeeded=succeeded,
            actor=actor[:100],
        )
        delivery.attempts += 1
        delivery.last_attempt_at, delivery.last_status_code = now, status_code
        if succeeded:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.SUCCEEDED, None
        elif delivery.status == DeliveryStatus.PENDING:
            give_up_at = delivery.created_at + RETRY_FOR
            if now >= give_up_at:
                delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            else:
                delivery.next_attempt_at = min(now + retry_delay(delivery.attempts), give_up_at)
        # else: a resend by hand of a delivery that was done failed again; its state stays as it was
        delivery.save(update_fields=["attempts", "last_attempt_at", "last_status_code", "status", "next_attempt_at"])
        if delivery.status == DeliveryStatus.FAILED and not manual:
            _disable_if_failing(endpoint=endpoint, since=delivery.created_at)
    return delivery


def _disable_if_failing(*, endpoint: WebhookEndpoint, since: datetime) -> None:
    """Disable an endpoint that answered nothing but failures for the three days a delivery was tried."""
    if WebhookAttempt.objects.filter(delivery__endpoint=endpoint, succeeded=True, attempted_at__gte=since).exists():
        return
    reason = f"no delivery succeeded since {since.isoformat(timespec='seconds')} (three days of retries)"
    if WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(enabled=False, disabled_reason=reason):
        logger.warning("webhook endpoint %s disabled: %s", endpoint.pk, reason)
        subscriptions_forget()
        notify_endpoint_disabled(endpoint_id=endpoint.pk, url=endpoint.url, reason=reason)
