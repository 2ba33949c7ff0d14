"""Privacy by default: a shopper downloads their data as JSON or has it erased (orders kept for accounting, dispute
evidence until the window closes), and the purge beat blanks old IPs, user agents and device ids."""

import json
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalog.models import FulfilmentKind
from fulfillment.models import DeliveryAccess
from orders.models import Order, OrderEvent, Subscription, SubscriptionStatus
from payments.models import Dispute, DisputeStatus, Payment
from storefront.celery import app as celery_app
from storefront.demo_shop import PAGES
from storefront.flow.privacy_jobs import ERASED_DOMAIN, email_digest, personal_data_purge
from storefront.models import PrivacyErasure, ShopperSignInLink
from storefront.privacy import privacy_erase
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

BUYER = "buyer@example.com"


@pytest.fixture(autouse=True)
def _generous_sign_in_rate(settings):
    settings.ACCOUNT_SIGN_IN_RATE = 1_000_000


@pytest.fixture
def order_at(make_order, time_machine):
    """An order of `email` placed (and paid, unless told) `days_ago`, with a device id and a logged download."""

    def make(days_ago: int, *, email: str = BUYER, paid: bool = True) -> Order:
        placed = timezone.now() - timedelta(days=days_ago)
        time_machine.move_to(placed, tick=False)
        order = make_order((ProductFactory(kind=FulfilmentKind.DOWNLOAD), 1), email=email)
        Order.objects.filter(pk=order.pk).update(
            device_id="dev-123", paid_at=placed if paid else None, ship_name="Ada Lovelace", card_fingerprint="fp_1"
        )
        DeliveryAccess.objects.create(
            order=order, line=order.lines.get(), kind="download", ip="198.51.100.5", user_agent="Firefox"
        )
        time_machine.move_to(placed + timedelta(days=days_ago), tick=False)
        order.refresh_from_db()
        return order

    return make


def sign_in(client: Client, email: str = BUYER) -> None:
    mail.outbox.clear()
    client.post(reverse("account-sign-in"), {"action": "link", "link-email": email})
    token = urlsplit(re.search(r"(https?://\S+)", mail.outbox[0].body).group(1)).fragment
    assert client.post(reverse("account-link"), {"token": token}).status_code == 302


def dispute_on(order: Order, status: str = DisputeStatus.NEEDS_RESPONSE) -> Dispute:
    payment = Payment.objects.create(
        order=order, provider="stripe", provider_ref=f"pi_{order.pk}", amount=order.total_amount, currency="USD"
    )
    return Dispute.objects.create(
        payment=payment,
        order=order,
        provider="stripe",
        provider_ref=f"dp_{order.pk}",
        status=status,
        evidence={"customer_email": order.email, "purchase_ip": "203.0.113.7", "order_number": order.number},
    )


def test_the_shopper_downloads_everything_kept_about_their_address_as_json(client, order_at):
    # Given two orders of the buyer and one of someone else
    mine = [order_at(3), order_at(1)]
    other = order_at(2, email="other@example.com")
    sign_in(client)

    # When they download their data
    response = client.get(reverse("account-data"))

    # Then it is a JSON attachment with their orders, IPs, devices and download log, and nothing of the other's
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith("attachment;")
    data = json.loads(response.content)
    assert data["email"] == BUYER and data["account"]["email"] == BUYER
    assert [order["number"] for order in data["orders"]] == [order.number for order in mine]
    first = data["orders"][0]
    assert (first["ip_address"], first["user_agent"], first["device_id"]) == ("203.0.113.7", "pytest", "dev-123")
    assert first["shipping_address"]["name"] == "Ada Lovelace"
    assert first["key_reveals_and_downloads"][0]["ip_address"] == "198.51.100.5"
    assert other.number not in response.content.decode()
    assert len(data["sign_in_links"]) == 1


