"""The ops review queue at /review/: who may see it, what it shows, and what claiming and deciding do."""

import contextlib
import importlib
import re
import threading
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from fulfillment.models import KeyStatus, LicenseKey
from fulfillment.services import delivery_record_access
from orders.models import Order, OrderStatus, PaymentState
from payments.models import PaymentStatus
from riskengine.models import (
    FraudLabel,
    ListEntry,
    ReviewCase,
    ReviewStatus,
    RiskRule,
    RiskSettings,
    RuleMode,
    RuleType,
)
from riskengine.review import ReviewError, review_claim
from storefront.flow.checkout import payment_confirm_card, payment_start_for_order
from storefront.flow.payment import PaymentSignals, order_mark_paid
from storefront.flow.review import review_expire_overdue
from tests.conftest import TEST_CARD, record_payment
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db

reviewers_migration = importlib.import_module("riskengine.migrations.0004_reviewers_group")
PASSWORD = "review-pass-1"
RADAR_ELEVATED = {
    "outcome_type": "manual_review",
    "risk_level": "elevated",
    "risk_score": 67,
    "three_d_secure": {"result": "authenticated", "liability_shift": True},
}


# Given-helpers -----------------------------------------------------------------------------------------


def reviewers_group() -> Group:
    """The group exactly as migration 0004 builds it (transactional tests flush what migrations inserted)."""
    reviewers_migration.create_reviewers_group(django_apps, None)
    return Group.objects.get(name=reviewers_migration.REVIEWERS_GROUP)


def make_reviewer(username: str):
    user = get_user_model().objects.create_user(username, f"{username}@ops.example.com", PASSWORD)
    user.groups.add(reviewers_group())
    return user


def logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def risk_rules():
    """Only the rules these tests reason about: a high-risk product scores 50 (review at 40), plus a shadow rule."""
    RiskRule.objects.all().delete()
    RiskSettings.objects.update_or_create(
        pk=1, defaults={"review_threshold": 40, "decline_threshold": 80, "review_deadline_hours": 24}
    )
    RiskRule.objects.create(name="High-risk product", type=RuleType.HIGH_RISK_PRODUCT, points=50)
    RiskRule.objects.create(
        name="Disposable email (trial)", type=RuleType.DISPOSABLE_EMAIL, points=20, mode=RuleMode.SHADOW
    )


def held_order(make_order, capture=None, *, email="held@example.com", device="dev-held", radar=None) -> Order:
    """A paid order for one high-risk key product, held by the engine with a review case open."""
    product = ProductFactory(high_risk=True, price_amount=4900)
    add_keys(product, 2)
    order = make_order((product, 1), email=email)
    Order.objects.filter(pk=order.pk).update(device_id=device)
    with capture(execute=True) if capture else contextlib.nullcontext():
        order_mark_paid(
            order_id=order.pk,
            amount=order.total_amount,
            currency=order.currency,
            payment_ref=f"pi_{order.number}",
            actor="test",
            signals=PaymentSignals(radar=radar),
        )
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert order.review_case.status == ReviewStatus.OPEN
    return order


def held_order_paid_by_card(make_order, stripe_client, capture, *, email="card@example.com") -> Order:
    """As held_order, but paid with a card at localstripe, so a refund really goes back through Stripe."""
    product = ProductFactory(high_risk=True, price_amount=4900)
    add_keys(product, 2)
    order = make_order((product, 1), email=email)
    Order.objects.filter(pk=order.pk).update(device_id="dev-card")
    payment = payment_start_for_order(order=order)
    token = stripe_client.v1.tokens.create(params={"card": TEST_CARD})
    with capture(execute=True):
        payment = payment_confirm_card(payment=payment, card_token=token.id)
    assert payment.status == PaymentStatus.SUCCEEDED
    order.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    return order


def rows(html: str, css_class: str) -> list[str]:
    """The text of each table row with this class, tags stripped and whitespace collapsed."""
    found = re.findall(rf'<tr class="{css_class}[ "][^>]*>(.*?)</tr>', html, flags=re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in found]


