import factory
from django.db import connection
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from catalog.models import FulfilmentKind, Product
from fulfillment.keys import keys_add_to_pool


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    name = factory.Sequence(lambda n: f"Product {n}")
    slug = factory.Sequence(lambda n: f"product-{n}")
    kind = FulfilmentKind.LICENSE_KEY
    price_amount = 1999
    currency = "USD"
    max_per_order = 5


def add_keys(product: Product, count: int, prefix: str = "KEY") -> list[str]:
    """Add keys to the product's pool as if that had committed: counted in stock, low-stock alert decided.

    The pool's stock counter moves on commit, which a test's own transaction never reaches, so the commit
    callbacks this add scheduled are taken off the connection and run now (once: a surrounding
    django_capture_on_commit_callbacks does not see them again). `product` is refreshed with the result.
    """
    keys = [f"{prefix}-{product.pk}-{i:05d}" for i in range(count)]
    scheduled = len(connection.run_on_commit)
    keys_add_to_pool(product=product, secrets_=keys, actor="test")
    while len(connection.run_on_commit) > scheduled:  # a callback may schedule another (the alert email)
        _, callback, _ = connection.run_on_commit.pop(scheduled)
        callback()
    product.refresh_from_db(fields=["keys_available", "low_stock_alerted"])
    return keys


# Staff sign-in with the second factor (storefront.twofactor) ------------------------------------------------

DJANGO_FORCE_LOGIN = Client.force_login  # Django's own: the password step only (tests/conftest.py wraps it)


def second_factor_device(user) -> TOTPDevice:
    """The user's authenticator app, confirmed (created the first time); its codes come from totp(device.bin_key)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name="test app", confirmed=True)


def pass_second_factor(client: Client, user) -> TOTPDevice:
    """Mark the client's signed-in session as verified with the user's app, as the verify page does."""
    device = second_factor_device(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


def force_login_unverified(client: Client, user, backend=None) -> None:
    """Signed in with the password step only: admin then asks for the second factor (or its set-up)."""
    DJANGO_FORCE_LOGIN(client, user, backend)


def sign_in_verified(client: Client, user, backend=None) -> Client:
    """Signed in as `user` with a verified second factor (a device is made if they have none): what a member of
    staff who entered their code has. tests/conftest.py makes client.force_login do this for staff who need it."""
    DJANGO_FORCE_LOGIN(client, user, backend)
    pass_second_factor(client, user)
    return client
