"""How the engine turns rule hits into approve / review / decline, stores why, and screens payments."""

import uuid

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from fulfillment.models import KeyStatus, LicenseKey
from orders.errors import MESSAGES
from payments.models import Payment
from payments.services import PaymentBlocked
from riskengine import velocity
from riskengine.models import ListEntry, ListKind, RiskAssessment, RiskDecision, RiskRule, RuleMode, RuleType
from riskengine.services import risk_assess_order
from storefront.flow.checkout import payment_start_for_order
from tests.conftest import payment_intent_event, signed_stripe_event
from tests.factories import ProductFactory, add_keys
from tests.riskengine.test_rules import new_shopper, place_order, service, use_only_rules, use_shipped_rules

WEBHOOK = "/payments/stripe/webhook/"
BLOCKED_MESSAGE = str(MESSAGES["payment_blocked"])


def rule(name: str, type_: str, points: int, *, mode: str = RuleMode.ACTIVE, enabled: bool = True, **params):
    return RiskRule(name=name, type=type_, points=points, mode=mode, enabled=enabled, params=params)


def risky_order(*, disposable: bool = False, high_risk: bool = False):
    """An order from a fresh shopper; optionally from a disposable address and/or for a high-risk product."""
    overrides = {"email": f"{uuid.uuid4().hex[:12]}@mailinator.com"} if disposable else {}
    return place_order(service(price_amount=1500, high_risk=high_risk), new_shopper(**overrides))


# --- thresholds and score ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("points", "decision"),
    [(29, RiskDecision.APPROVE), (30, RiskDecision.REVIEW), (69, RiskDecision.REVIEW), (70, RiskDecision.DECLINE)],
)
def test_thresholds_come_from_risk_settings(points, decision):
    # Given thresholds of 30 (review) and 70 (decline), and one rule worth `points` that fires
    use_only_rules(rule("High-risk product", RuleType.HIGH_RISK_PRODUCT, points), review=30, decline=70)

    # When a high-risk order is assessed
    assessment = risk_assess_order(order=risky_order(high_risk=True))

    # Then a score at a threshold takes that threshold's decision
    assert (assessment.score, assessment.decision) == (points, decision)


@pytest.mark.django_db
def test_score_is_capped_at_100():
    use_only_rules(
        rule("Disposable email", RuleType.DISPOSABLE_EMAIL, 60), rule("High-risk", RuleType.HIGH_RISK_PRODUCT, 70)
    )

    assessment = risk_assess_order(order=risky_order(disposable=True, high_risk=True))

    assert assessment.score == 100
    assert sorted(r["points"] for r in assessment.reasons) == [60, 70]
    assert assessment.decision == RiskDecision.DECLINE


@pytest.mark.django_db
def test_shadow_rules_are_recorded_but_never_decide():
    # Given an active rule worth 10 and a shadow rule worth 100, both firing
    use_only_rules(
        rule("High-risk", RuleType.HIGH_RISK_PRODUCT, 10),
        rule("Disposable (trial)", RuleType.DISPOSABLE_EMAIL, 100, mode=RuleMode.SHADOW),
    )

    # When the order is assessed
    assessment = risk_assess_order(order=risky_order(disposable=True, high_risk=True))

    # Then only the active rule scores; the shadow hit is kept apart for tuning
    assert (assessment.decision, assessment.score) == (RiskDecision.APPROVE, 10)
    assert [r["rule"] for r in assessment.reasons] == ["High-risk"]
    assert [(r["rule"], r["points"]) for r in assessment.shadow_reasons] == [("Disposable (trial)", 100)]


@pytest.mark.django_db
def test_shadow_blocklist_rule_does_not_decline():
    # Given a blocklisted email but the blocklist rule only in shadow mode
    order = risky_order()
    ListEntry.objects.create(kind=ListKind.EMAIL, value=order.email, created_by="test")
    use_only_rules(rule("Blocklist (trial)", RuleType.BLOCKLIST, 100, mode=RuleMode.SHADOW))

    assessment = risk_assess_order(order=order)

    assert assessment.decision == RiskDecision.APPROVE
    assert assessment.shadow_reasons[0]["hard"] is True


