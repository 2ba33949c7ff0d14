"""What each kind of product delivers: services, instructions, memberships, a shared code, downloads."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from catalog.models import FulfilmentKind
from catalog.selectors import product_stock_label
from fulfillment.crypto import encrypt_secret
from fulfillment.models import AccessKind, DeliveryAccess, LicenseKey, Membership
from fulfillment.services import memberships_end, order_deliver
from fulfillment.tasks import end_expired_memberships
from orders.models import Order, OrderLine, OrderStatus
from storefront.flow.refunds import refund_issue
from tests.conftest import record_payment
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db


def order_page(client, order: Order, **headers) -> str:
    return client.get(reverse("order-detail", kwargs={"token": order.token}), **headers).content.decode()


# Services


@pytest.mark.parametrize(
    ("locale", "accept_language", "instructions", "other", "booking_label", "subject"),
    [
        ("en", "en", "Email us your booking reference.", "请把预约编号发给我们。", "Booking reference: ", "is ready"),
        ("zh-hans", "zh-hans", "请把预约编号发给我们。", "Email us your booking reference.", "预约编号：", "已就绪"),
    ],
    ids=["english", "chinese"],
)
def test_a_service_gets_a_booking_reference_and_its_instructions_in_the_shoppers_language(
    client,
    make_order,
    django_capture_on_commit_callbacks,
    locale,
    accept_language,
    instructions,
    other,
    booking_label,
    subject,
):
    # Given a service product with instructions in English and Chinese
    product = ProductFactory(
        kind=FulfilmentKind.SERVICE,
        service_instructions="Email us your booking reference.",
        service_instructions_zh_hans="请把预约编号发给我们。",
    )
    order = make_order((product, 1))

    # When the shopper pays
    order = record_payment(order, django_capture_on_commit_callbacks, locale=locale)

    # Then the line has a booking reference, and the delivery email carries the instructions in their language
    assert order.status == OrderStatus.FULFILLED
    reference = order.lines.get().booking_reference
    assert re.fullmatch(r"BK-[0-9A-F]{8}", reference)
    assert len(mail.outbox) == 1
    assert subject in mail.outbox[0].subject
    assert instructions in mail.outbox[0].body and other not in mail.outbox[0].body
    # And the order page shows the reference with the same instructions
    page = order_page(client, order, HTTP_ACCEPT_LANGUAGE=accept_language)
    assert booking_label + reference in page
    assert instructions in page and other not in page


def test_booking_reference_stays_the_same_when_delivery_runs_again(make_order, django_capture_on_commit_callbacks):
    product = ProductFactory(kind=FulfilmentKind.SERVICE)
    order = record_payment(make_order((product, 1)), django_capture_on_commit_callbacks)
    reference = order.lines.get().booking_reference
    OrderLine.objects.filter(order=order).update(delivered_at=None)
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.PAID)

    order_deliver(order_id=order.pk)

    assert order.lines.get().booking_reference == reference


# Redemption instructions


def test_redemption_instructions_come_with_the_keys_on_the_page_in_the_api_and_in_the_email(
    client, make_order, django_capture_on_commit_callbacks
):
    # Given a key product with redemption instructions, bought and delivered
    product = ProductFactory(redemption_instructions="Open the launcher, choose Redeem, paste the key.")
    keys = add_keys(product, 2)
    order = record_payment(make_order((product, 1)), django_capture_on_commit_callbacks)
    line = order.lines.get()

    # Then the delivery email tells how to redeem (without the key)
    assert "choose Redeem" in mail.outbox[0].body
    assert not any(k in mail.outbox[0].body for k in keys)

    # When the shopper reveals the key on the page and through the API
    page = client.post(
        reverse("order-reveal", kwargs={"token": order.token}), {"line": line.pk}, follow=True
    ).content.decode()
    api = client.post(
        reverse("api-order-reveal", kwargs={"token": order.token}), {"line": line.pk}, content_type="application/json"
    ).json()

    # Then the key is shown next to the instructions
    sold = LicenseKey.objects.get(order_line=line).reveal()
    assert re.search(rf'<span class="key">{sold}</span>.*class="instructions">Open the launcher', page, re.S)
    assert api == {
        "line": line.pk,
        "keys": [sold],
        "redemption_instructions": "Open the launcher, choose Redeem, paste the key.",
    }


# Memberships


@pytest.fixture
def membership_product():
    return ProductFactory(
        kind=FulfilmentKind.MEMBERSHIP, membership_group=Group.objects.create(name="Members"), membership_days=30
    )


def test_a_membership_adds_the_buyer_to_the_group_and_the_page_shows_until_when(
    client, make_order, membership_product, django_capture_on_commit_callbacks, time_machine
):
    # Given no account for the buyer's email yet, and a clock that stands still
    time_machine.move_to(timezone.now(), tick=False)
    assert not get_user_model().objects.filter(email="member@example.com").exists()

    # When they buy a 30-day membership
    order = record_payment(
        make_order((membership_product, 1), email="Member@Example.com"), django_capture_on_commit_callbacks
    )

    # Then an account keyed by their email is in the group for 30 days, shown on the order page
    assert order.status == OrderStatus.FULFILLED
    user = get_user_model().objects.get(email="member@example.com")
    assert not user.has_usable_password()
    assert list(user.groups.values_list("name", flat=True)) == ["Members"]
    membership = Membership.objects.get(line__order=order)
    assert (membership.user, membership.ended) == (user, False)
    assert membership.ends_at == timezone.now() + timedelta(days=30)
    assert f"Membership active until {membership.ends_at:%Y-%m-%d}." in order_page(client, order)


def test_an_existing_account_with_that_email_is_the_one_granted(
    make_order, membership_product, django_capture_on_commit_callbacks
):
    existing = get_user_model().objects.create_user("ann", email="ann@example.com", password="pw-ann-123")

    record_payment(make_order((membership_product, 1), email="ann@example.com"), django_capture_on_commit_callbacks)

    assert get_user_model().objects.filter(email__iexact="ann@example.com").count() == 1
    assert existing.groups.filter(name="Members").exists()


def test_memberships_end_when_they_run_out_and_ending_again_does_nothing(
    make_order, membership_product, django_capture_on_commit_callbacks
):
    # Given a member whose 30 days are running
    order = record_payment(
        make_order((membership_product, 1), email="member@example.com"), django_capture_on_commit_callbacks
    )
    user = get_user_model().objects.get(email="member@example.com")

    # When the end runs before the 30 days are over, nothing changes
    assert memberships_end(now=timezone.now() + timedelta(days=29)) == 0
    assert user.groups.filter(name="Members").exists()

    # When it runs after them
    assert memberships_end(now=timezone.now() + timedelta(days=31)) == 1

    # Then the buyer is out of the group, the membership ended, and running again is a no-op
    assert not user.groups.exists()
    assert Membership.objects.get(line__order=order).ended
    assert memberships_end(now=timezone.now() + timedelta(days=32)) == 0
    assert not user.groups.exists()


def test_the_periodic_task_ends_a_membership_whose_time_is_up(
    make_order, membership_product, django_capture_on_commit_callbacks
):
    record_payment(make_order((membership_product, 1), email="member@example.com"), django_capture_on_commit_callbacks)
    Membership.objects.update(ends_at=timezone.now() - timedelta(minutes=1))

    assert end_expired_memberships.delay().get() == 1

    assert not get_user_model().objects.get(email="member@example.com").groups.exists()


def test_a_refund_ends_the_membership_at_once(make_order, membership_product, django_capture_on_commit_callbacks):
    # Given a member with 30 days left
    order = record_payment(
        make_order((membership_product, 1), email="member@example.com"), django_capture_on_commit_callbacks
    )
    user = get_user_model().objects.get(email="member@example.com")
    assert user.groups.filter(name="Members").exists()

    # When the order is refunded
    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=order, actor="staff:ann", reason="Changed their mind.")

    # Then they are out of the group now, and the membership ends now, not in 30 days
    assert not user.groups.exists()
    membership = Membership.objects.get(line__order=order)
    assert membership.ended
    assert membership.ends_at <= timezone.now()


# One shared (reusable) code


def unchecked_order(product, *, email: str) -> Order:
    """An order placed without going through checkout (checkout is covered separately)."""
    order = Order.objects.create(
        email=email, currency="USD", subtotal_amount=product.price_amount, total_amount=product.price_amount
    )
    OrderLine.objects.create(
        order=order,
        product=product,
        product_name=product.name,
        kind=product.kind,
        unit_price=product.price_amount,
        quantity=1,
        line_total=product.price_amount,
    )
    return order


@pytest.fixture
def shared_code_product():
    product = ProductFactory(name="Site licence")
    product.shared_key_ciphertext = encrypt_secret("SHARED-CODE")
    product.save()
    return product


def test_a_shared_code_is_shown_to_every_buyer_without_a_key_pool(
    client, shared_code_product, django_capture_on_commit_callbacks
):
    # Given a product sold with one shared code and no pool at all
    assert not LicenseKey.objects.exists()
    orders = [unchecked_order(shared_code_product, email=f"buyer{i}@example.com") for i in range(3)]

    # When three shoppers pay and reveal
    revealed = []
    for order in orders:
        order = record_payment(order, django_capture_on_commit_callbacks)
        assert order.status == OrderStatus.FULFILLED
        page = client.post(
            reverse("order-reveal", kwargs={"token": order.token}), {"line": order.lines.get().pk}, follow=True
        ).content.decode()
        revealed += re.findall(r'<span class="key">([^<]+)</span>', page)

    # Then each one sees the same code, each reveal is logged, and no pool key was used
    assert revealed == ["SHARED-CODE"] * 3
    assert DeliveryAccess.objects.filter(kind=AccessKind.REVEAL).count() == 3
    assert not LicenseKey.objects.exists()


def test_a_shared_code_product_is_always_shown_in_stock(client, shared_code_product):
    assert product_stock_label(shared_code_product) == {"state": "in_stock", "count": None}
    page = client.get(reverse("product-detail", kwargs={"slug": shared_code_product.slug})).content.decode()
    assert "stock-in_stock" in page and "Add to cart" in page


def test_a_shared_code_product_can_be_checked_out(make_order, shared_code_product, django_capture_on_commit_callbacks):
    order = make_order((shared_code_product, 2))

    order = record_payment(order, django_capture_on_commit_callbacks)

    assert order.status == OrderStatus.FULFILLED


# Downloads


@pytest.fixture
def download_product(settings, tmp_path):
    """A download product (3 downloads, 48 hours) whose file lives in a throwaway storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(tmp_path)}},
    }
    product = ProductFactory(kind=FulfilmentKind.DOWNLOAD, download_max=3, download_ttl_hours=48)
    product.download_file.save("guide.pdf", ContentFile(b"%PDF-1.4 the guide"), save=True)
    return product


