import json
import time
import uuid

import pytest
import stripe
from django.conf import settings
from django.test import Client

from devtools.localstripe_process import localstripe_start
from orders.cart import CartLine
from storefront.flow.checkout import checkout_create_order
from storefront.scrub import luhn_valid
from storefront.twofactor.policy import second_factor_required
from tests.factories import DJANGO_FORCE_LOGIN, sign_in_verified


@pytest.fixture(scope="session")
def localstripe():
    """A real localstripe process on 127.0.0.1 for the whole session; the shop's SDK points at it."""
    server = localstripe_start()
    previous = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = server.url
    yield server
    settings.STRIPE_API_BASE = previous
    server.stop()


@pytest.fixture
def localstripe_sends_webhooks(live_server, localstripe):
    """localstripe posting its signed events to the running shop (live_server) for this test only: the endpoint
    is removed afterwards, so later tests' payments are not posted at a server whose test has ended."""
    localstripe.register_webhook(
        url=live_server.url + "/payments/stripe/webhook/", secret=settings.STRIPE_WEBHOOK_SECRET
    )
    yield live_server
    localstripe.unregister_webhook()


@pytest.fixture(scope="session")
def paypal_fake(tmp_path_factory):
    """The project's fake PayPal (devtools/paypal_fake.py) on 127.0.0.1 for the whole session."""
    from devtools.paypal_fake import paypal_fake_start

    fake = paypal_fake_start(client_id="fake-client", client_secret="fake-secret", webhook_id="WH-SUITE")
    trust = tmp_path_factory.mktemp("paypal") / "fake-ca.pem"
    trust.write_bytes(fake.ca_pem)
    fake.trust_path = str(trust)
    yield fake
    fake.stop()


@pytest.fixture
def paypal(paypal_fake, settings, monkeypatch, db):
    """The 'paypal' channel enabled against the fake, trusting its certificate; state reset per test."""
    from payments.models import PaymentChannel
    from payments.providers import provider_cache_clear
    from payments.providers.paypal_webhooks import clear_certificate_cache

    provider_cache_clear()  # no HTTP session kept alive to a fake that a test restarted
    paypal_fake.reset()
    paypal_fake.drop_webhooks(False)
    monkeypatch.setenv("PAYPAL_TEST_CLIENT_ID", paypal_fake.client_id)
    monkeypatch.setenv("PAYPAL_TEST_CLIENT_SECRET", paypal_fake.client_secret)
    monkeypatch.setenv("PAYPAL_TEST_WEBHOOK_ID", paypal_fake.webhook_id)
    settings.PAYPAL_CERT_HOSTS = ["127.0.0.1"]
    settings.PAYPAL_CERT_ALLOW_HTTP = True
    settings.PAYPAL_CERT_TRUST = paypal_fake.trust_path
    clear_certificate_cache()
    PaymentChannel.objects.filter(code="paypal").update(
        enabled=True,
        api_base=paypal_fake.url,
        public_key_env="PAYPAL_TEST_CLIENT_ID",
        secret_env="PAYPAL_TEST_CLIENT_SECRET",
        webhook_env="PAYPAL_TEST_WEBHOOK_ID",
    )
    yield paypal_fake
    clear_certificate_cache()


@pytest.fixture
def stripe_client(localstripe):
    return stripe.StripeClient("sk_test_suite", base_addresses={"api": localstripe.url}, max_network_retries=0)


def signed_stripe_event(event: dict, secret: str | None = None, timestamp: int | None = None) -> tuple[bytes, str]:
    """A Stripe event body and a Stripe-Signature header for it (valid unless told another secret)."""
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(
        payload, secret or settings.STRIPE_WEBHOOK_SECRET, timestamp=timestamp or int(time.time())
    )
    return payload.encode(), header


def payment_intent_event(
    *,
    event_id: str,
    intent_id: str,
    amount: int,
    currency: str = "usd",
    event_type: str = "payment_intent.succeeded",
    order_number: str = "",
) -> dict:
    status = "succeeded" if event_type == "payment_intent.succeeded" else "requires_payment_method"
    intent = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": currency,
        "status": status,
        "metadata": {"order_number": order_number},
        "last_payment_error": None if status == "succeeded" else {"message": "Your card was declined."},
    }
    return {"id": event_id, "object": "event", "type": event_type, "data": {"object": intent}}


@pytest.fixture
def make_order():
    def make(*lines: tuple, email: str = "buyer@example.com", shipping=None, coupon: str = ""):
        return checkout_create_order(
            lines=[CartLine(product=p, quantity=q) for p, q in lines],
            email=email,
            shipping=shipping,
            locale="en",
            purchase_ip="203.0.113.7",
            user_agent="pytest",
            coupon=coupon,
        )

    return make