@pytest.mark.django_db
def test_allowlist_approves_even_a_blocklisted_order_with_full_points():
    # Given an order whose email is blocklisted (100 points, hard) but whose device is allowlisted
    order = risky_order()
    ListEntry.objects.create(kind=ListKind.EMAIL, value=order.email, created_by="test")
    ListEntry.objects.create(kind=ListKind.DEVICE, value=order.device_id, allow=True, created_by="ops")
    use_only_rules(rule("Blocklisted identifier", RuleType.BLOCKLIST, 100))

    # When it is assessed
    assessment = risk_assess_order(order=order)

    # Then the allowlist wins, and both facts are on record
    assert assessment.decision == RiskDecision.APPROVE
    assert assessment.score == 100
    reasons = [r["reason"] for r in assessment.reasons]
    assert reasons == [f"On the blocklist: email {order.email}", f"On the allowlist: device {order.device_id}"]


@pytest.mark.django_db
def test_blocklist_hit_declines_alone_with_no_points_and_high_thresholds():
    # Given a blocklist rule worth 0 points and thresholds nobody reaches
    order = risky_order()
    ListEntry.objects.create(kind=ListKind.EMAIL_DOMAIN, value=order.email.split("@")[1], created_by="test")
    use_only_rules(rule("Blocklisted identifier", RuleType.BLOCKLIST, 0), review=100, decline=100)

    assessment = risk_assess_order(order=order)

    assert (assessment.decision, assessment.score) == (RiskDecision.DECLINE, 0)


@pytest.mark.django_db
def test_disabled_rules_are_ignored():
    use_only_rules(
        rule("High-risk (off)", RuleType.HIGH_RISK_PRODUCT, 100, enabled=False),
        rule("Disposable", RuleType.DISPOSABLE_EMAIL, 5),
    )

    assessment = risk_assess_order(order=risky_order(disposable=True, high_risk=True))

    assert (assessment.decision, assessment.score) == (RiskDecision.APPROVE, 5)
    assert [r["rule"] for r in assessment.reasons] == ["Disposable"]
    assert assessment.shadow_reasons == []


@pytest.mark.django_db
def test_every_reason_is_stored_with_rule_points_text_and_values():
    # Given two rules that fire
    use_only_rules(
        rule("Disposable email", RuleType.DISPOSABLE_EMAIL, 20), rule("Risky goods", RuleType.HIGH_RISK_PRODUCT, 15)
    )
    order = risky_order(disposable=True, high_risk=True)

    # When the order is assessed and the assessment read back from the database
    stored = RiskAssessment.objects.get(pk=risk_assess_order(order=order).pk)

    # Then each reason says which rule, how many points, why, and on what values; and how long it took
    product_name = order.lines.get().product_name
    assert sorted(stored.reasons, key=lambda r: r["rule"]) == [
        {
            "rule": "Disposable email",
            "type": "disposable_email",
            "points": 20,
            "reason": "Disposable email domain mailinator.com",
            "values": {"domain": "mailinator.com"},
            "hard": False,
        },
        {
            "rule": "Risky goods",
            "type": "high_risk_product",
            "points": 15,
            "reason": f"High-risk product: {product_name}",
            "values": {"products": [product_name]},
            "hard": False,
        },
    ]
    assert (stored.stage, stored.score, stored.order_id) == ("paid", 35, order.pk)
    assert stored.duration_ms > 0  # measured, not judged: speed belongs to make bench


# --- the pre-payment screen -------------------------------------------------------------------------------


def payment_intents_at_stripe(stripe_client) -> list:
    return list(stripe_client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter())


@pytest.fixture
def blocklisted_order(db):
    """A pending order for a key in stock, whose email is on the blocklist, under the shipped rules."""
    use_shipped_rules()
    product = ProductFactory()
    add_keys(product, 2)
    order = place_order(product, new_shopper())
    ListEntry.objects.create(kind=ListKind.EMAIL, value=order.email, reason="chargebacks", created_by="ops")
    return order


