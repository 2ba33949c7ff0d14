"""Channels, routing and failover: which ways to pay a shopper is offered, and what happens when one is down."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from catalog.models import FulfilmentKind
from orders.models import OrderStatus
from payments.health import breaker_record, call_log_flush, channel_health, health_counters_reset, provider_call
from payments.models import CallOutcome, Payment, PaymentChannel, ProviderCall
from payments.providers.base import PaymentDeclined, PaymentError, ProviderUnavailable
from payments.routing import channel_refusal, channels_for_order
from tests.factories import ProductFactory, add_keys
from tests.payments.test_channel_health import counters_cache

DEAD = "http://127.0.0.1:9"  # nothing listens: connections are refused at once
# The instant the breaker unit tests stop the clock at: a parametrize list is built when the module is collected,
# maybe minutes before its test runs, so it cannot read the clock. Tests that place orders stop the clock at the
# real time instead: the risk engine's counters in Redis, shared with the whole run, count back from it.
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def health_counters_of_this_test(settings):
    """Channel health counters of this test only: the default channels have the same ids in every test and run,
    and their counters live in the test Redis shared with other runs (see tests/payments/test_channel_health.py)."""
    settings.CACHES = counters_cache()
    health_counters_reset()
    yield
    health_counters_reset()


def channel(code: str, **fields) -> PaymentChannel:
    defaults = {
        "provider": "stripe",
        "display_name": code.title(),
        "public_key_env": "STRIPE_PUBLISHABLE_KEY",
        "secret_env": "STRIPE_SECRET_KEY",
        "webhook_env": "STRIPE_WEBHOOK_SECRET",
    }
    return PaymentChannel.objects.create(code=code, **{**defaults, **fields})


@pytest.fixture
def order(make_order):
    return make_order((ProductFactory(kind=FulfilmentKind.SERVICE, price_amount=5000, currency="USD"), 1))


def codes(order) -> list[str]:
    return [offer.channel.code for offer in channels_for_order(order=order)]


# --- routing ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_channels_are_offered_by_priority_then_expected_fee(order):
    PaymentChannel.objects.all().delete()
    channel("dear", priority=10, fee_percent=Decimal("3.9"), fee_fixed=30)
    channel("cheap", priority=10, fee_percent=Decimal("1.5"), fee_fixed=25)
    channel("fixed-heavy", priority=10, fee_percent=Decimal("0"), fee_fixed=400)  # 4.00 on a 50.00 order
    channel("backup", priority=20, fee_percent=Decimal("0"), fee_fixed=0)

    offers = channels_for_order(order=order)

    # 1.5% of 5000 + 25 = 100; 3.9% + 30 = 225; fixed 400 - the fixed fee counts
    assert [(o.channel.code, o.expected_fee) for o in offers] == [
        ("cheap", 100),
        ("dear", 225),
        ("fixed-heavy", 400),
        ("backup", 0),
    ]


@pytest.mark.django_db
def test_health_breaks_ties_between_equal_channels(order):
    PaymentChannel.objects.all().delete()
    flaky, steady = channel("flaky", priority=5), channel("steady", priority=5)
    with provider_call(channel=flaky, operation="create_payment"):
        pass
    with pytest.raises(ProviderUnavailable), provider_call(channel=flaky, operation="create_payment"):
        raise ProviderUnavailable("refused")
    with provider_call(channel=steady, operation="create_payment"):
        pass

    assert codes(order) == ["steady", "flaky"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "refusal"),
    [
        ({"enabled": False}, "disabled"),
        ({"currencies": "EUR,GBP"}, "currency"),
        ({"min_amount": 5001}, "below minimum"),
        ({"max_amount": 4999}, "above maximum"),
        ({"countries": "DE,FR"}, "country"),
        ({"secret_env": "NO_SUCH_VARIABLE_SET"}, "credentials missing"),
        ({"breaker_open_until": NOW + timedelta(minutes=1)}, "breaker open"),
    ],
)
def test_a_channel_is_left_out_when_it_cannot_take_the_order(order, fields, refusal, time_machine):
    time_machine.move_to(NOW, tick=False)
    candidate = channel("candidate", **fields)

    assert channel_refusal(candidate, order=order, country="US") == refusal
    assert "candidate" not in codes(order)


@pytest.mark.django_db
def test_a_channel_that_fits_is_offered_at_its_limits(order):
    fits = channel("fits", currencies="usd, eur", countries="US", min_amount=5000, max_amount=5000)
    assert channel_refusal(fits, order=order, country="US") == ""


@pytest.mark.django_db
def test_the_shoppers_country_comes_from_the_shipping_address_then_the_ip(make_order):
    from orders.services import ShippingAddress
    from payments.routing import shopper_country

    physical = ProductFactory(kind=FulfilmentKind.PHYSICAL)
    shipped = make_order((physical, 1), shipping=ShippingAddress("A", "1 Road", "Paris", "75001", "fr"))
    digital = make_order((ProductFactory(kind=FulfilmentKind.SERVICE), 1))
    digital.purchase_ip = "8.8.8.8"

    assert shopper_country(shipped) == "FR"
    assert shopper_country(digital) == "US"


@pytest.mark.django_db
def test_a_channel_disabled_in_admin_is_gone_from_the_very_next_checkout(admin_client, order, paypal):
    # Given both channels are offered on the pay page
    page = admin_client.get(f"/pay/{order.token}/")
    assert b'data-channel="paypal"' in page.content

    # When the merchant disables PayPal in admin (the changelist's editable column)
    paypal_channel = PaymentChannel.objects.get(code="paypal")
    response = admin_client.post(
        f"/admin/payments/paymentchannel/{paypal_channel.pk}/change/",
        {
            **{f: getattr(paypal_channel, f) for f in ("code", "provider", "display_name", "priority", "api_base")},
            "display_name_zh_hans": paypal_channel.display_name_zh_hans,
            "enabled": "",
            "currencies": "",
            "countries": "",
            "fee_percent": "3.49",
            "fee_fixed": "49",
            "public_key_env": paypal_channel.public_key_env,
            "secret_env": paypal_channel.secret_env,
            "webhook_env": paypal_channel.webhook_env,
            "breaker_threshold": 3,
            "breaker_cooldown_seconds": 120,
        },
    )
    assert response.status_code == 302, response.content

    # Then the next look at the pay page offers only the card
    page = admin_client.get(f"/pay/{order.token}/")
    assert b'data-channel="paypal"' not in page.content
    assert codes(order) == ["stripe"]


# --- health and the breaker -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_call_is_recorded_with_its_outcome_and_latency():
    stripe = PaymentChannel.objects.get(code="stripe")
    for error in (
        None,
        PaymentDeclined("no"),
        ProviderUnavailable("down", timeout=True),
        ProviderUnavailable("refused"),
    ):
        try:
            with provider_call(channel=stripe, operation="create_payment"):
                if error is not None:
                    raise error
        except PaymentError:
            pass
    call_log_flush()  # the rows queued in Redis, written
    calls = list(ProviderCall.objects.filter(channel=stripe).order_by("pk").values_list("outcome", "error"))
    assert calls == [
        ("success", ""),
        ("decline", "PaymentDeclined"),
        ("timeout", "ProviderUnavailable"),
        ("error", "ProviderUnavailable"),
    ]
    health = channel_health(channel_ids=[stripe.pk])[stripe.pk]
    assert (health.calls, health.failures, health.timeouts) == (4, 2, 1)
    assert health.success_rate == 0.5


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "counts"), [(500, True), (503, True), (401, True), (429, True), (400, False)])
def test_provider_errors_count_against_health_but_rejected_requests_do_not(status, counts):
    stripe = PaymentChannel.objects.get(code="stripe")
    error = PaymentError("x")
    error.status = status
    with pytest.raises(PaymentError), provider_call(channel=stripe, operation="refund"):
        raise error
    stripe.refresh_from_db()
    assert stripe.failures_in_row == (1 if counts else 0)


@pytest.mark.django_db
def test_the_breaker_opens_after_the_threshold_and_a_success_closes_it(time_machine):
    time_machine.move_to(NOW, tick=False)
    stripe = PaymentChannel.objects.get(code="stripe")
    stripe.breaker_threshold, stripe.breaker_cooldown_seconds = 3, 60
    stripe.save()

    breaker_record(channel=stripe, failed=True)
    breaker_record(channel=stripe, failed=True)
    assert not stripe.breaker_open()
    breaker_record(channel=stripe, failed=True)
    assert stripe.breaker_open()
    assert stripe.breaker_open_until == NOW + timedelta(seconds=60)

    # after the cool-down one trial call fails: open again at once, for a whole cool-down from then
    time_machine.shift(timedelta(seconds=61))
    stripe.refresh_from_db()
    assert not stripe.breaker_open()
    breaker_record(channel=stripe, failed=True)
    assert stripe.breaker_open()
    assert stripe.breaker_open_until == NOW + timedelta(seconds=121)

    breaker_record(channel=stripe, failed=False)
    stripe.refresh_from_db()
    assert (stripe.failures_in_row, stripe.breaker_open_until) == (0, None)


# --- failover ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_when_the_first_channel_refuses_connections_checkout_completes_on_the_second(
    client, make_order, paypal, django_capture_on_commit_callbacks, time_machine
):
    # The clock stands still, so the breaker's 2-minute cool-down is still running when the second shopper
    # comes, however slow the machine
    time_machine.move_to(timezone.now(), tick=False)
    # Given a card channel whose API refuses connections, opening its breaker at the first failure
    PaymentChannel.objects.filter(code="stripe").update(api_base=DEAD, breaker_threshold=1)
    product = ProductFactory(price_amount=1500)
    add_keys(product, 2)
    order = make_order((product, 1))

    # When the shopper opens the pay page
    page = client.get(f"/pay/{order.token}/")

    # Then they are offered PayPal at once, told why, with nothing to enter again
    assert page.status_code == 200
    assert b'id="paypal-button"' in page.content
    assert b'id="failover-notice"' in page.content
    assert b"Card is unavailable right now" in page.content
    stripe = PaymentChannel.objects.get(code="stripe")
    assert stripe.breaker_open()
    call_log_flush()  # the rows queued in Redis, written
    assert list(ProviderCall.objects.filter(channel=stripe).values_list("outcome", flat=True)) == ["error"]

    # And paying there delivers the order
    payment = Payment.objects.get(order=order)
    assert payment.channel.code == "paypal"
    paypal.approve(payment.provider_ref)
    with django_capture_on_commit_callbacks(execute=True):
        client.get(f"/pay/{order.token}/return/?token={payment.provider_ref}&PayerID=P")
    order.refresh_from_db()
    assert order.status == OrderStatus.FULFILLED

    # And the next shopper is not made to wait on the broken channel: it is skipped while its breaker is open
    second = make_order((product, 1), email="next@example.com")
    page = client.get(f"/pay/{second.token}/")
    assert b'id="paypal-button"' in page.content
    assert b'id="failover-notice"' not in page.content
    call_log_flush()  # the rows queued in Redis, written
    assert ProviderCall.objects.filter(channel=stripe).count() == 1


@pytest.mark.django_db
def test_when_every_channel_is_down_the_shopper_is_told_and_the_order_waits(client, order, paypal):
    PaymentChannel.objects.filter(code="stripe").update(api_base=DEAD)
    paypal.stop()
    try:
        page = client.get(f"/pay/{order.token}/")
    finally:
        paypal.start(port=int(paypal.url.rsplit(":", 1)[1]))
    assert page.status_code == 200
    assert b"Payment is unavailable right now" in page.content
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING_PAYMENT
    assert not Payment.objects.filter(order=order).exists()


@pytest.mark.django_db
def test_a_timeout_is_recorded_as_a_timeout(order, paypal, settings):
    from payments.services import NoChannelAvailable
    from storefront.flow.checkout import payment_start_for_order

    PaymentChannel.objects.filter(code="stripe").update(enabled=False)
    settings.PAYPAL_TIMEOUT_SECONDS = 0.3
    paypal.fail("/v2/checkout/orders", "timeout", seconds=1.0)

    with pytest.raises(NoChannelAvailable):
        payment_start_for_order(order=order)

    call_log_flush()  # the rows queued in Redis, written
    call = ProviderCall.objects.get(channel__code="paypal", operation="create_payment")
    assert call.outcome == "timeout"
    assert call.latency_ms >= 250


@pytest.mark.django_db
def test_the_admin_shows_each_channels_success_rate_latency_and_breaker(admin_client):
    stripe = PaymentChannel.objects.get(code="stripe")
    for outcome, latency in ((CallOutcome.SUCCESS, 100), (CallOutcome.SUCCESS, 300), (CallOutcome.TIMEOUT, 200)):
        ProviderCall.objects.create(channel=stripe, operation="create_payment", outcome=outcome, latency_ms=latency)

    page = admin_client.get("/admin/payments/paymentchannel/").content.decode()

    assert "67% of 3" in page
    assert "200 ms" in page
    assert "Fees by channel and month" in page


@pytest.mark.django_db
def test_credentials_are_names_of_variables_and_their_values_are_never_shown(admin_client, monkeypatch):
    monkeypatch.setenv("SHOP_STRIPE_SECRET", "sk_live_must_never_be_shown")
    stripe = PaymentChannel.objects.get(code="stripe")
    stripe.secret_env = "SHOP_STRIPE_SECRET"
    stripe.save()

    page = admin_client.get(f"/admin/payments/paymentchannel/{stripe.pk}/change/").content.decode()

    assert "SHOP_STRIPE_SECRET" in page
    assert "sk_live_must_never_be_shown" not in page


@pytest.mark.django_db
def test_webhooks_stop_waiting_on_a_provider_whose_breaker_opened(client, make_order, settings, time_machine):
    # Given Stripe accepts connections and never answers, and a breaker that opens after 2 failures (its
    # 2-minute cool-down outlasting the five webhooks however slow the machine: the clock stands still)
    import socket

    from tests.conftest import payment_intent_event, signed_stripe_event

    time_machine.move_to(timezone.now(), tick=False)
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    settings.STRIPE_TIMEOUT_SECONDS = 0.3
    PaymentChannel.objects.filter(code="stripe").update(
        api_base=f"http://127.0.0.1:{hole.getsockname()[1]}", breaker_threshold=2
    )
    product = ProductFactory(kind=FulfilmentKind.SERVICE)
    stripe = PaymentChannel.objects.get(code="stripe")
    try:
        # When five paid orders' webhooks arrive, each needing the charge's details
        for i in range(5):
            order = make_order((product, 1), email=f"b{i}@example.com")
            Payment.objects.create(
                order=order, channel=stripe, provider="stripe", provider_ref=f"pi_hole_{i}", amount=order.total_amount,
                currency="USD",
            )  # fmt: skip
            payload, header = signed_stripe_event(
                payment_intent_event(event_id=f"evt_hole_{i}", intent_id=f"pi_hole_{i}", amount=order.total_amount)
            )
            response = client.post(
                "/payments/stripe/webhook/", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
            )
            assert response.status_code == 200
    finally:
        hole.close()

    # Then all are paid, but only the first two waited on Stripe: the open breaker spared the rest
    assert Payment.objects.filter(channel=stripe, status="succeeded").count() == 5
    call_log_flush()  # the rows queued in Redis, written
    assert ProviderCall.objects.filter(channel=stripe, operation="fetch", outcome="timeout").count() == 2
