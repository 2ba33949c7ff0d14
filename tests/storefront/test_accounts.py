"""Optional shopper accounts: a link mailed to the address signs in (once, for a few minutes), a password may be set,
and the account shows every order and subscription of that address. Staff never sign in through it."""

import logging
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalog.models import FulfilmentKind
from fulfillment.models import DeliveryAccess
from orders.models import Subscription
from storefront.models import ShopperSignInLink
from tests.conftest import record_payment
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db

LINK = re.compile(r"(https?://\S+)")


@pytest.fixture(autouse=True)
def _generous_sign_in_rate(settings):
    """Every test client comes from 127.0.0.1: only the rate-limit test below counts against a real limit."""
    settings.ACCOUNT_SIGN_IN_RATE = 1_000_000


def ask_for_link(client: Client, email: str):
    return client.post(reverse("account-sign-in"), {"action": "link", "link-email": email})


def mailed_token(message) -> str:
    """The token from a sign-in email: the fragment of its one link."""
    url = LINK.search(message.body).group(1)
    return urlsplit(url).fragment


def sign_in_by_link(client: Client, email: str):
    mail.outbox.clear()
    ask_for_link(client, email)
    assert len(mail.outbox) == 1, "one sign-in email"
    return client.post(reverse("account-link"), {"token": mailed_token(mail.outbox[0])})


def test_a_mailed_link_signs_in_and_the_account_lists_every_order_of_the_address(client, make_order):
    # Given two guest orders of one address and an order of another
    mine = [make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1), email="buyer@example.com") for _ in range(2)]
    other = make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1), email="someone.else@example.com")

    # When the buyer asks for a link (in another case) and opens it
    asked = ask_for_link(client, "Buyer@Example.com")
    assert asked.status_code == 200
    assert mail.outbox[0].to == ["buyer@example.com"]
    signed_in = client.post(reverse("account-link"), {"token": mailed_token(mail.outbox[0])})

    # Then they are signed in and their account lists both orders, with links to the order pages, and no other
    assert signed_in.status_code == 302 and signed_in.url == reverse("account")
    page = client.get(reverse("account"))
    assert page.status_code == 200
    assert page["Cache-Control"] == "no-store"
    html = page.content.decode()
    for order in mine:
        assert reverse("order-detail", kwargs={"token": order.token}) in html
    assert other.number not in html and other.token not in html


def test_the_token_travels_in_the_fragment_and_is_kept_only_as_a_hash(client, caplog):
    # When a link is asked for and used, with every log line captured
    caplog.set_level(logging.DEBUG)
    ask_for_link(client, "buyer@example.com")
    url = urlsplit(LINK.search(mail.outbox[0].body).group(1))
    token = url.fragment
    client.post(reverse("account-link"), {"token": token})

    # Then the token is only in the fragment (never sent to a server), and neither the database nor a log holds it
    assert len(token) >= 40
    assert url.path == reverse("account-link") and token not in url.path + url.query
    link = ShopperSignInLink.objects.get()
    assert token not in (link.token_hash, link.email)
    assert all(token not in record.getMessage() for record in caplog.records)


def test_a_link_works_once(client):
    ask_for_link(client, "buyer@example.com")
    token = mailed_token(mail.outbox[0])
    assert client.post(reverse("account-link"), {"token": token}).status_code == 302

    other_browser = Client()
    again = other_browser.post(reverse("account-link"), {"token": token})

    assert again.status_code == 400
    assert other_browser.get(reverse("account")).url == reverse("account-sign-in")