@pytest.mark.django_db
def test_blocklisted_shopper_is_stopped_before_stripe_is_asked(blocklisted_order, stripe_client):
    # Given a blocklisted shopper's pending order
    order = blocklisted_order
    before = payment_intents_at_stripe(stripe_client)

    # When a payment is started for it
    with pytest.raises(PaymentBlocked):
        payment_start_for_order(order=order)

    # Then no PaymentIntent exists at Stripe, no payment here, no key held; the screen is on record
    after = payment_intents_at_stripe(stripe_client)
    assert len(after) == len(before)
    assert not [pi for pi in after if pi.to_dict().get("metadata", {}).get("order_number") == order.number]
    assert not Payment.objects.filter(order=order).exists()
    assert not LicenseKey.objects.filter(reserved_for=order).exists()
    assert LicenseKey.objects.filter(product=order.lines.get().product, status=KeyStatus.AVAILABLE).count() == 2
    screen = RiskAssessment.objects.get(order=order)
    assert (screen.stage, screen.decision) == ("pre_payment", RiskDecision.DECLINE)
    assert screen.reasons[0]["reason"] == f"On the blocklist: email {order.email}"


@pytest.mark.django_db
def test_pay_page_shows_only_the_generic_blocked_message(blocklisted_order, localstripe):
    response = Client().get(reverse("pay", kwargs={"token": blocklisted_order.token}))

    assert response.status_code == 200
    page = response.content.decode()
    assert BLOCKED_MESSAGE in page
    assert "blocklist" not in page.lower()
    assert "chargebacks" not in page
    assert not Payment.objects.filter(order=blocklisted_order).exists()


@pytest.mark.django_db
def test_pay_api_answers_403_payment_blocked(blocklisted_order, localstripe):
    response = Client().post(
        reverse("api-order-pay", kwargs={"token": blocklisted_order.token}),
        {"card_token": "tok_visa"},
        content_type="application/json",
    )

    assert response.status_code == 403
    assert response.json() == {"error": {"code": "payment_blocked", "message": BLOCKED_MESSAGE}}


@pytest.mark.django_db
def test_risk_score_and_band_reach_the_payment_intent_at_stripe(stripe_client, django_capture_on_commit_callbacks):
    # Given a pre-payment velocity rule that already fires on a shopper's first order (45 points: review band)
    use_only_rules(
        rule("Blocklisted identifier", RuleType.BLOCKLIST, 100),
        rule("Orders per email", RuleType.VELOCITY, 45, metric="orders", by=["email"], threshold=0),
    )
    order = place_order(service(price_amount=1500), new_shopper(), django_capture_on_commit_callbacks)

    # When the payment is started (review is not a reason to refuse one)
    payment = payment_start_for_order(order=order)

    # Then Stripe's PaymentIntent carries the screen's score and band
    intent = stripe_client.v1.payment_intents.retrieve(payment.provider_ref)
    assert intent.metadata.to_dict() == {"order_number": order.number, "risk_score": "45", "risk_band": "review"}
    assert intent.amount == 1500


# --- card testing -----------------------------------------------------------------------------------------


def start_and_fail(order, client, capture) -> Payment:
    """Open a PaymentIntent at localstripe for the order, then receive Stripe's signed payment_failed for it."""
    payment = payment_start_for_order(order=order)
    fail_by_webhook(payment, client, capture)
    return payment


def fail_by_webhook(payment: Payment, client, capture) -> dict:
    """Stripe's signed payment_intent.payment_failed for the payment, received by the shop. Returns the event."""
    event = payment_intent_event(
        event_id=f"evt_{uuid.uuid4().hex[:16]}",
        intent_id=payment.provider_ref,
        amount=payment.amount,
        event_type="payment_intent.payment_failed",
    )
    post_event(client, event, capture)
    return event


