"""The shop's own figures, read when Prometheus scrapes (storefront.metrics): each a query on an index, a few
rows, or a Redis command, so a scrape every 15 s costs the database next to nothing.

A part that cannot be read (PostgreSQL or Redis away) is left out of that scrape and counted in
`storefront_metrics_errors{part}`; the rest is still reported.
"""

import logging
from datetime import datetime

from django.conf import settings
from django.db.models import Count, F, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from catalog.models import FulfilmentKind
from catalog.selectors import product_list_for_sale
from orders.models import Order, OrderStatus
from payments.health import HEALTH_WINDOW, channel_health
from payments.models import PaymentChannel, WebhookEvent
from riskengine.models import ReviewCase, ReviewStatus
from storefront.celery import app as celery_app
from storefront.health import redis_client

logger = logging.getLogger(__name__)

# The statuses an order passes through and leaves: each is a short list on the (status, paid_at) index. The
# final ones (fulfilled, shipped, cancelled, refunded) only grow, and counting them would read every order.
OPEN_STATUSES = (
    OrderStatus.PENDING_PAYMENT,
    OrderStatus.PAID,
    OrderStatus.ON_HOLD,
    OrderStatus.AWAITING_STOCK,
    OrderStatus.AWAITING_SHIPMENT,
)
# kombu's Redis transport keeps a queue's messages of each priority step in its own list (queue + sep + step).
_KOMBU_PRIORITY_SEP = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (3, 6, 9)
_WINDOW = f"{int(HEALTH_WINDOW.total_seconds()) // 60}m"


def _seconds_since(moment: datetime | None, now: datetime) -> float:
    return 0.0 if moment is None else max(0.0, (now - moment).total_seconds())


