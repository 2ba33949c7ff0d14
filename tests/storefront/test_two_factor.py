"""Staff accounts that are hard to take over: a second factor (storefront.twofactor) for admin and the review
queue, required for staff who can refund, export keys or edit payment channels; recovery codes; every sign-in
step audited."""

import importlib
import ipaddress
import re
import secrets
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from storefront.models import StaffSignIn, StaffSignInKind
from tests.factories import force_login_unverified, second_factor_device

pytestmark = pytest.mark.django_db

PASSWORD = "pw-staff-two-factor-1"
reviewers_migration = importlib.import_module("riskengine.migrations.0004_reviewers_group")


@pytest.fixture(autouse=True)
def frozen(time_machine):
    """Codes follow the clock: each test runs at a fixed moment and moves it on purpose."""
    time_machine.move_to(timezone.now().replace(microsecond=0), tick=False)
    return time_machine


def browser() -> Client:
    """A client from an address no other test uses (the login rate limit counts per address)."""
    address = ipaddress.ip_address(f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}")
    return Client(REMOTE_ADDR=str(address), HTTP_USER_AGENT="pytest")  # written as the database writes it back


def staff(username: str, *perms: str):
    user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def reviewer(username: str = "rita"):
    reviewers_migration.create_reviewers_group(apps, None)
    user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD)
    user.groups.add(Group.objects.get(name=reviewers_migration.REVIEWERS_GROUP))
    return user


def code_of(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, digits=device.digits):06d}"


def password_sign_in(client: Client, username: str, login: str = "admin:login", then: str = "/admin/"):
    response = client.post(reverse(login), {"username": username, "password": PASSWORD, "next": then})
    assert response.status_code == 302, response.content.decode()[:500]
    return response


def signed_in_steps(username: str) -> list[str]:
    return list(StaffSignIn.objects.filter(username=username).order_by("pk").values_list("kind", flat=True))


@pytest.mark.parametrize(
    "permission", ["orders.refund_order", "fulfillment.export_keys", "payments.change_paymentchannel", "superuser"]
)
def test_staff_who_can_refund_export_or_edit_channels_cannot_reach_admin_without_a_second_factor(permission):
    # Given staff holding one of the sensitive permissions, signed in with their password only
    user = staff("clerk", "orders.view_order") if permission != "superuser" else staff("clerk")
    if permission == "superuser":
        get_user_model().objects.filter(pk=user.pk).update(is_superuser=True)
    else:
        staff_perm = permission.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=staff_perm[0], codename=staff_perm[1]))
    client = browser()
    password_sign_in(client, "clerk")

    # When they open admin pages, or post an action
    pages = [
        client.get("/admin/"),
        client.get(reverse("admin:orders_order_changelist")),
        client.get("/admin/dashboard/"),
    ]
    posted = client.post(
        reverse("admin:orders_order_changelist"), {"action": "refund_in_full", "_selected_action": [1]}
    )

    # Then each sends them to set up a second factor first, and back where they were going after
    for response in [*pages, posted]:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("twofactor:setup") + "?next=")
    assert pages[1]["Location"].endswith("next=%2Fadmin%2Forders%2Forder%2F")