def page_text(response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


# Who may see the queue -----------------------------------------------------------------------------------


def test_the_reviewers_group_grants_the_queue_and_read_access_to_assessments_only():
    # When migration 0004's step runs (twice: it must be safe to re-run)
    Group.objects.filter(name=reviewers_migration.REVIEWERS_GROUP).delete()
    reviewers_group()
    group = reviewers_group()

    # Then the group holds exactly the review permission and read access to assessments
    granted = sorted(group.permissions.values_list("content_type__app_label", "codename"))
    assert granted == [("riskengine", "review_orders"), ("riskengine", "view_riskassessment")]
    # And a member is not staff yet may work the queue
    reviewer = make_reviewer("rita")
    assert not reviewer.is_staff
    assert reviewer.has_perm("riskengine.review_orders")
    assert not reviewer.has_perm("catalog.view_product")


@pytest.mark.parametrize("url_name", ["review:queue", "review:metrics"])
@pytest.mark.parametrize("staff", [False, True], ids=["shopper account", "catalog staff"])
def test_signed_in_users_without_the_review_permission_get_403(url_name, staff):
    user = get_user_model().objects.create_user("clerk", "clerk@example.com", PASSWORD, is_staff=staff)

    response = logged_in(user).get(reverse(url_name))

    assert response.status_code == 403


def test_a_user_without_the_permission_cannot_claim_or_decide(
    make_order, django_capture_on_commit_callbacks, risk_rules
):
    order = held_order(make_order, django_capture_on_commit_callbacks)
    case = order.review_case
    client = logged_in(get_user_model().objects.create_user("clerk", "clerk@example.com", PASSWORD))

    responses = [
        client.get(reverse("review:case", args=[case.pk])),
        client.post(reverse("review:claim", args=[case.pk])),
        client.post(reverse("review:approve", args=[case.pk]), {"note": "looks fine"}),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403]
    case.refresh_from_db()
    assert (case.status, case.claimed_by) == (ReviewStatus.OPEN, None)
    assert not order.events.filter(type="review_claimed").exists()


def test_anonymous_visitors_are_sent_to_the_review_login_and_back():
    make_reviewer("rita")
    client = Client()

    response = client.get(reverse("review:queue"))

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('review:login')}?next={reverse('review:queue')}"
    # And a reviewer (not staff) can log in there and lands on the queue
    login = client.post(
        reverse("review:login"), {"username": "rita", "password": PASSWORD, "next": reverse("review:queue")}
    )
    assert login.status_code == 302 and login["Location"] == reverse("review:queue")
    assert client.get(reverse("review:queue")).status_code == 200


def test_reviewers_are_refused_by_the_django_admin():
    # Given a reviewer, signed in to the review pages
    reviewer = make_reviewer("rita")
    client = logged_in(reviewer)

    # When she opens the admin, or a catalog page in it
    index = client.get("/admin/")
    products = client.get(reverse("admin:catalog_product_changelist"))
    # Or tries to log in to the admin with her password
    admin_login = Client().post(reverse("admin:login"), {"username": "rita", "password": PASSWORD})

    # Then the admin sends her to its login page and its login refuses a non-staff account
    assert index.status_code == 302 and index["Location"].startswith(reverse("admin:login"))
    assert products.status_code == 302 and products["Location"].startswith(reverse("admin:login"))
    assert admin_login.status_code == 200
    assert "staff account" in admin_login.content.decode()
    assert SESSION_KEY not in admin_login.wsgi_request.session


def test_review_actions_need_the_csrf_token(make_order, django_capture_on_commit_callbacks, risk_rules):
    order = held_order(make_order, django_capture_on_commit_callbacks)
    client = logged_in(make_reviewer("rita"), enforce_csrf_checks=True)

    response = client.post(reverse("review:claim", args=[order.review_case.pk]))

    assert response.status_code == 403
    order.review_case.refresh_from_db()
    assert order.review_case.claimed_by is None


# What the queue and the detail page show -------------------------------------------------------------------


def test_reviewer_sees_open_cases_oldest_first_with_score_reasons_amount_and_radar(
    make_order, django_capture_on_commit_callbacks, risk_rules
):
    # Given three held orders: the second opened hours before the first, the third already decided
    capture = django_capture_on_commit_callbacks
    newer = held_order(make_order, capture, email="newer@example.com")
    older = held_order(make_order, capture, email="older@example.com", radar=RADAR_ELEVATED)
    decided = held_order(make_order, capture, email="decided@example.com")
    ReviewCase.objects.filter(order=older).update(created_at=timezone.now() - timedelta(hours=5))
    ReviewCase.objects.filter(order=decided).update(status=ReviewStatus.APPROVED)
    claimer = make_reviewer("bob")
    review_claim(case_id=newer.review_case.pk, user=claimer)

    # When a reviewer opens the queue
    response = logged_in(make_reviewer("rita")).get(reverse("review:queue"))

    # Then she sees the open cases, oldest first, each with amount, score, top reasons, Radar and claimant
    assert response.status_code == 200
    first, second = rows(response.content.decode(), "case")
    assert older.number in first and newer.number in second
    assert decided.number not in response.content.decode()
    assert "USD 49.00" in first and " 50 " in first
    assert "High-risk product: " in first and "Stripe Radar manual review: held for review" in first
    assert "elevated" in first and "manual_review" in first
    assert "5 hours" in first
    assert "not assessed" in second and "bob" in second


