"""Drive the real shop through the simulated month, in simulated time.

Every event runs at its own moment (time-machine moves the clock, so timezone.now(), time.time(), the
velocity counters in Redis, the database fallback and the webhook signature checks all see it):

- checkout: orders.services.checkout_create_order, with the shopper's IP, user agent and device;
- each payment attempt: the pre-payment screen (riskengine.services.risk_check_before_payment) as
  payments.services.payment_open_for_order runs it, then a Payment row as the provider call would leave it
  (as tests/load/scenarios.py makes them; keys are not reserved first, delivery takes them from the pool),
  then Stripe's signed payment_intent.succeeded or .payment_failed through payments.services.webhook_process,
  so the paid-order assessment, the hold or the refund, and the delivery of keys (Celery eager) happen as in
  production;
- a held order: the simulated reviewer claims it and approves or rejects it through riskengine.review,
  after the delay the population drew; the review deadline is swept as beat sweeps it;
- feedback: radar.early_fraud_warning.created and charge.dispute.created through webhook_process.

Nothing leaves the machine: the Stripe API is answered here (a refund is accepted at once; any other call
fails loudly), shopper emails are not rendered or sent (they carry no risk signal and cost a tenth of the
run), and the velocity counters use a prefix of their own, deleted after.
"""

import heapq
import logging
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from unittest import mock

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import override_settings

from catalog.models import FulfilmentKind, Product
from devtools.simulate import events
from devtools.simulate.records import CATALOG, SimOrder
from fulfillment.keys import keys_add_to_pool, keys_stock
from orders.cart import CartLine
from orders.errors import CheckoutError
from orders.models import Order, OrderStatus
from payments.models import Payment, PaymentChannel
from payments.providers.base import ProviderUnavailable, RefundResult
from payments.providers.stripe import StripeProvider
from riskengine import velocity
from riskengine.models import ListKind, ReviewCase, ReviewStatus, RiskDecision, RiskSettings
from riskengine.review import review_claim
from riskengine.services import risk_check_before_payment
from storefront.celery import app
from storefront.flow.checkout import checkout_create_order
from storefront.flow.review import review_approve, review_expire_overdue, review_reject
from storefront.flow.webhooks import webhook_process

logger = logging.getLogger(__name__)

USER_AGENT = "risk-simulate/1 (simulated shopper)"
REVIEWER = "risk-simulator"
REVIEW_BLOCKLIST = [ListKind.CARD, ListKind.DEVICE, ListKind.EMAIL]
# Beat sweeps the review deadline every ten minutes: at most this long after a held order is overdue.
SWEEP_AFTER = timedelta(minutes=10)


class SimulationError(Exception):
    """The simulation cannot run here (no time-machine, inside a transaction, no webhook secret)."""


@dataclass
class Trace:
    """What the replay saw happen to one simulated order (the rest is read from the database after)."""

    sim: SimOrder
    order_id: int | None = None
    refused: str = ""  # checkout refused it (an error code)
    blocked: bool = False  # the pre-payment screen refused a payment
    payments: int = 0  # payments opened (each screened first, each settled by a webhook)
    intent: str = ""  # the PaymentIntent that succeeded, and its charge
    charge: str = ""
    feedback_sent: list[str] = field(default_factory=list)
    feedback_skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextmanager
def simulation_environment():
    """Celery eager, no shopper email, Stripe answered locally, velocity counters under a prefix of their own.

    Commits skip the wait for the disk (PostgreSQL's synchronous_commit, for this session only): the
    database is a throwaway, and a month of orders is some 300,000 commits.
    """

    saved = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    prefix = f"{settings.RISK_VELOCITY_PREFIX}:sim{secrets.token_hex(4)}"
    email = "django.core.mail.backends.dummy.EmailBackend"
    task_log = logging.getLogger("celery.app.trace")  # a line per eager task: a month of them
    task_log_level = task_log.level
    task_log.setLevel(logging.WARNING)
    _synchronous_commit("off")
    try:
        with (
            # every write seen by the very next order, as the simulated clock runs far faster than the real one
            override_settings(EMAIL_BACKEND=email, RISK_VELOCITY_PREFIX=prefix, RISK_CONFIG_RECHECK_SECONDS=0),
            mock.patch("orders.emails.order_email_send", _email_skipped),
            _stripe_answered_here(),
            _velocity_redis_patient(),
        ):
            yield
    finally:
        app.conf.task_always_eager, app.conf.task_eager_propagates = saved
        task_log.setLevel(task_log_level)
        _synchronous_commit("DEFAULT")
        _velocity_keys_delete(prefix)


def _email_skipped(*, order: Order, template: str) -> None:
    """orders.emails.order_email_send during a simulation: nobody reads the mail of simulated shoppers."""