TEST_CARD = {"number": "4242424242424242", "exp_month": "12", "exp_year": "2031", "cvc": "123"}


def record_payment(order, capture, *, locale: str | None = None):
    """Record the order's payment without a provider and run delivery as after commit.

    `capture` is pytest-django's django_capture_on_commit_callbacks; `locale` sets the shopper's language.
    """
    from orders.models import Order
    from storefront.flow.payment import order_mark_paid

    if locale:
        Order.objects.filter(pk=order.pk).update(locale=locale)
    with capture(execute=True):
        order_mark_paid(
            order_id=order.pk,
            amount=order.total_amount,
            currency=order.currency,
            payment_ref=f"pi_{order.number}",
            actor="test",
        )
    order.refresh_from_db()
    return order


@pytest.fixture
def celery_worker_on_redis():
    """A real Celery worker consuming from the test Redis broker (not eager)."""
    from celery.contrib.testing.worker import start_worker

    from storefront.celery import app as celery_app

    celery_app.conf.task_always_eager = False
    celery_app.control.purge()
    try:
        with start_worker(celery_app, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10):
            yield
    finally:
        celery_app.conf.task_always_eager = True


@pytest.fixture(autouse=True)
def _default_payment_channels(request):
    """The channels migration payments/0003 creates, and the reviewers group of riskengine/0004, back after a
    transactional test flushed them."""
    if request.node.get_closest_marker("django_db") is None:
        yield
        return
    request.getfixturevalue("_django_db_helper")
    import importlib

    from django.apps import apps

    from payments.models import PaymentChannel

    for fields in importlib.import_module("payments.migrations.0003_default_channels").CHANNELS:
        PaymentChannel.objects.get_or_create(code=fields["code"], defaults=fields)
    importlib.import_module("riskengine.migrations.0004_reviewers_group").create_reviewers_group(apps, None)
    yield


@pytest.fixture(autouse=True)
def _forced_staff_logins_pass_the_second_factor():
    """client.force_login skips the password; for staff whom admin asks for a second factor (storefront.twofactor)
    it skips that too, as if they had entered their code (tests.factories.sign_in_verified). Tests of the second
    factor itself sign in with tests.factories.force_login_unverified, or through the login pages."""

    def force_login(client, user, backend=None):
        if second_factor_required(user):
            sign_in_verified(client, user, backend)
        else:
            DJANGO_FORCE_LOGIN(client, user, backend)

    with pytest.MonkeyPatch.context() as patch:  # its own: a test's monkeypatch.undo() leaves it in place
        patch.setattr(Client, "force_login", force_login)
        yield


@pytest.fixture(autouse=True)
def _velocity_keys_of_this_test(settings):
    """Velocity counters of this test only: a recorded charge (one card fingerprint) paid in many tests must not
    count as one card under many emails in the next."""
    settings.RISK_VELOCITY_PREFIX = f"{settings.RISK_VELOCITY_PREFIX}:{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session", autouse=True)
def _velocity_keys_of_this_run():
    """Delete this run's risk velocity counters from the shared test Redis when the run ends."""
    yield
    import redis as redis_lib

    if not settings.REDIS_URL:
        return
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{settings.RISK_VELOCITY_PREFIX}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    except redis_lib.RedisError:
        pass


# --- Rate limits and secrets in logs, for the whole run ------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _rate_limits_of_this_run():
    """Rate-limit counters of this run only, and limits the rest of the suite never reaches.

    Every test client comes from 127.0.0.1, so checkouts and logins of unrelated tests (and of other runs on
    the same Redis) would otherwise add up to the limit. tests/storefront/test_security.py sets real limits
    in the tests that are about them.
    """
    import os

    limits = ("RATE_LIMIT_PREFIX", "CHECKOUT_RATE", "LOGIN_RATE", "FREE_ORDERS_PER_DAY")
    saved = {name: getattr(settings, name) for name in limits}
    settings.RATE_LIMIT_PREFIX = f"rl:test{os.getpid()}"
    settings.CHECKOUT_RATE = settings.LOGIN_RATE = settings.FREE_ORDERS_PER_DAY = 1_000_000
    yield
    for name, value in saved.items():
        setattr(settings, name, value)


PAYPAL_FAKE_CLIENT = ("fake-client", "fake-secret")  # what the paypal_fake fixture above is started with