def test_detail_shows_reasons_radar_history_linked_orders_and_the_reveal_log(
    make_order, django_capture_on_commit_callbacks, risk_rules
):
    capture = django_capture_on_commit_callbacks
    # Given an earlier delivered order by the same shopper
    plain = ProductFactory(price_amount=1500)
    add_keys(plain, 1)
    earlier = record_payment(make_order((plain, 1), email="held@mailinator.com"), capture)
    # And a disputed order by someone else, from another IP, on the same device
    other = ProductFactory(price_amount=2500)
    add_keys(other, 1)
    disputed = record_payment(make_order((other, 1), email="someone@example.net"), capture)
    Order.objects.filter(pk=disputed.pk).update(device_id="dev-shared", purchase_ip="198.51.100.20")
    FraudLabel.objects.create(order=disputed, source="dispute", is_fraud=True)
    # And the held order, from a disposable address (a shadow rule), on that device, whose line was opened once
    order = held_order(make_order, capture, email="held@mailinator.com", device="dev-shared", radar=RADAR_ELEVATED)
    delivery_record_access(
        line=order.lines.get(), kind="reveal", ip="198.51.100.99", user_agent="Mozilla/5.0 (reviewer test)"
    )

    # When a reviewer opens the case
    response = logged_in(make_reviewer("rita")).get(reverse("review:case", args=[order.review_case.pk]))

    # Then every reason is there with its points, the shadow one marked as not counted
    assert response.status_code == 200
    html = response.content.decode()
    reasons = rows(html, "reason")
    assert any(r.startswith("High-risk product high_risk_product 50 High-risk product: ") for r in reasons)
    assert any("Stripe Radar manual review: held for review" in r for r in reasons)
    (shadow,) = rows(html, "reason shadow-reason")
    assert "Disposable email (trial) shadow: not counted" in shadow
    assert "Disposable email domain mailinator.com" in shadow and "(20)" in shadow
    # And Radar's outcome, with 3-D Secure
    radar = page_text(response)
    assert "Outcome manual_review" in radar and "Risk level elevated" in radar and "Risk score 67" in radar
    assert "3D Secure authenticated (liability shifted to the issuer)" in radar
    # And the shopper's history
    (history,) = rows(html, "history-order")
    assert earlier.number in history and "Delivered" in history and "USD 15.00" in history
    # And linked orders with how they link, the disputed one flagged
    linked = {row.split()[0]: row for row in rows(html, "linked-order")}
    assert linked[disputed.number].startswith(f"{disputed.number} device 1 someone@example.net")
    assert linked[disputed.number].endswith("fraud")
    assert linked[earlier.number].startswith(f"{earlier.number} email 1")
    assert not linked[earlier.number].endswith("fraud")
    # And the reveal and download log
    (access,) = rows(html, "access")
    assert "Key revealed" in access and "198.51.100.99" in access and "Mozilla/5.0 (reviewer test)" in access
    # And the order's audit trail
    assert any("on_hold" in e and "riskengine" in e for e in rows(html, "event"))


