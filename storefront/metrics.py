"""Prometheus metrics at /metrics: the web requests, and the shop's own figures read at scrape time.

Access: `Authorization: Bearer <METRICS_TOKEN>`. A wrong or missing token is 403; with METRICS_TOKEN unset the
page does not exist (404), except with DEBUG on (the demo, the tests), where it is open. Like the probes it is
answered before ALLOWED_HOSTS and the HTTPS redirect (Prometheus asks http://<container>:8000/metrics).

What is measured where:
- `MetricsMiddleware`: every request by view (the URL pattern's name, never the path: order pages carry their
  secret token in it), method and status, with a latency histogram.
- Signals, counted after the transaction commits: payment-to-delivery seconds when an order's digital goods
  are delivered (fulfillment.signals.order_delivered), and each risk decision by stage and band.
- `ShopCollector`, at scrape time, a handful of indexed queries and two Redis commands (storefront.metrics_shop).

Several processes (gunicorn's workers, the Celery worker's children) each count their own. Set
PROMETHEUS_MULTIPROC_DIR to a folder (best on a tmpfs emptied at boot; deploy/gunicorn.conf.py creates it): every
process writes its counts there and a scrape adds them up, those of processes that ended included, so totals never
go back (prometheus_client's multiprocess mode; this module keeps no live gauge in it). Deliveries and risk
decisions made in the Celery worker count only when it writes into the same folder (same host). Without it, each
scrape sees the one process that answered it.
"""

import hmac
import os
import time
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from fulfillment.signals import order_delivered
from payments.signals import webhook_received
from riskengine.models import RiskAssessment
from storefront.metrics_shop import ShopCollector

METRICS_PATH = "/metrics"
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # every process of the shop (web, worker, beat, commands) writes there
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "storefront_http_requests",
    "HTTP requests answered, by view (URL pattern name), method and status.",
    ["view", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "storefront_http_request_duration_seconds",
    "Time to answer an HTTP request, by view (URL pattern name) and method.",
    ["view", "method"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
PAYMENT_TO_DELIVERY_SECONDS = Histogram(
    "storefront_payment_to_delivery_seconds",
    "From an order's payment to the delivery of all its digital goods (waiting for stock included).",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600, 3 * 24 * 3600),
)
WEBHOOK_LAG_SECONDS = Histogram(
    "storefront_webhook_lag_seconds",
    "From the moment a provider made a notification to the moment it reached the shop, by provider.",
    ["provider"],
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600),
)
RISK_DECISIONS = Counter(
    "storefront_risk_decisions",
    "Risk assessments stored, by stage (pre_payment, paid) and decision band (approve, review, decline).",
    ["stage", "decision"],
)


def view_label(request: HttpRequest) -> str:
    """The matched URL pattern's name with its namespace ("admin:index"), "unmatched" for a path no pattern
    matched (404s, redirects made before routing): a bounded set, and no token from a path."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return match.view_name or "unnamed"


class MetricsMiddleware:
    """Answers /metrics, and counts and times every other request. Placed after the probes (not counted)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info.rstrip("/") == METRICS_PATH and request.method in ("GET", "HEAD"):
            return metrics_view(request)
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        view = view_label(request)
        method = request.method if request.method in _METHODS else "other"
        REQUESTS.labels(view=view, method=method, status=str(response.status_code)).inc()
        REQUEST_SECONDS.labels(view=view, method=method).observe(elapsed)
        return response


def metrics_access(request: HttpRequest) -> int | None:
    """None when the request may read the metrics, else the status to answer (404 disabled, 403 refused)."""
    token = getattr(settings, "METRICS_TOKEN", "")
    if not token:
        return None if settings.DEBUG else 404
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return 403
    return None


def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = metrics_access(request)
    if refused is not None:
        response = HttpResponse(status=refused)
    else:
        response = HttpResponse(generate_latest(scrape_source()), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response


class _Chain:
    """What a scrape reads: the counters of every process (or of this one) and the shop's figures."""

    def __init__(self, sources: Iterable[Collector | CollectorRegistry]):
        self.sources = list(sources)

    def collect(self):
        for source in self.sources:
            yield from source.collect()


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def scrape_source() -> _Chain:
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return _Chain([registry, ShopCollector()])
    return _Chain([REGISTRY, ShopCollector()])


# --- counted as things happen, once their transaction commits ------------------------------------------------


def _order_delivered(sender, *, order, delivered_at, **kwargs) -> None:
    if order.paid_at is None:
        return
    seconds = max(0.0, (delivered_at - order.paid_at).total_seconds())
    transaction.on_commit(lambda: PAYMENT_TO_DELIVERY_SECONDS.observe(seconds))


def _risk_assessed(sender, *, instance: RiskAssessment, created: bool, raw: bool = False, **kwargs) -> None:
    if not created or raw:
        return
    child = RISK_DECISIONS.labels(stage=instance.stage, decision=instance.decision)
    transaction.on_commit(child.inc)


def _webhook_received(sender, *, provider: str, sent_at, **kwargs) -> None:
    if sent_at is not None:
        WEBHOOK_LAG_SECONDS.labels(provider=provider).observe(max(0.0, (timezone.now() - sent_at).total_seconds()))


def metrics_connect_signals() -> None:
    """Connected once, in StorefrontConfig.ready (every process: web and worker)."""
    webhook_received.connect(_webhook_received, dispatch_uid="storefront.metrics.webhook_received")
    order_delivered.connect(_order_delivered, dispatch_uid="storefront.metrics.order_delivered")
    post_save.connect(_risk_assessed, sender=RiskAssessment, dispatch_uid="storefront.metrics.risk_assessed")