def test_a_link_expires(client, settings, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    ask_for_link(client, "buyer@example.com")
    token = mailed_token(mail.outbox[0])

    time_machine.shift(timedelta(minutes=settings.ACCOUNT_LINK_MINUTES, seconds=1))
    late = client.post(reverse("account-link"), {"token": token})

    assert late.status_code == 400
    assert client.get(reverse("account")).url == reverse("account-sign-in")


def test_opening_the_link_page_spends_nothing(client):
    # Given a link, whose page a mail scanner opens first
    ask_for_link(client, "buyer@example.com")
    token = mailed_token(mail.outbox[0])
    assert Client().get(reverse("account-link")).status_code == 200

    # Then the shopper can still use it
    assert client.post(reverse("account-link"), {"token": token}).status_code == 302


def test_link_requests_are_rate_limited_per_ip(settings, time_machine):
    # Given one IP that has used up its requests for the hour
    time_machine.move_to(timezone.now(), tick=False)
    settings.ACCOUNT_SIGN_IN_RATE = 3
    asker = Client(REMOTE_ADDR="198.51.100.21")
    for i in range(3):
        assert ask_for_link(asker, f"guess{i}@example.com").status_code == 200

    # When it asks once more; and another IP asks
    refused = ask_for_link(asker, "buyer@example.com")
    sent_before = len(mail.outbox)
    other = ask_for_link(Client(REMOTE_ADDR="198.51.100.22"), "buyer@example.com")

    # Then the first is refused and sends nothing; the other is answered
    assert refused.status_code == 429
    assert all(message.to != ["buyer@example.com"] for message in mail.outbox[:sent_before])
    assert other.status_code == 200
    assert mail.outbox[-1].to == ["buyer@example.com"]


def test_one_address_gets_a_few_links_an_hour_whatever_the_ips(time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    for i in range(8):
        ask_for_link(Client(REMOTE_ADDR=f"198.51.100.{30 + i}"), "victim@example.com")

    assert len(mail.outbox) == 5


def test_the_answer_is_the_same_for_staff_addresses_and_they_get_no_link(client):
    get_user_model().objects.create_user("merchant", "merchant@example.com", "merchant-pass", is_staff=True)

    staff = ask_for_link(client, "merchant@example.com")
    shopper = ask_for_link(client, "buyer@example.com")

    assert [message.to for message in mail.outbox] == [["buyer@example.com"]]
    strip = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')
    assert strip.sub("", staff.content.decode()) == strip.sub("", shopper.content.decode())


def test_a_permission_holder_cannot_sign_in_by_a_link_made_before_the_permission(client):
    # Given a link made while the address was a shopper's
    ask_for_link(client, "reviewer@example.com")
    token = mailed_token(mail.outbox[0])
    user = get_user_model().objects.create_user("reviewer", "reviewer@example.com")
    user.user_permissions.add(Permission.objects.get(codename="review_orders"))

    # When it is used after the address was given a staff permission
    response = client.post(reverse("account-link"), {"token": token})

    # Then it signs nobody in
    assert response.status_code == 400
    assert "_auth_user_id" not in client.session


def test_staff_cannot_sign_in_with_their_password_here(client):
    get_user_model().objects.create_user("merchant", "merchant@example.com", "merchant-pass", is_staff=True)

    response = client.post(
        reverse("account-sign-in"),
        {"action": "password", "password-email": "merchant@example.com", "password-password": "merchant-pass"},
    )

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_a_signed_in_shopper_gets_nothing_from_admin_or_the_review_queue(client):
    sign_in_by_link(client, "buyer@example.com")

    response = client.get("/admin/")

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
    assert client.get(reverse("review:queue")).status_code == 403
    user = get_user_model().objects.get(email="buyer@example.com")
    assert not (user.is_staff or user.is_superuser or user.has_usable_password())


def test_a_shopper_sets_a_password_and_signs_in_with_it(client):
    # Given a shopper signed in by a link, who sets a password
    sign_in_by_link(client, "buyer@example.com")
    saved = client.post(
        reverse("account-password"),
        {"new_password1": "correct horse battery 9", "new_password2": "correct horse battery 9"},
    )
    assert saved.status_code == 302
    client.post(reverse("account-sign-out"))
    assert client.get(reverse("account")).url == reverse("account-sign-in")

    # When they sign in with a wrong password, then with theirs (any case of the address)
    form = {"action": "password", "password-email": "BUYER@example.com", "password-password": "wrong one"}
    wrong = client.post(reverse("account-sign-in"), form)
    right = client.post(reverse("account-sign-in"), {**form, "password-password": "correct horse battery 9"})

    # Then only the right one signs in
    assert wrong.status_code == 200 and "do not match" in wrong.content.decode()
    assert right.status_code == 302
    assert client.get(reverse("account")).status_code == 200


def test_changing_a_password_asks_for_the_current_one(client):
    sign_in_by_link(client, "buyer@example.com")
    user = get_user_model().objects.get(email="buyer@example.com")
    user.set_password("first password 123")
    user.save()
    client.force_login(user)

    refused = client.post(
        reverse("account-password"),
        {"old_password": "not it", "new_password1": "second password 456", "new_password2": "second password 456"},
    )

    assert refused.status_code == 200
    user.refresh_from_db()
    assert user.check_password("first password 123")


def test_checkout_fills_the_signed_in_shoppers_email_and_guests_give_theirs(client):
    product = ProductFactory(kind=FulfilmentKind.SERVICE)
    client.post(reverse("cart-add", kwargs={"slug": product.slug}), {"quantity": 1})
    guest_form = client.get(reverse("checkout")).content.decode()

    sign_in_by_link(client, "buyer@example.com")
    client.post(reverse("cart-add", kwargs={"slug": product.slug}), {"quantity": 1})
    shopper_form = client.get(reverse("checkout")).content.decode()

    email_input = re.compile(r'<input[^>]*name="email"[^>]*>')
    assert 'value="' not in email_input.search(guest_form).group(0)
    assert 'value="buyer@example.com"' in email_input.search(shopper_form).group(0)
    assert len(re.findall(r'<input(?![^>]*type="hidden")[^>]*name="', guest_form.split('id="checkout-form"')[1])) == 1


def test_the_account_lists_subscriptions_with_links_to_their_pages(client, membership):
    now = timezone.now()
    subscription = Subscription.objects.create(
        email="buyer@example.com",
        product=membership,
        interval="month",
        unit_price=900,
        currency="USD",
        provider="stripe",
        current_period_start=now,
        current_period_end=now + timedelta(days=30),
    )
    Subscription.objects.create(
        email="other@example.com",
        product=membership,
        interval="month",
        unit_price=900,
        currency="USD",
        provider="stripe",
        current_period_start=now,
        current_period_end=now + timedelta(days=30),
    )
    sign_in_by_link(client, "buyer@example.com")

    html = client.get(reverse("account")).content.decode()

    assert html.count(reverse("subscription-manage", kwargs={"token": "x"}).rsplit("x", 1)[0]) == 1
    assert reverse("subscription-manage", kwargs={"token": subscription.token}) in html


def test_an_order_opened_from_the_account_reveals_its_key_with_the_same_evidence_log(
    client, make_order, django_capture_on_commit_callbacks
):
    # Given a paid guest order of a key, and its buyer signed in
    product = ProductFactory(kind=FulfilmentKind.LICENSE_KEY)
    add_keys(product, 1)
    order = record_payment(make_order((product, 1)), django_capture_on_commit_callbacks)
    sign_in_by_link(client, "buyer@example.com")
    order_url = reverse("order-detail", kwargs={"token": order.token})
    assert order_url in client.get(reverse("account")).content.decode()

    # When they reveal the key from that order page
    client.post(reverse("order-reveal", kwargs={"token": order.token}), {"line": order.lines.get().pk})
    page = client.get(order_url, HTTP_USER_AGENT="account-browser")

    # Then the key is shown and the reveal is logged as any other
    assert f"KEY-{product.pk}-00000" in page.content.decode()
    access = DeliveryAccess.objects.get(order=order)
    assert (access.kind, access.user_agent) == ("reveal", "account-browser")


def test_account_pages_send_guests_and_staff_to_the_sign_in_page(client, admin_user):
    for name in ("account", "account-password", "account-data", "account-erase"):
        assert client.get(reverse(name)).url == reverse("account-sign-in")
    client.force_login(admin_user)
    assert client.get(reverse("account")).url == reverse("account-sign-in")


def test_the_sign_in_page_and_its_email_speak_simplified_chinese(client, settings):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"

    page = client.get(reverse("account-sign-in")).content.decode()
    ask_for_link(client, "buyer@example.com")

    assert "登录您的账户" in page and "把登录链接发到我的邮箱" in page
    assert mail.outbox[0].subject == "您的登录链接"
    assert "只能使用一次" in mail.outbox[0].body


def test_the_sign_in_page_opens_without_errors_and_offers_both_ways(client):
    html = client.get(reverse("account-sign-in")).content.decode()

    assert "errorlist" not in html
    assert 'name="link-email"' in html and 'name="password-password"' in html