# Claiming and deciding ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_claim_then_approve_with_a_note_releases_the_key_within_the_request(make_order, risk_rules):
    # Given a held order and a reviewer (real commits: no test transaction around the requests)
    order = held_order(make_order)
    case = order.review_case
    reviewer = make_reviewer("rita")
    client = logged_in(reviewer)

    # When she claims it, then approves it with a note
    claimed = client.post(reverse("review:claim", args=[case.pk]))
    approved = client.post(reverse("review:approve", args=[case.pk]), {"note": "Known customer, called them."})

    # Then, by the time the approve request returned, the key is sold and the order delivered
    assert claimed.status_code == 302
    assert approved.status_code == 302 and approved["Location"] == reverse("review:queue")
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED
    assert LicenseKey.objects.get(order_line__order=order).status == KeyStatus.SOLD
    case.refresh_from_db()
    assert (case.status, case.decided_by, case.note) == (
        ReviewStatus.APPROVED,
        reviewer,
        "Known customer, called them.",
    )
    assert list(FraudLabel.objects.filter(order=order).values_list("source", "is_fraud")) == [("review", False)]
    # And every step is on the order's audit trail under her name
    trail = list(order.events.values_list("type", "from_status", "to_status", "actor"))
    assert ("review_claimed", "", "", "reviewer:rita") in trail
    assert ("status_changed", "on_hold", "paid", "reviewer:rita") in trail
    assert ("status_changed", "paid", "fulfilled", "reviewer:rita") in trail
    assert order.events.get(to_status="paid", actor="reviewer:rita").note == "Approved: Known customer, called them."
    # And the shopper got the delivery email
    assert [m.to for m in mail.outbox] == [[order.email]]


@pytest.mark.parametrize("action", ["review:approve", "review:reject"])
def test_deciding_without_a_note_is_refused_and_changes_nothing(
    make_order, django_capture_on_commit_callbacks, risk_rules, action
):
    order = held_order(make_order, django_capture_on_commit_callbacks)
    case = order.review_case
    client = logged_in(make_reviewer("rita"))
    client.post(reverse("review:claim", args=[case.pk]))
    events_before = order.events.count()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse(action, args=[case.pk]), {"note": "   ", "blocklist": ["email"]})

    assert response.status_code == 409
    assert 'id="review-error">A note is required.</div>' in response.content.decode()
    order.refresh_from_db()
    case.refresh_from_db()
    assert order.status == OrderStatus.ON_HOLD
    assert (case.status, case.decided_by) == (ReviewStatus.OPEN, None)
    assert not LicenseKey.objects.filter(order_line__order=order).exists()
    assert order.events.count() == events_before
    assert not FraudLabel.objects.exists() and not ListEntry.objects.exists()
    assert mail.outbox == []


def test_a_case_claimed_by_someone_else_can_be_neither_claimed_nor_decided(
    make_order, django_capture_on_commit_callbacks, risk_rules
):
    # Given Bob has claimed the case
    order = held_order(make_order, django_capture_on_commit_callbacks)
    case = order.review_case
    bob = make_reviewer("bob")
    review_claim(case_id=case.pk, user=bob)
    rita = logged_in(make_reviewer("rita"))

    # When Rita tries to claim it, then to approve it
    claim = rita.post(reverse("review:claim", args=[case.pk]), follow=True)
    approve = rita.post(reverse("review:approve", args=[case.pk]), {"note": "I think it is fine"})

    # Then she is told clearly, and the case stays Bob's and undecided
    assert "This order is already being reviewed by someone else." in claim.content.decode()
    assert "Claimed by bob" in page_text(claim)
    assert approve.status_code == 409
    assert "Claim the order before deciding it." in approve.content.decode()
    assert "I think it is fine" in approve.content.decode()  # her note is kept in the form
    case.refresh_from_db()
    order.refresh_from_db()
    assert (case.claimed_by, case.status, order.status) == (bob, ReviewStatus.OPEN, OrderStatus.ON_HOLD)


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_claiming_at_once_exactly_one_wins(make_order, risk_rules):
    # Given several held orders and two reviewers who click "claim" on each at the same moment
    ann, bob = make_reviewer("ann"), make_reviewer("bob")
    for round_ in range(5):
        order = held_order(make_order, email=f"race{round_}@example.com")
        case_id = order.review_case.pk
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}

        def claim(user, case_id=case_id, barrier=barrier, outcomes=outcomes):
            try:
                barrier.wait(timeout=10)
                review_claim(case_id=case_id, user=user)
                outcomes[user.username] = "won"
            except ReviewError as exc:
                outcomes[user.username] = str(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=claim, args=(user,)) for user in (ann, bob)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        # Then exactly one of them holds the case, the other was told, and one claim is on record
        assert sorted(outcomes.values()) == ["This order is already being reviewed by someone else.", "won"]
        winner = next(name for name, outcome in outcomes.items() if outcome == "won")
        case = ReviewCase.objects.select_related("claimed_by").get(pk=case_id)
        assert case.claimed_by.username == winner
        assert list(order.events.filter(type="review_claimed").values_list("actor", flat=True)) == [
            f"reviewer:{winner}"
        ]