def test_erasure_erases_old_orders_at_once_and_keeps_recent_evidence_until_the_window_closes(client, order_at):
    # Given an order paid long ago, a recent one, an unpaid one, a live subscription and a signed-in account
    old, recent, unpaid = order_at(200), order_at(10), order_at(5, paid=False)
    membership = ProductFactory(kind=FulfilmentKind.SERVICE)
    now = timezone.now()
    subscription = Subscription.objects.create(
        email=BUYER,
        product=membership,
        interval="month",
        unit_price=900,
        currency="USD",
        provider="stripe",
        current_period_start=now,
        current_period_end=now + timedelta(days=30),
    )
    sign_in(client)

    # When they ask for their data to be erased
    page = client.post(reverse("account-erase"), {"confirm": "on"})

    # Then they are signed out, the account is closed, the subscription cancelled, their links gone
    assert page.status_code == 200
    assert "_auth_user_id" not in client.session
    assert not get_user_model().objects.filter(email__iexact=BUYER).exists()
    assert not get_user_model().objects.filter(is_active=True, username=BUYER).exists()
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELLED
    assert not ShopperSignInLink.objects.exists()
    # the old and the unpaid orders are erased, keeping their amounts; the recent one keeps its evidence
    for order in (old, unpaid):
        order.refresh_from_db()
        assert order.email.endswith(f"@{ERASED_DOMAIN}")
        assert (order.purchase_ip, order.user_agent, order.device_id, order.ship_name) == (None, "", "", "")
        assert order.card_fingerprint == "" and order.total_amount > 0
        assert DeliveryAccess.objects.get(order=order).ip is None
    recent.refresh_from_db()
    assert (recent.email, recent.purchase_ip) == (BUYER, "203.0.113.7")
    erasure = PrivacyErasure.objects.get()
    assert erasure.completed_at is None
    assert erasure.erase_after == recent.paid_at + timedelta(days=settings.PRIVACY_DISPUTE_WINDOW_DAYS)

    # When the purge runs before the window closes, and again after
    personal_data_purge(now=erasure.erase_after - timedelta(minutes=1))
    recent.refresh_from_db()
    assert recent.email == BUYER
    personal_data_purge(now=erasure.erase_after)

    # Then the recent order is erased too, and the request is done, keeping only the address's digest
    recent.refresh_from_db()
    assert recent.email.endswith(f"@{ERASED_DOMAIN}") and recent.purchase_ip is None
    erasure.refresh_from_db()
    assert erasure.completed_at is not None and erasure.email == ""
    assert erasure.email_digest == email_digest(BUYER)
    subscription.refresh_from_db()
    assert BUYER not in subscription.email


def test_erasure_leaves_orders_placed_afterwards_alone(order_at, time_machine):
    recent = order_at(10)
    privacy_erase(email=BUYER, actor="test")
    time_machine.shift(timedelta(seconds=5))
    later = order_at(0)

    personal_data_purge(now=recent.paid_at + timedelta(days=settings.PRIVACY_DISPUTE_WINDOW_DAYS + 1))

    later.refresh_from_db()
    assert later.email == BUYER and later.purchase_ip == "203.0.113.7"


def test_an_order_under_dispute_keeps_its_evidence_until_the_dispute_closes(order_at):
    # Given an order paid long ago whose dispute is open, and the buyer's erasure request
    order = order_at(200)
    dispute = dispute_on(order)
    outcome = privacy_erase(email=BUYER, actor="test")
    assert outcome.orders_kept == 1

    # When the purge runs the next day, the evidence is still there
    personal_data_purge(now=timezone.now() + timedelta(days=2))
    order.refresh_from_db()
    assert order.email == BUYER and order.purchase_ip == "203.0.113.7"

    # When the dispute is won and the purge runs again
    Dispute.objects.filter(pk=dispute.pk).update(status=DisputeStatus.WON)
    personal_data_purge(now=timezone.now() + timedelta(days=4))

    # Then the order and the dispute's copy of the evidence are erased; the dispute's number stays
    order.refresh_from_db()
    dispute.refresh_from_db()
    assert order.email.endswith(f"@{ERASED_DOMAIN}")
    assert dispute.evidence == {"order_number": order.number}


