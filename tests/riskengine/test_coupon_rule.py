"""The coupon rule: one browser or card redeeming a coupon under many mailboxes (coupon farmers, 羊毛党) is held
for review; honest shoppers sharing a coupon from their own devices and cards are not."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from orders.cart import CartLine
from orders.models import Coupon
from riskengine.models import RiskDecision
from storefront.flow.checkout import checkout_create_order
from storefront.flow.payment import PaymentSignals
from tests.riskengine.test_rules import make_rule, new_shopper, pay, service, use_only_rules

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def redeem(product, shopper, capture, *, coupon="FARM"):
    with capture(execute=True):
        order = checkout_create_order(
            lines=[CartLine(product=product, quantity=1)],
            email=shopper.email,
            shipping=None,
            locale="en",
            purchase_ip=shopper.ip,
            user_agent="pytest",
            device_id=shopper.device,
            coupon=coupon,
        )
    return pay(order, capture, signals=PaymentSignals(card_fingerprint=shopper.card))


def assessment(order):
    return order.risk_assessments.get(stage="paid")


@pytest.fixture
def setup(db):
    use_only_rules(make_rule("coupon_abuse", points=50, threshold=1, days=30), review=50, decline=90)
    product = service(price_amount=2000)
    Coupon.objects.create(code="FARM", percent_off=20, max_uses_per_shopper=None)
    return product


def test_a_third_mailbox_on_one_device_is_held_for_review(setup, django_capture_on_commit_callbacks):
    first = new_shopper()
    with time_machine.travel(NOW, tick=False):
        for _ in range(2):
            order = redeem(setup, new_shopper(device=first.device), django_capture_on_commit_callbacks)
            assert assessment(order).decision == RiskDecision.APPROVE
        third = redeem(setup, new_shopper(device=first.device), django_capture_on_commit_callbacks)

    verdict = assessment(third)
    assert (verdict.decision, verdict.score) == (RiskDecision.REVIEW, 50)
    assert verdict.reasons[0]["reason"] == "This coupon was used from this device under 2 other email(s) in 30 days"


def test_one_card_under_many_mailboxes_counts_even_from_new_devices(setup, django_capture_on_commit_callbacks):
    card = new_shopper().card
    with time_machine.travel(NOW, tick=False):
        redeem(setup, new_shopper(card=card), django_capture_on_commit_callbacks)
        redeem(setup, new_shopper(card=card), django_capture_on_commit_callbacks)
        third = redeem(setup, new_shopper(card=card), django_capture_on_commit_callbacks)
    assert assessment(third).decision == RiskDecision.REVIEW
    assert assessment(third).reasons[0]["values"]["other_mailboxes"]["card"] == 2


def test_one_mailbox_written_three_ways_is_one_shopper_not_a_farm(setup, django_capture_on_commit_callbacks):
    device = new_shopper().device
    with time_machine.travel(NOW, tick=False):
        for written in ("jane.roe@gmail.com", "janeroe+a@gmail.com", "Jane.Roe+b@googlemail.com"):
            order = redeem(setup, new_shopper(device=device, email=written), django_capture_on_commit_callbacks)
    assert assessment(order).decision == RiskDecision.APPROVE


def test_uses_outside_the_window_or_without_the_coupon_do_not_count(setup, django_capture_on_commit_callbacks):
    device = new_shopper().device
    with time_machine.travel(NOW - timedelta(days=31), tick=False):
        redeem(setup, new_shopper(device=device), django_capture_on_commit_callbacks)
        redeem(setup, new_shopper(device=device), django_capture_on_commit_callbacks)
    with time_machine.travel(NOW, tick=False):
        late = redeem(setup, new_shopper(device=device), django_capture_on_commit_callbacks)
        plain = redeem(setup, new_shopper(device=device), django_capture_on_commit_callbacks, coupon="")
    assert assessment(late).decision == RiskDecision.APPROVE
    assert assessment(plain).decision == RiskDecision.APPROVE