def test_reject_refunds_at_stripe_releases_the_keys_labels_fraud_and_blocklists_what_was_chosen(
    localstripe, stripe_client, make_order, django_capture_on_commit_callbacks, risk_rules
):
    # Given a high-risk order paid by card at localstripe and held for review, claimed by Rita
    capture = django_capture_on_commit_callbacks
    order = held_order_paid_by_card(make_order, stripe_client, capture, email="held@example.com")
    payment = order.payments.get()
    # (real Stripe reports the card's fingerprint on the charge; localstripe does not, so set it as Stripe would)
    Order.objects.filter(pk=order.pk).update(card_fingerprint="Fp4242abcd")
    order.refresh_from_db()
    case = order.review_case
    rita = make_reviewer("rita")
    client = logged_in(rita)
    client.post(reverse("review:claim", args=[case.pk]))

    # When she rejects it, blocklisting the email, card and IP but not the device
    with capture(execute=True):
        response = client.post(
            reverse("review:reject", args=[case.pk]),
            {"note": "Stolen card pattern", "blocklist": ["email", "card", "ip", "bogus"]},
        )

    # Then the money went back at Stripe and the order is refunded
    assert response.status_code == 302 and response["Location"] == reverse("review:queue")
    refunds = stripe_client.v1.refunds.list(params={"payment_intent": payment.provider_ref}).data
    assert [(r.amount, r.status) for r in refunds] == [(4900, "succeeded")]
    order.refresh_from_db()
    assert (order.status, order.payment_state) == (OrderStatus.REFUNDED, PaymentState.REFUNDED)
    # And the key held for it went back to the pool, none sold
    key_states = set(LicenseKey.objects.filter(product=order.lines.get().product).values_list("status", flat=True))
    assert key_states == {KeyStatus.AVAILABLE}
    # And the case is closed as rejected, the order labelled fraud
    case.refresh_from_db()
    assert (case.status, case.decided_by, case.note) == (ReviewStatus.REJECTED, rita, "Stolen card pattern")
    assert list(FraudLabel.objects.filter(order=order).values_list("source", "is_fraud")) == [("review", True)]
    # And exactly the chosen identifiers are blocklisted
    blocked = set(ListEntry.objects.filter(allow=False).values_list("kind", "value"))
    assert blocked == {("email", "held@example.com"), ("card", "fp4242abcd"), ("ip", "203.0.113.7")}
    # And the refund and the rejection are on the audit trail under her name
    assert order.events.filter(to_status="refunded", actor="reviewer:rita").exists()
    rejected = order.events.get(type="review_rejected")
    assert (rejected.actor, rejected.note) == ("reviewer:rita", "Stolen card pattern")
    assert len(rejected.data["blocked"]) == 3
    # And the shopper was told
    assert [(m.to, "refunded" in m.subject) for m in mail.outbox] == [([order.email], True)]


def test_an_order_left_unreviewed_past_the_deadline_is_refunded_and_the_shopper_told(
    localstripe, stripe_client, make_order, django_capture_on_commit_callbacks, risk_rules
):
    # Given a 24-hour deadline, one case opened 25 hours ago and one opened 23 hours ago
    capture = django_capture_on_commit_callbacks
    overdue = held_order_paid_by_card(make_order, stripe_client, capture, email="late@example.com")
    recent = held_order(make_order, capture, email="recent@example.com")
    now = timezone.now()
    ReviewCase.objects.filter(order=overdue).update(created_at=now - timedelta(hours=25))
    ReviewCase.objects.filter(order=recent).update(created_at=now - timedelta(hours=23))
    mail.outbox.clear()

    # When the deadline sweep runs
    with capture(execute=True):
        expired = review_expire_overdue(now=now)

    # Then only the overdue order is refunded, at Stripe, with the reason on its trail
    assert expired == 1
    overdue.refresh_from_db()
    recent.refresh_from_db()
    assert overdue.status == OrderStatus.REFUNDED and overdue.review_case.status == ReviewStatus.EXPIRED
    assert recent.status == OrderStatus.ON_HOLD and recent.review_case.status == ReviewStatus.OPEN
    refunds = stripe_client.v1.refunds.list(params={"payment_intent": overdue.payments.get().provider_ref}).data
    assert [r.amount for r in refunds] == [4900]
    event = overdue.events.get(to_status="refunded")
    assert (event.actor, event.note) == ("review-deadline", "Not reviewed in time.")
    # And its shopper was told by email
    assert [(m.to, "refunded" in m.subject) for m in mail.outbox] == [([overdue.email], True)]