def test_the_purge_blanks_network_data_past_its_age_except_under_dispute(settings, order_at):
    # Given orders placed 31 and 29 days ago, a disputed one 60 days ago, and a 30-day age
    settings.PRIVACY_NETWORK_DATA_DAYS = 30
    old, young, disputed = order_at(31), order_at(29), order_at(60)
    dispute_on(disputed)
    OrderEvent.objects.filter(order=old, type="order_created").update(data={"total": 1, "device_fingerprint": "abc"})

    # When the purge runs (twice: it is idempotent)
    first = personal_data_purge()
    second = personal_data_purge()

    # Then the old order lost its IP, user agent, device ids and download IPs, and kept its email and amounts
    old.refresh_from_db()
    assert (old.purchase_ip, old.user_agent, old.device_id) == (None, "", "")
    assert old.email == BUYER and old.total_amount > 0
    assert DeliveryAccess.objects.filter(order=old, ip=None, user_agent="").count() == 1
    assert OrderEvent.objects.get(order=old, type="order_created").data == {"total": 1}
    # and the younger and the disputed ones kept theirs
    for order in (young, disputed):
        order.refresh_from_db()
        assert (order.purchase_ip, order.device_id) == ("203.0.113.7", "dev-123")
        assert DeliveryAccess.objects.get(order=order).ip == "198.51.100.5"
    assert (first.orders, first.accesses) == (1, 1)
    assert (second.orders, second.accesses, second.events) == (0, 0, 0)


def test_the_purge_deletes_expired_sign_in_links(client):
    client.post(reverse("account-sign-in"), {"action": "link", "link-email": BUYER})
    assert ShopperSignInLink.objects.count() == 1

    personal_data_purge(now=timezone.now() + timedelta(minutes=settings.ACCOUNT_LINK_MINUTES - 1))
    assert ShopperSignInLink.objects.count() == 1
    personal_data_purge(now=timezone.now() + timedelta(minutes=settings.ACCOUNT_LINK_MINUTES + 1))
    assert ShopperSignInLink.objects.count() == 0


def test_the_purge_is_a_registered_beat_job():
    entry = settings.CELERY_BEAT_SCHEDULE["purge-personal-data"]

    assert entry["task"] in celery_app.tasks
    assert entry["schedule"] <= timedelta(days=1)


def test_erasing_needs_the_tick_and_a_signed_in_shopper(client, order_at):
    order = order_at(200)
    assert client.post(reverse("account-erase"), {"confirm": "on"}).status_code == 302  # to the sign-in page
    sign_in(client)

    unticked = client.post(reverse("account-erase"), {})

    assert unticked.status_code == 200
    order.refresh_from_db()
    assert order.email == BUYER
    assert not PrivacyErasure.objects.exists()


def test_the_demo_privacy_page_says_what_is_kept_and_for_how_long():
    page = next(page for page in PAGES if page["slug"] == "privacy")

    for body in (page["body"], page["body_zh_hans"]):
        assert "120" in body and "180" in body
        assert "/account/" in body


def test_license_activations_are_exported_and_their_machine_names_erased(
    make_order, django_capture_on_commit_callbacks
):
    from fulfillment.licenses import license_activate
    from fulfillment.models import LicenseActivation
    from storefront.flow.privacy_jobs import order_personal_data_erase
    from storefront.privacy import privacy_export
    from tests.licensing import bought_key, generated_product

    order, key = bought_key(make_order, django_capture_on_commit_callbacks, generated_product(), email=BUYER)
    license_activate(license_key=key, instance_name="Ada's laptop")

    exported = privacy_export(email=BUYER)["license_activations"]
    assert [(a["order"], a["machine"]) for a in exported] == [(order.number, "Ada's laptop")]
    assert key not in json.dumps(privacy_export(email=BUYER))  # the key itself stays on the order page

    order_personal_data_erase(order=order)
    assert list(LicenseActivation.objects.values_list("name", flat=True)) == ["erased"]