def _synchronous_commit(value: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET synchronous_commit TO {value}")


@contextmanager
def _stripe_answered_here():
    """Every StripeProvider call that would go over the network answers here: refunds are accepted, the rest
    (which the replay never needs: its events carry the charge) fail as if Stripe were unreachable."""
    refunds = iter(range(1, 10**9))

    def refund(self, *, ref, capture_ref, amount, currency, idempotency_key):
        return RefundResult(ref=f"re_sim_{next(refunds)}", amount=amount, status="succeeded")

    def unreachable(self, *args, **kwargs):
        raise ProviderUnavailable("simulated Stripe: no network calls during a simulation")

    calls = dict.fromkeys(("create_payment", "capture", "fetch_payment", "recent_payments", "submit_dispute_evidence"))
    with mock.patch.multiple(StripeProvider, refund=refund, **{name: unreachable for name in calls}):
        yield


@contextmanager
def _velocity_redis_patient():
    """The velocity counters' Redis client with seconds, not the production 50 ms, to answer: on a busy machine
    a slow answer would switch the engine to the database counts for ten seconds of wall clock, a different
    stretch of the month each run, and the same seed would not give the same figures."""
    import redis

    if not settings.REDIS_URL:
        yield
        return
    patient = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5, socket_timeout=5)
    with mock.patch.object(velocity, "_client", patient), mock.patch.object(velocity, "_down_until", {}):
        yield


def _velocity_keys_delete(prefix: str) -> None:
    import redis

    if not settings.REDIS_URL:
        return
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    except redis.RedisError:
        logger.warning("simulation: could not delete the velocity counters under %s", prefix)


def catalog_stock(population: list[SimOrder], *, tag: str) -> dict[str, Product]:
    """The simulated products, with keys enough for every unit the month asks for (and some over)."""
    wanted: dict[str, int] = {}
    for order in population:
        wanted[order.product] = wanted.get(order.product, 0) + order.quantity
    products = {}
    for item in CATALOG:
        product, _ = Product.objects.update_or_create(
            slug=item.slug,
            defaults={
                "name": item.name,
                "kind": FulfilmentKind.LICENSE_KEY,
                "price_amount": item.price,
                "currency": "USD",
                "max_per_order": 5,
                "is_active": True,
                "high_risk": item.high_risk,
                "low_stock_threshold": 0,
            },
        )
        short = round(wanted.get(item.slug, 0) * 1.2) + 20 - keys_stock(product)
        if short > 0:
            keys_add_to_pool(
                product=product, secrets_=[f"SIM-{tag}-{item.slug}-{i:06d}" for i in range(short)], actor=REVIEWER
            )
        products[item.slug] = product
    return products