def post_event(client, event: dict, capture) -> None:
    payload, header = signed_stripe_event(event)
    with capture(execute=True):
        response = client.post(WEBHOOK, data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_card_testing_blocks_the_next_payment_start(stripe_client, django_capture_on_commit_callbacks):
    # Given the shipped rules (card testing: more than 3 failed payments an hour declines) and a shopper
    use_shipped_rules()
    order = place_order(service(price_amount=1500), new_shopper(), django_capture_on_commit_callbacks)
    client = Client()

    # When three attempts fail, a fourth may start; once it fails too, the next start is refused
    for _ in range(3):
        start_and_fail(order, client, django_capture_on_commit_callbacks)
    fourth = start_and_fail(order, client, django_capture_on_commit_callbacks)
    intents_before = len(payment_intents_at_stripe(stripe_client))
    with pytest.raises(PaymentBlocked):
        payment_start_for_order(order=order)

    # Then no new PaymentIntent was opened, and the screen says why
    assert fourth.provider_ref.startswith("pi_")
    assert len(payment_intents_at_stripe(stripe_client)) == intents_before
    screen = RiskAssessment.objects.filter(order=order, stage="pre_payment").first()
    assert screen.decision == RiskDecision.DECLINE
    assert screen.reasons[0]["reason"] == "4 failed payments by this email in 60 min (limit 3)"


@pytest.mark.django_db
def test_card_testing_threshold_comes_from_the_rule(localstripe, django_capture_on_commit_callbacks):
    # Given the card-testing rule retuned in admin to allow 5 failures an hour
    use_shipped_rules()
    RiskRule.objects.filter(name="Card testing: failed payments per IP").update(
        params={"metric": "failed_payments", "by": ["ip", "email", "device"], "window_minutes": 60, "threshold": 5}
    )
    order = place_order(service(price_amount=1500), new_shopper(), django_capture_on_commit_callbacks)
    client = Client()

    # When four attempts fail, then a fifth payment still starts
    for _ in range(4):
        start_and_fail(order, client, django_capture_on_commit_callbacks)
    payment = payment_start_for_order(order=order)

    assert payment.provider_ref.startswith("pi_")


def pay_by_api(order, stripe_client, card_number: str):
    """The shop's own pay endpoint, with a card tokenised at localstripe as Stripe.js would."""
    token = stripe_client.v1.tokens.create(
        params={"card": {"number": card_number, "exp_month": "12", "exp_year": "2031", "cvc": "123"}}
    )
    return Client().post(
        reverse("api-order-pay", kwargs={"token": order.token}),
        {"card_token": token.id},
        content_type="application/json",
    )


@pytest.mark.django_db
def test_card_testing_through_the_pay_api_is_stopped(stripe_client, django_capture_on_commit_callbacks):
    # Given the shipped rules and a shopper trying one declined card after another on our pay endpoint
    use_shipped_rules()
    order = place_order(service(price_amount=1500), new_shopper(), django_capture_on_commit_callbacks)
    answers = []
    for _ in range(5):
        with django_capture_on_commit_callbacks(execute=True):
            answers.append(pay_by_api(order, stripe_client, "4000000000000341").status_code)

    # Then four declines are answered, and the fifth attempt is refused before Stripe is asked
    assert answers == [402, 402, 402, 402, 403]
    assert order.events.filter(type="payment_failed").count() == 4


@pytest.mark.django_db
def test_every_failed_attempt_on_one_payment_intent_counts(
    localstripe, django_capture_on_commit_callbacks, time_machine
):
    # Given one PaymentIntent on which a card tester tries three cards, each declined (three distinct events),
    # and the last event delivered twice
    time_machine.move_to(timezone.now(), tick=False)  # the counters are read over the last minute below
    use_only_rules(rule("Blocklisted identifier", RuleType.BLOCKLIST, 100))
    order = place_order(service(price_amount=1500), new_shopper(), django_capture_on_commit_callbacks)
    payment = payment_start_for_order(order=order)
    client = Client()
    for _ in range(2):
        fail_by_webhook(payment, client, django_capture_on_commit_callbacks)
    last = fail_by_webhook(payment, client, django_capture_on_commit_callbacks)
    post_event(client, last, django_capture_on_commit_callbacks)

    # Then three failures are on record, and in the velocity counters
    assert order.events.filter(type="payment_failed").count() == 3
    counts, source = velocity.velocity_counts(metric="failed_payments", ids={"email": order.email}, window_seconds=60)
    assert (counts, source) == ({"email": 3}, "redis")


@pytest.mark.django_db
def test_shipped_rules_let_an_ordinary_first_order_pay(localstripe, django_capture_on_commit_callbacks):
    # Given the shipped rules and a new shopper with nothing against them
    use_shipped_rules()
    order = place_order(service(price_amount=1500), new_shopper(), django_capture_on_commit_callbacks)

    # When they start a payment
    payment = payment_start_for_order(order=order)

    # Then it starts, screened at 0
    screen = RiskAssessment.objects.get(order=order, stage="pre_payment")
    assert (screen.decision, screen.score, screen.reasons) == (RiskDecision.APPROVE, 0, [])
    assert payment.provider_ref.startswith("pi_")