class ShopCollector(Collector):
    """Gauges computed on each scrape (registered per scrape, never in the global registry)."""

    def collect(self):
        now = timezone.now()
        errors = GaugeMetricFamily(
            "storefront_metrics_errors",
            "1 for each part of the shop's figures this scrape could not read.",
            labels=["part"],
        )
        for part, read in (
            ("orders", self.orders),
            ("review_queue", self.review_queue),
            ("channels", self.channels),
            ("webhooks", self.webhooks),
            ("stock", self.stock),
            ("celery", self.celery_queues),
        ):
            try:
                yield from read(now)
            except Exception as exc:  # a part that cannot be read this time is reported as such, not as a 500
                logger.warning("metrics: %s could not be read (%s)", part, type(exc).__name__)
                errors.add_metric([part], 1)
        yield errors

    def orders(self, now):
        counts = dict(
            Order.objects.filter(status__in=OPEN_STATUSES)
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        family = GaugeMetricFamily(
            "storefront_orders",
            "Orders in each status an order passes through (not the final ones).",
            labels=["status"],
        )
        for status in OPEN_STATUSES:
            family.add_metric([str(status)], counts.get(status, 0))
        yield family

    def review_queue(self, now):
        queue = ReviewCase.objects.filter(status=ReviewStatus.OPEN).aggregate(n=Count("pk"), oldest=Min("created_at"))
        yield GaugeMetricFamily("storefront_review_queue_size", "Held orders waiting for a reviewer.", value=queue["n"])
        yield GaugeMetricFamily(
            "storefront_review_queue_oldest_age_seconds",
            "How long the oldest held order has waited for a reviewer (0 when none waits).",
            value=_seconds_since(queue["oldest"], now),
        )

    def channels(self, now):
        fields = ("pk", "code", "enabled", "failures_in_row", "breaker_open_until")
        channels = list(PaymentChannel.objects.order_by("pk").values(*fields))
        open_ = GaugeMetricFamily(
            "storefront_payment_channel_breaker_open",
            "1 while the channel's breaker is open (the router skips it).",
            labels=["channel"],
        )
        failures = GaugeMetricFamily(
            "storefront_payment_channel_failures_in_row", "Failed provider calls in a row.", labels=["channel"]
        )
        enabled = GaugeMetricFamily(
            "storefront_payment_channel_enabled", "1 when the channel is enabled in admin.", labels=["channel"]
        )
        for channel in channels:
            until = channel["breaker_open_until"]
            open_.add_metric([channel["code"]], int(until is not None and until > now))
            failures.add_metric([channel["code"]], channel["failures_in_row"])
            enabled.add_metric([channel["code"]], int(channel["enabled"]))
        yield from (open_, failures, enabled)
        health = channel_health(channel_ids=[c["pk"] for c in channels])  # {} while Redis is away
        calls = GaugeMetricFamily(
            f"storefront_provider_calls_last_{_WINDOW}",
            "Provider calls of the last 30 minutes by channel and outcome (ok: answered, a decline included).",
            labels=["channel", "outcome"],
        )
        latency = GaugeMetricFamily(
            f"storefront_provider_call_latency_average_seconds_last_{_WINDOW}",
            "Average provider call latency over the last 30 minutes, by channel.",
            labels=["channel"],
        )
        for channel in channels:
            figures = health.get(channel["pk"])
            if figures is None:
                continue
            by_outcome = {
                "ok": figures.calls - figures.failures,
                "error": figures.failures - figures.timeouts,
                "timeout": figures.timeouts,
            }
            for outcome, n in by_outcome.items():
                calls.add_metric([channel["code"], outcome], n)
            if figures.average_latency_ms is not None:
                latency.add_metric([channel["code"]], figures.average_latency_ms / 1000)
        yield from (calls, latency)

    def webhooks(self, now):
        """Time since each provider last sent a notification: a webhook endpoint that stopped receiving (a
        changed secret, a firewall) shows as a growing figure while orders still come in."""
        providers = sorted(set(PaymentChannel.objects.filter(enabled=True).values_list("provider", flat=True)))
        family = GaugeMetricFamily(
            "storefront_webhook_last_received_age_seconds",
            "Seconds since the newest notification from each provider of an enabled channel was recorded.",
            labels=["provider"],
        )
        for provider in providers:
            newest = WebhookEvent.objects.filter(provider=provider).order_by("-pk").values_list("received_at")[:1]
            received = next(iter(newest), (None,))[0]
            if received is not None:
                family.add_metric([provider], _seconds_since(received, now))
        yield family

    def stock(self, now):
        keys = product_list_for_sale().filter(kind=FulfilmentKind.LICENSE_KEY, shared_key_ciphertext__isnull=True)
        keys = keys.exclude(license_policy__key_source="generated")  # keys made at delivery never run low
        figures = keys.aggregate(
            low=Count("pk", filter=Q(keys_available__lt=F("low_stock_threshold"))),
            sold_out=Count("pk", filter=Q(keys_available__lte=0)),
        )
        yield GaugeMetricFamily(
            "storefront_products_low_stock",
            "License-key products on sale with fewer keys than their low-stock threshold (sold out included).",
            value=figures["low"],
        )
        yield GaugeMetricFamily(
            "storefront_products_sold_out", "License-key products on sale with no key left.", value=figures["sold_out"]
        )

    def celery_queues(self, now):
        """Tasks waiting in each queue of the broker (LLEN of its lists), and those taken by a worker but not yet
        acknowledged (acks_late: running, or lost with a worker and waiting to be redelivered)."""
        broker_url = settings.CELERY_BROKER_URL or ""
        if not broker_url.startswith(("redis://", "rediss://")):
            return
        queues = sorted({celery_app.conf.task_default_queue, *(q.name for q in celery_app.conf.task_queues or ())})
        client = redis_client(broker_url)
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
            for step in _KOMBU_PRIORITY_STEPS:
                pipe.llen(f"{queue}{_KOMBU_PRIORITY_SEP}{step}")
        pipe.hlen("unacked")
        lengths = pipe.execute()
        family = GaugeMetricFamily("storefront_celery_queue_length", "Tasks waiting in the broker.", labels=["queue"])
        per_queue = len(_KOMBU_PRIORITY_STEPS) + 1
        for index, queue in enumerate(queues):
            family.add_metric([queue], sum(lengths[index * per_queue : (index + 1) * per_queue]))
        yield family
        yield GaugeMetricFamily(
            "storefront_celery_unacked", "Tasks taken by a worker and not yet acknowledged.", value=lengths[-1]
        )