def download_link(client, order: Order) -> str:
    links = re.findall(r'href="(/download/[^"]+/)"', order_page(client, order))
    assert len(links) == 1
    return links[0]


def test_each_download_streams_the_file_is_counted_and_logged_until_the_limit(
    client, make_order, download_product, django_capture_on_commit_callbacks
):
    # Given a delivered download allowed 3 times
    order = record_payment(make_order((download_product, 1)), django_capture_on_commit_callbacks)
    link = download_link(client, order)
    assert "3 downloads left" in order_page(client, order)

    # When the shopper downloads 3 times
    for _ in range(3):
        response = client.get(link, REMOTE_ADDR="198.51.100.23", HTTP_USER_AGENT="Firefox/140")
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == b"%PDF-1.4 the guide"

    # Then each download was counted and logged with where from and with what
    line = order.lines.get()
    assert line.download_count == 3
    accesses = DeliveryAccess.objects.filter(line=line)
    assert [(a.kind, a.ip, a.user_agent, a.order_id) for a in accesses] == [
        (AccessKind.DOWNLOAD, "198.51.100.23", "Firefox/140", order.pk)
    ] * 3

    # And a fourth is refused, uncounted, and the page says the limit is reached
    refused = client.get(link)
    assert refused.status_code == 410
    assert b"%PDF" not in refused.content
    assert order.lines.get().download_count == 3
    assert accesses.count() == 3
    assert "Download limit reached." in order_page(client, order)


