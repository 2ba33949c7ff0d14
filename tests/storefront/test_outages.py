"""Shoppers during an outage: Redis away, they keep buying; PostgreSQL away, they get a readable 503, never a 500.

Redis is "away" by pointing the cache at a port nobody listens on (connection refused, as when Redis has
just been killed). PostgreSQL is away for real: this test's own connection is pointed at a dead port.
"""

import logging
import secrets

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalog.models import FulfilmentKind
from orders.models import Order
from storefront.outages import cache_breaker
from tests.factories import ProductFactory, add_keys, pass_second_factor
from tests.faults import database_unreachable
from tests.harness import free_port

pytestmark = pytest.mark.django_db

PASSWORD = "outage-pass-1"
LIMITED = "Too many attempts. Please try again later."


def fresh_ip() -> str:
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


@pytest.fixture
def redis_down(settings, monkeypatch, time_machine):
    """The cache (rate limits, sessions) pointed at a dead port; the breaker reset, and kept open for the test
    (it would try Redis again after 10 s of a real clock). The rate-limit clock stands still in one window."""
    time_machine.move_to(timezone.now(), tick=False)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    settings.SESSION_ENGINE = "storefront.sessions"
    cache_breaker.reset()
    monkeypatch.setattr(cache_breaker, "retry_seconds", 3600.0)
    yield
    cache_breaker.reset()


def cache_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "storefront.outages" and "cache" in r.getMessage()]


def test_with_redis_down_a_shopper_fills_a_cart_and_checks_out_and_one_warning_is_logged(redis_down, caplog):
    # Given Redis is down, and a product with keys
    caplog.set_level(logging.WARNING, logger="storefront.outages")
    product = ProductFactory()
    add_keys(product, 2)
    shopper = Client(REMOTE_ADDR=fresh_ip())

    # When a shopper adds it to the cart, looks at the cart and checks out
    shopper.post(reverse("cart-add", args=[product.slug]), {"quantity": "1"})
    cart = shopper.get(reverse("cart"))
    checkout = shopper.post(reverse("checkout"), {"email": "buyer@example.com"})

    # Then the cart kept its line (the session lives in the database) and the order is placed
    assert cart.status_code == 200 and product.name in cart.content.decode()
    assert checkout.status_code == 302 and checkout["Location"].startswith("/pay/")
    assert Order.objects.filter(email="buyer@example.com").count() == 1
    # and the outage was logged once, not on every request
    assert len(cache_warnings(caplog)) == 1


def test_with_redis_down_the_api_checkout_and_the_order_lookup_answer(redis_down, localstripe):
    product = ProductFactory(kind=FulfilmentKind.SERVICE)
    client = Client(REMOTE_ADDR=fresh_ip())

    created = client.post(
        "/api/checkout/",
        {"email": "api@example.com", "lines": [{"product": product.slug, "quantity": 1}]},
        content_type="application/json",
    )
    order = Order.objects.get(email="api@example.com")
    lookup = client.post(reverse("order-lookup"), {"email": "api@example.com", "number": order.number})

    assert created.status_code == 201
    assert lookup.status_code == 200


def test_with_redis_down_checkout_limits_still_hold_in_the_web_process(redis_down, settings):
    # Given a limit of 2 checkouts an hour
    settings.CHECKOUT_RATE = 2
    product = ProductFactory(kind=FulfilmentKind.SERVICE)
    client = Client(REMOTE_ADDR=fresh_ip())

    def checkout(n: int):
        body = {"email": f"limited{n}@example.com", "lines": [{"product": product.slug, "quantity": 1}]}
        return client.post("/api/checkout/", body, content_type="application/json")

    # When one address checks out three times while Redis is down
    statuses = [checkout(n).status_code for n in range(3)]

    # Then the limit is counted in the process's memory: two go through, the third is refused, no 500
    assert statuses == [201, 201, 429]


def test_with_redis_down_staff_log_in_and_a_login_flood_is_still_stopped(redis_down, settings):
    # Given a limit of 2 login attempts an hour and a staff account
    settings.LOGIN_RATE = 2
    boss = get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    staff = Client(REMOTE_ADDR=fresh_ip())
    url = reverse("admin:login")

    # When staff log in (a wrong guess first) with their second factor, use admin, then an attacker keeps guessing
    assert staff.post(url, {"username": "boss", "password": "wrong"}).status_code == 200
    logged_in = staff.post(url, {"username": "boss", "password": PASSWORD})
    pass_second_factor(staff, boss)
    admin_index = staff.get(reverse("admin:index"))
    attacker = Client(REMOTE_ADDR=fresh_ip())
    answers = [attacker.post(url, {"username": "boss", "password": f"guess-{i}"}).status_code for i in range(3)]

    # Then the login works (its session in the database), and the third guess is refused
    assert logged_in.status_code == 302
    assert admin_index.status_code == 200 and SESSION_KEY in admin_index.wsgi_request.session
    assert answers == [200, 200, 429]
    # and logging out works too
    assert staff.post(reverse("admin:logout")).status_code == 200


# PostgreSQL away --------------------------------------------------------------------------------------------


@pytest.fixture
def database_down(transactional_db):
    """PostgreSQL away for this test's requests (see tests.faults.database_unreachable)."""
    with database_unreachable():
        yield


@pytest.mark.parametrize(
    ("language", "title", "message"),
    [
        ("en", "Please try again in a minute", "The shop is briefly unavailable. Please try again in a minute."),
        ("zh-hans", "请稍后再试", "商店暂时无法访问，请一分钟后再试。"),
    ],
)
def test_with_the_database_down_a_page_answers_503_with_a_readable_try_again_page(
    database_down, language, title, message
):
    response = Client(HTTP_ACCEPT_LANGUAGE=language).get("/p/anything/?from=ad")

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert f"<title>{title}</title>" in page and message in page
    assert f'<html lang="{language}">' in page
    assert 'href="/p/anything/?from=ad"' in page  # try again: the same page


def test_with_the_database_down_the_api_answers_503_with_its_error_envelope(database_down):
    response = Client().get("/api/products/", HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 503
    assert response.json() == {
        "error": {"code": "unavailable", "message": "The shop is briefly unavailable. Please try again in a minute."}
    }


def test_with_the_database_down_a_payment_webhook_answers_503_so_the_provider_delivers_it_again(database_down):
    from tests.conftest import payment_intent_event, signed_stripe_event

    payload, header = signed_stripe_event(payment_intent_event(event_id="evt_db_down", intent_id="pi_x", amount=100))

    response = Client().post(
        "/payments/webhook/stripe/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"


def test_with_the_broker_down_find_my_order_answers_503_not_500(make_order, monkeypatch):
    # Given Redis, the broker, refusing connections when the order link email is to be sent
    import kombu.exceptions

    from orders import tasks as order_tasks

    def broker_down(*args, **kwargs):
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(order_tasks.send_order_links, "delay", broker_down)
    make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1), email="finder@example.com")

    # When the shopper asks for their order links
    response = Client(REMOTE_ADDR=fresh_ip()).post(reverse("order-lookup"), {"email": "finder@example.com"})

    # Then they are asked to try again in a minute
    assert response.status_code == 503
    assert "Please try again in a minute" in response.content.decode()