def test_setting_up_an_app_shows_the_qr_code_then_recovery_codes_once_and_opens_admin(frozen):
    # Given a merchant with the refund permission, signed in with the password
    user = staff("mira", "orders.view_order", "orders.refund_order")
    client = browser()
    password_sign_in(client, "mira")

    # When they open the set-up page
    page = client.get(reverse("twofactor:setup") + "?next=/admin/")

    # Then it shows the app's QR code as SVG and its key, and keeps them from any cache
    html = page.content.decode()
    device = TOTPDevice.objects.get(user=user, confirmed=False)
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    assert re.search(r"<svg[^>]*viewBox=", html) and "<path" in html
    assert 'style="' not in html  # the page's CSP allows no style attribute
    assert page.context["secret"] in device.config_url and len(page.context["secret"]) == 32

    # When they type a wrong code, then the right one
    wrong = client.post(reverse("twofactor:setup"), {"token": "000000" if code_of(device) != "000000" else "111111"})
    frozen.shift(timedelta(seconds=5))  # django-otp makes a device that refused a code wait a second
    return_page = client.post(reverse("twofactor:setup"), {"token": code_of(device)})

    # Then the wrong one is refused, the right one turns the second factor on and shows ten recovery codes
    assert wrong.status_code == 400
    assert return_page.status_code == 200
    codes = return_page.context["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert set(StaticToken.objects.filter(device__user=user).values_list("token", flat=True)) == set(codes)
    device.refresh_from_db()
    assert device.confirmed
    # And admin opens; the set-up page never shows the codes again
    assert client.get("/admin/").status_code == 200
    again = client.get(reverse("twofactor:setup")).content.decode()
    assert not any(code in again for code in codes)
    assert signed_in_steps("mira") == ["password_ok", "second_factor_failed", "enrolled"]


def test_every_sign_in_of_someone_with_an_app_asks_for_its_code_and_a_code_works_once(frozen):
    # Given a merchant whose app is set up
    user = staff("mira", "orders.view_order", "orders.refund_order")
    device = second_factor_device(user)
    first = browser()
    password_sign_in(first, "mira", then="/admin/orders/order/")

    # When they open admin, they are asked for the code
    asked = first.get("/admin/orders/order/")
    assert asked.status_code == 302 and asked["Location"].startswith(reverse("twofactor:verify"))
    verify_url = asked["Location"]
    form = first.get(verify_url).content.decode()
    # (tests/e2e/test_staff.py fills #id_token and submits the first form: the code's, before the logout's)
    assert form.index('id="id_token"') < form.index('type="submit"') < form.index(reverse("admin:logout"))

    # When they type a wrong code, then (the throttle's second later) the right one
    refused = first.post(verify_url, {"token": "12345x"})
    frozen.shift(timedelta(seconds=2))
    code = code_of(device)
    accepted = first.post(verify_url, {"token": code})

    # Then the wrong one is refused, the right one opens the page they wanted, in a new session
    assert refused.status_code == 400
    assert accepted.status_code == 302 and accepted["Location"] == "/admin/orders/order/"
    assert first.get("/admin/orders/order/").status_code == 200
    # And the same code, seen over a shoulder, does not sign in anyone else
    thief = browser()
    password_sign_in(thief, "mira")
    assert thief.post(verify_url, {"token": code}).status_code == 400
    assert thief.get("/admin/").status_code == 302
    steps = signed_in_steps("mira")
    assert steps == ["password_ok", "second_factor_failed", "verified", "password_ok", "second_factor_failed"]


def test_a_recovery_code_signs_in_once(frozen, client):
    # Given a merchant with an app and recovery codes (made while signed in with the app)
    user = staff("mira", "orders.refund_order")
    client.force_login(user)  # verified: tests/conftest.py
    codes = client.post(reverse("twofactor:setup"), {"action": "codes"}).context["codes"]
    assert len(codes) == 10

    # When, phone lost, they sign in with a recovery code (typed with a space and in capitals)
    lost = browser()
    password_sign_in(lost, "mira")
    typed = codes[0][:4].upper() + " " + codes[0][4:].upper()
    used = lost.post(reverse("twofactor:verify"), {"token": typed, "next": "/admin/"})

    # Then they are in, and that code is spent
    assert used.status_code == 302 and lost.get("/admin/").status_code == 200
    again = browser()
    password_sign_in(again, "mira")
    frozen.shift(timedelta(seconds=5))
    assert again.post(reverse("twofactor:verify"), {"token": codes[0]}).status_code == 400
    assert StaticToken.objects.filter(device__user=user).count() == 9
    assert {"codes_replaced", "recovery_code", "second_factor_failed"} <= set(signed_in_steps("mira"))


def test_a_password_alone_cannot_replace_the_second_factor():
    # Given a merchant with an app, and someone who has only their password
    user = staff("mira", "orders.refund_order")
    second_factor_device(user)
    thief = browser()
    password_sign_in(thief, "mira")

    # When the thief opens the set-up page to enrol their own phone, or asks for new recovery codes
    page = thief.get(reverse("twofactor:setup"))
    posted = thief.post(reverse("twofactor:setup"), {"action": "codes"})

    # Then they are asked for the existing app's code instead, and nothing changed
    assert page.status_code == posted.status_code == 302
    assert page["Location"].startswith(reverse("twofactor:verify"))
    assert list(TOTPDevice.objects.filter(user=user).values_list("confirmed", flat=True)) == [True]
    assert not StaticToken.objects.filter(device__user=user).exists()


def test_staff_without_sensitive_permissions_may_choose_a_second_factor_and_are_then_asked_for_it():
    # Given a clerk who may only view orders
    user = staff("carl", "orders.view_order")
    client = browser()
    password_sign_in(client, "carl")

    # Then admin opens with the password alone, and offers the set-up
    index = client.get("/admin/")
    assert index.status_code == 200
    assert reverse("twofactor:setup") in index.content.decode()

    # When they set up an app, their next sign-in asks for it
    second_factor_device(user)
    later = browser()
    password_sign_in(later, "carl")
    assert later.get("/admin/")["Location"].startswith(reverse("twofactor:verify"))


def test_reviewers_with_an_app_are_asked_for_it_before_the_queue():
    # Given two reviewers (not staff), one with an app
    reviewer("rita")
    with_app = reviewer("rob")
    device = second_factor_device(with_app)

    # When each signs in at the review login
    rita, rob = browser(), browser()
    password_sign_in(rita, "rita", login="review:login", then="/review/")
    password_sign_in(rob, "rob", login="review:login", then="/review/")

    # Then Rita (no app, none required) sees the queue; Rob is asked for his code first, then sees it
    assert rita.get("/review/").status_code == 200
    asked = rob.get("/review/")
    assert asked.status_code == 302 and asked["Location"].startswith(reverse("twofactor:verify"))
    verify = rob.get(asked["Location"]).content.decode()
    assert reverse("review:logout") in verify  # a reviewer's way out is the queue's logout
    assert rob.post(asked["Location"], {"token": code_of(device)})["Location"] == "/review/"
    assert rob.get("/review/").status_code == 200


def test_sign_ins_and_failures_are_audited_with_address_and_browser():
    staff("mira", "orders.view_order")
    client = browser()

    refused = client.post(reverse("admin:login"), {"username": "mira", "password": "guess", "next": "/admin/"})
    nobody = client.post(reverse("admin:login"), {"username": "ghost", "password": "guess", "next": "/admin/"})
    password_sign_in(client, "mira")
    client.post(reverse("admin:logout"))

    assert refused.status_code == nobody.status_code == 200
    rows = list(StaffSignIn.objects.order_by("pk").values_list("username", "kind", "user__username", "user_agent"))
    assert rows == [
        ("mira", StaffSignInKind.PASSWORD_REFUSED, None, "pytest"),
        ("ghost", StaffSignInKind.PASSWORD_REFUSED, None, "pytest"),
        ("mira", StaffSignInKind.PASSWORD_ACCEPTED, "mira", "pytest"),
        ("mira", StaffSignInKind.SIGNED_OUT, "mira", "pytest"),
    ]
    assert {row.ip for row in StaffSignIn.objects.all()} == {client.defaults["REMOTE_ADDR"]}
    assert {row.path for row in StaffSignIn.objects.all()} == {reverse("admin:login"), reverse("admin:logout")}


def test_where_it_is_not_required_a_superuser_reaches_admin_with_the_password(settings):
    # Given the demo's setting (storefront/settings_demo.py)
    settings.STAFF_SECOND_FACTOR_REQUIRED = False
    boss = staff("boss")
    get_user_model().objects.filter(pk=boss.pk).update(is_superuser=True)
    client = browser()

    password_sign_in(client, "boss")

    assert client.get("/admin/").status_code == 200


def test_the_helper_for_tests_signs_in_unverified_on_request(client):
    # tests.factories.force_login_unverified is the password step alone: admin asks for the set-up
    boss = staff("boss", "fulfillment.export_keys")
    force_login_unverified(client, boss)
    assert client.get("/admin/")["Location"].startswith(reverse("twofactor:setup"))
    # and the suite's client.force_login signs staff in with a verified second factor
    client.force_login(boss)
    assert client.get("/admin/").status_code == 200


def test_shoppers_signing_in_elsewhere_are_not_in_the_staff_record():
    # Given a shopper account (not staff, no review permission)
    get_user_model().objects.create_user("sam", "sam@example.com", PASSWORD)

    # When they sign in (and fail once) outside the admin and review logins
    assert Client().login(username="sam", password="wrong") is False
    assert Client().login(username="sam", password=PASSWORD) is True

    # Then nothing is written to the staff sign-in record
    assert not StaffSignIn.objects.exists()