class Replay:
    """The month as a queue of timed events (checkouts, payment attempts, feedback; reviews and the review
    deadline as holds create them), handled in time order with the clock at each event's moment."""

    def __init__(self, population: list[SimOrder], *, travel):
        self._travel = travel
        self.traces = [Trace(sim=sim) for sim in population]
        self.tag = secrets.token_hex(3)
        self.channel = PaymentChannel.objects.get(code="stripe")
        self.secret = self.channel.credential("webhook")
        if not self.secret:
            raise SimulationError(f"the stripe channel has no webhook secret ({self.channel.webhook_env} is not set)")
        self.reviewer, _ = get_user_model().objects.get_or_create(username=REVIEWER)
        self.review_deadline = timedelta(hours=RiskSettings.current().review_deadline_hours)
        self._queue: list[tuple[datetime, int, str, int, int]] = []
        self._seq = 0
        self._ids = 0

    def run(self) -> list[Trace]:
        if not self.traces:
            return []
        self.products = catalog_stock([t.sim for t in self.traces], tag=self.tag)
        for i, trace in enumerate(self.traces):
            sim = trace.sim
            self._push(sim.at, "checkout", i)
            for j, attempt in enumerate(sim.attempts):
                self._push(attempt.at, "attempt", i, j)
            for k, feedback in enumerate(sim.feedback):
                self._push(feedback.at, "feedback", i, k)
        handlers = {
            "checkout": self._checkout,
            "attempt": self._attempt,
            "feedback": self._feedback,
            "review": self._review,
            "expire_reviews": self._expire_reviews,
        }
        with self._travel(self._queue[0][0], tick=False) as clock:
            while self._queue:
                at, _, kind, i, j = heapq.heappop(self._queue)
                clock.move_to(at)
                try:
                    handlers[kind](i, j)
                except Exception as exc:  # recorded and reported: one broken order must not hide the month
                    logger.exception("simulation: %s of order %s failed", kind, i)
                    if i >= 0:
                        self.traces[i].errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:300])
        return self.traces

    def _push(self, at: datetime, kind: str, i: int, j: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, i, j))

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}_sim{self.tag}_{self._ids}"

    def _deliver(self, event_type: str, obj: dict) -> str:
        event = events.stripe_event(event_id=self._id("evt"), event_type=event_type, obj=obj)
        payload, headers = events.stripe_signed(event, secret=self.secret)
        return webhook_process(channel=self.channel, payload=payload, headers=headers)

    # --- the shopper ---------------------------------------------------------------------------------------

    def _checkout(self, i: int, _: int) -> None:
        trace = self.traces[i]
        sim = trace.sim
        try:
            order = checkout_create_order(
                lines=[CartLine(product=self.products[sim.product], quantity=sim.quantity)],
                email=sim.email,
                shipping=None,
                locale="en",
                purchase_ip=sim.ip,
                user_agent=USER_AGENT,
                device_id=sim.device_id,
            )
        except CheckoutError as exc:
            trace.refused = exc.code
            return
        trace.order_id = order.pk

    def _attempt(self, i: int, j: int) -> None:
        """One try to pay, the way payment_open_for_order opens it and Stripe's webhook settles it."""
        trace = self.traces[i]
        if trace.order_id is None or trace.blocked:
            return
        order = Order.objects.get(pk=trace.order_id)
        if order.status != OrderStatus.PENDING_PAYMENT:
            return
        if risk_check_before_payment(order=order).decision == RiskDecision.DECLINE:
            trace.blocked = True
            return
        sim, attempt = trace.sim, trace.sim.attempts[j]
        intent, charge = self._id("pi"), self._id("ch")
        trace.payments += 1
        Payment.objects.create(
            order=order,
            channel=self.channel,
            provider="stripe",
            provider_ref=intent,
            amount=order.total_amount,
            currency=order.currency,
        )
        common = {"intent": intent, "charge": charge, "order_number": order.number, "amount": order.total_amount}
        if not attempt.succeeds:
            obj = events.intent_failed(
                **common,
                currency=order.currency,
                card=attempt.card,
                card_country=attempt.card_country,
                code=attempt.decline_code,
            )
            self._deliver("payment_intent.payment_failed", obj)
            return
        obj = events.intent_succeeded(
            **common,
            currency=order.currency,
            card=attempt.card,
            card_country=attempt.card_country,
            billing_country=sim.billing_country,
            risk_level=sim.radar_level,
            risk_score=sim.radar_score,
        )
        if self._deliver("payment_intent.succeeded", obj) == "applied":
            trace.intent, trace.charge = intent, charge
        held = ReviewCase.objects.filter(order_id=order.pk, status=ReviewStatus.OPEN).exists()
        if held:
            self._push(attempt.at + sim.review.delay, "review", i)
            self._push(attempt.at + self.review_deadline + SWEEP_AFTER, "expire_reviews", i)

    # --- staff and the card networks ----------------------------------------------------------------------

    def _review(self, i: int, _: int) -> None:
        trace = self.traces[i]
        case = ReviewCase.objects.filter(order_id=trace.order_id).first()
        if case is None or case.status != ReviewStatus.OPEN:
            return  # expired or refunded meanwhile
        review_claim(case_id=case.pk, user=self.reviewer)
        if trace.sim.review.approve:
            review_approve(case_id=case.pk, user=self.reviewer, note="Simulated reviewer: looks legitimate.")
        else:
            review_reject(
                case_id=case.pk, user=self.reviewer, note="Simulated reviewer: fraud.", blocklist=REVIEW_BLOCKLIST
            )

    def _feedback(self, i: int, k: int) -> None:
        trace = self.traces[i]
        feedback = trace.sim.feedback[k]
        if not trace.intent:
            trace.feedback_skipped.append(f"{feedback.kind}: never paid")
            return
        order = Order.objects.get(pk=trace.order_id)
        if feedback.kind == "early_fraud_warning":
            obj = events.early_fraud_warning(
                warning_id=self._id("issfr"), intent=trace.intent, charge=trace.charge, fraud_type=feedback.reason
            )
            outcome = self._deliver("radar.early_fraud_warning.created", obj)
        else:
            if order.status == OrderStatus.REFUNDED:  # nothing left to dispute
                trace.feedback_skipped.append("dispute: refunded")
                return
            obj = events.dispute(
                dispute_id=self._id("dp"),
                intent=trace.intent,
                charge=trace.charge,
                amount=order.total_amount,
                currency=order.currency,
                reason=feedback.reason,
                due_by=feedback.at + timedelta(days=7),
            )
            outcome = self._deliver("charge.dispute.created", obj)
        trace.feedback_sent.append(f"{feedback.kind}: {outcome}")

    def _expire_reviews(self, *_: int) -> None:
        """What beat does every ten minutes, run once when it has work: refund held orders nobody decided."""
        review_expire_overdue()


def replay_run(population: list[SimOrder]) -> list[Trace]:
    """Drive the shop through the population (see the module's docstring); one Trace per simulated order."""
    try:
        import time_machine
    except ImportError as exc:  # a dev dependency
        raise SimulationError("the simulation needs time-machine (pip install -e '.[dev]')") from exc
    if connection.in_atomic_block:
        raise SimulationError("run the simulation outside a transaction: the shop's work happens on commit")
    with simulation_environment():
        return Replay(population, travel=time_machine.travel).run()