def test_a_download_link_expires_after_the_products_lifetime(
    client, make_order, download_product, django_capture_on_commit_callbacks, time_machine
):
    # Given a download link issued now, valid 48 hours
    time_machine.move_to(timezone.now(), tick=False)
    order = record_payment(make_order((download_product, 1)), django_capture_on_commit_callbacks)
    link = download_link(client, order)

    # When it is followed 47 hours later it still works
    time_machine.shift(timedelta(hours=47))
    assert client.get(link).status_code == 200

    # When it is followed 49 hours later it is gone, and that attempt is neither counted nor logged
    time_machine.shift(timedelta(hours=2))
    response = client.get(link)
    assert response.status_code == 410
    assert b"%PDF" not in response.content
    assert order.lines.get().download_count == 1
    assert DeliveryAccess.objects.filter(kind=AccessKind.DOWNLOAD).count() == 1


def test_a_download_link_is_gone_after_a_refund(
    client, make_order, download_product, django_capture_on_commit_callbacks
):
    order = record_payment(make_order((download_product, 1)), django_capture_on_commit_callbacks)
    link = download_link(client, order)
    assert client.get(link).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        refund_issue(order=order, actor="staff:ann", reason="Refunded.")

    response = client.get(link)
    assert response.status_code == 410
    assert b"%PDF" not in response.content
    assert "/download/" not in order_page(client, order)