def secrets_in(lines, secrets: dict[str, str]) -> list[str]:
    """The lines that hold a secret, each redacted and named with what it holds.

    A secret is any value of `secrets` (name -> value), a Stripe secret or restricted key (sk_/rk_), a full
    card number (15-16 digits, optionally grouped, passing the Luhn check), or a license key of the kind
    tests/factories.add_keys makes (<PREFIX>-<product id>-<5 digits>).
    """
    import re

    patterns = {
        "a Stripe secret key": re.compile(r"(?<![A-Za-z0-9])[sr]k_(?:test|live)_[A-Za-z0-9_]+"),
        "a card number": re.compile(r"(?<![\w-])[2-6](?:[ -]?\d){14,15}(?![\w-])"),
        "a test license key": re.compile(r"(?<![\w-])[A-Z][A-Z0-9]*-\d+-\d{5}(?![\w-])"),
    }
    found = []
    for line in lines:
        named = [name for name, value in secrets.items() if value and value in line]
        redacted = line
        for name in named:
            redacted = redacted.replace(secrets[name], f"[{name}]")
        for kind, pattern in patterns.items():
            hits = [m for m in pattern.findall(redacted) if kind != "a card number" or luhn_valid(re.sub(r"\D", "", m))]
            for hit in hits:
                redacted = redacted.replace(hit, f"[{kind}]")
            named += [kind] if hits else []
        if named:
            found.append(f"{', '.join(named)}: {redacted}")
    return found


def known_secrets() -> dict[str, str]:
    """The configured secrets of this run by name, and the fake PayPal's client secret (also as Basic auth)."""
    import base64

    values = {
        "SECRET_KEY": settings.SECRET_KEY,
        "KEY_FINGERPRINT_SECRET": settings.KEY_FINGERPRINT_SECRET,
        "STRIPE_WEBHOOK_SECRET": settings.STRIPE_WEBHOOK_SECRET,
        "STRIPE_SECRET_KEY": settings.STRIPE_SECRET_KEY,
        "PayPal client secret": PAYPAL_FAKE_CLIENT[1],
        "PayPal Basic credentials": base64.b64encode(":".join(PAYPAL_FAKE_CLIENT).encode()).decode(),
    }
    values |= {f"KEY_ENCRYPTION_KEYS[{i}]": key for i, key in enumerate(settings.KEY_ENCRYPTION_KEYS)}
    return {name: value for name, value in values.items() if value}


class _SecretWatch:
    """A logging handler that formats every record it sees and keeps those holding a secret, with the test."""

    def __init__(self):
        import logging

        watch = self

        class Handler(logging.Handler):
            def emit(self, record):
                try:
                    line = self.format(record)
                except Exception:  # a record that cannot be formatted is the emitter's bug, not a leak
                    line = str(record.msg)
                for offender in secrets_in([line], watch.secrets):
                    watch.offenders.append(f"{watch.test or '(outside a test)'}: {offender}")

        self.handler = Handler(level=logging.NOTSET)
        self.handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.secrets: dict[str, str] = {}
        self.offenders: list[str] = []
        self.test = ""

    def attach(self, **_signal):
        """On the root logger and on every logger that does not pass its records up to it (django.server...).

        Called again before every test and after Celery sets up logging: a Celery worker started by a test
        empties the root logger's handlers.
        """
        import logging

        loggers = [logging.getLogger()] + [
            logger
            for logger in logging.Logger.manager.loggerDict.values()
            if isinstance(logger, logging.Logger) and not logger.propagate
        ]
        for logger in loggers:
            if self.handler not in logger.handlers:
                logger.addHandler(self.handler)

    def keep_root_level(self):
        """The root logger's level as the run began (INFO): a Celery worker started by a test lowers it to the
        worker's level (WARNING), which would hide the INFO lines of every later test from the watch."""
        import logging

        root = logging.getLogger()
        self.root_level = getattr(self, "root_level", root.level)
        root.setLevel(self.root_level)

    def detach(self):
        import logging

        for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
            if isinstance(logger, logging.Logger) and self.handler in logger.handlers:
                logger.removeHandler(self.handler)


_secret_watch = _SecretWatch()


@pytest.fixture(scope="session", autouse=True)
def _no_secret_in_any_log_line():
    """Fails the run (an error at the last test's teardown) if any log record of it held a secret."""
    from celery.signals import after_setup_logger

    _secret_watch.secrets = known_secrets()
    _secret_watch.keep_root_level()
    _secret_watch.attach()
    after_setup_logger.connect(_secret_watch.attach, weak=False)
    yield
    after_setup_logger.disconnect(_secret_watch.attach)
    _secret_watch.detach()
    offenders = _secret_watch.offenders
    assert not offenders, f"{len(offenders)} log line(s) held a secret:\n" + "\n".join(offenders[:50])


@pytest.fixture(autouse=True)
def _secret_watch_on_this_test(request, _no_secret_in_any_log_line):
    _secret_watch.test = request.node.nodeid
    _secret_watch.keep_root_level()
    _secret_watch.attach()
    yield
    _secret_watch.test = ""
