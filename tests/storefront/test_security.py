"""Security as a user (or an attacker) meets it: production settings, headers and the CSP, rate limits,
CSRF on every form, staff roles, order tokens, and the checker that keeps secrets out of the suite's logs."""

import importlib
import json
import re
import secrets
import subprocess
import sys
from itertools import product as combinations
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client, RequestFactory
from django.urls import URLResolver, get_resolver, resolve, reverse
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils import timezone
from django.utils.regex_helper import normalize
from rest_framework.views import APIView

from catalog.models import FulfilmentKind
from fulfillment.models import DeliveryAccess
from orders.models import Order
from payments.models import PaymentChannel
from storefront.security import REAL_STRIPE_SOURCES, policy_for, policy_header
from tests.conftest import known_secrets, record_payment, secrets_in
from tests.factories import ProductFactory, add_keys

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "security-pass-1"
LIMITED = "Too many attempts. Please try again later."
reviewers_migration = importlib.import_module("riskengine.migrations.0004_reviewers_group")


def fresh_ip() -> str:
    """An address no other test uses (rate limits count per client IP for the whole run)."""
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "KEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "KEY_FINGERPRINT_SECRET": secrets.token_urlsafe(32),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
        # required with DEBUG=0; nothing below connects to them
        "DATABASE_URL": "postgres://shop@127.0.0.1:9/storefront",
        "REDIS_URL": "redis://127.0.0.1:9/0",
        "ALLOWED_HOSTS": "shop.example.com",
        "DJANGO_SETTINGS_MODULE": "storefront.settings",
    }
    return env | overrides


def run_python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def csp_of(response) -> dict[str, list[str]]:
    return {
        directive.split()[0]: directive.split()[1:]
        for directive in response["Content-Security-Policy"].split(";")
        if directive.strip()
    }


def nonce_of(response) -> str:
    (nonce,) = [s[len("'nonce-") : -1] for s in csp_of(response)["script-src"] if s.startswith("'nonce-")]
    return nonce


def reviewer(username: str = "rita"):
    reviewers_migration.create_reviewers_group(apps, None)
    user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD)
    user.groups.add(Group.objects.get(name=reviewers_migration.REVIEWERS_GROUP))
    return user


def merchant(username: str = "mira"):
    """Catalog staff: in the admin, with the catalog's permissions, not in the reviewers' group."""
    user = get_user_model().objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["catalog", "orders"]))
    return user


def logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture
def delivered(make_order, django_capture_on_commit_callbacks):
    """Two paid, delivered key orders of two shoppers: (order, its key) each."""

    def make(email: str):
        product = ProductFactory(kind=FulfilmentKind.LICENSE_KEY)
        (key,) = add_keys(product, 1)
        return record_payment(make_order((product, 1), email=email), django_capture_on_commit_callbacks), key

    return make("alice@example.com"), make("bob@example.com")


# Production settings ------------------------------------------------------------------------------------


def test_check_deploy_is_clean_with_production_settings():
    # Given production settings from the environment (DEBUG=0, real secrets)
    # When Django's deployment checklist runs, failing even on warnings
    result = run_python(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env())

    # Then it finds nothing
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."


def test_check_deploy_would_catch_a_weakened_setting():
    # The same check fails when HSTS is switched off: the test above can fail
    result = run_python(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(SECURE_HSTS_SECONDS="0")
    )

    assert result.returncode != 0
    assert "security.W004" in result.stdout + result.stderr


PRODUCTION_REQUESTS = """
import json, django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="shop.example.com")
plain = client.get("/order/no-such-order/")
proxied = client.get("/order/no-such-order/", HTTP_X_FORWARDED_PROTO="https")
names = ["Strict-Transport-Security", "X-Frame-Options", "Referrer-Policy", "X-Content-Type-Options",
         "Cross-Origin-Opener-Policy", "Content-Security-Policy"]
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location", "")],
    "proxied": [proxied.status_code, {name: proxied.get(name, "") for name in names}],
}))
"""


def test_production_redirects_to_https_and_sends_the_security_headers():
    # Given the shop in production behind a TLS-terminating proxy that sets X-Forwarded-Proto
    result = run_python(["-c", PRODUCTION_REQUESTS], production_env())
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)

    # Then plain http is sent to https, and what came through the proxy over https gets every header
    assert answers["plain"] == [301, "https://shop.example.com/order/no-such-order/"]
    status, headers = answers["proxied"]
    assert status == 404
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_production_cookies_are_secure_only():
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.LANGUAGE_COOKIE_SECURE,"
        " s.SESSION_COOKIE_HTTPONLY, s.SESSION_COOKIE_SAMESITE, s.CSRF_COOKIE_SAMESITE)"
    )
    result = run_python(["-c", code], production_env())

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True", "True", "Lax", "Lax"]


# Headers and the Content-Security-Policy on every kind of page ----------------------------------------------

STOREFRONT_PAGES = ["/", "/cart/", "/checkout/", "/order/lookup/", "/review/login/", "/api/docs/"]


def _tags(html: str, name: str) -> list[str]:
    return re.findall(rf"<{name}\b[^>]*>", html, flags=re.IGNORECASE)


def assert_nothing_inline_without_the_nonce(response, *, style_attributes_allowed: bool = False):
    html = response.content.decode()
    nonce = nonce_of(response)
    for tag in _tags(html, "script"):
        assert "src=" in tag or f'nonce="{nonce}"' in tag, f"inline script without this request's nonce: {tag}"
    for tag in _tags(html, "style"):
        assert f'nonce="{nonce}"' in tag, f"<style> without this request's nonce: {tag}"
    markup = re.sub(r"<script\b.*?</script>", "", html, flags=re.DOTALL | re.IGNORECASE)
    assert not re.findall(r"<[^>]*\son[a-z]+\s*=", markup), "inline event handlers are refused by the CSP"
    if not style_attributes_allowed:
        assert not re.findall(r"<[^>]*\sstyle\s*=", markup), "style attributes are refused by the CSP"


@pytest.fixture
def shopper_with_cart(db):
    product = ProductFactory(slug="csp-product")
    add_keys(product, 2)
    client = Client()
    client.post(reverse("cart-add", args=[product.slug]), {"quantity": "1"})
    return client, product


def test_every_storefront_page_has_the_strict_policy_and_nonces_its_inline_code(shopper_with_cart, delivered):
    client, product = shopper_with_cart
    (order, _), _ = delivered
    pages = [*STOREFRONT_PAGES, f"/p/{product.slug}/", f"/order/{order.token}/"]

    for path in pages:
        response = client.get(path)

        assert response.status_code == 200, path
        nonce = nonce_of(response)
        assert csp_of(response) == {
            "default-src": ["'self'"],
            "script-src": ["'self'", f"'nonce-{nonce}'"],
            "style-src": ["'self'", f"'nonce-{nonce}'"],
            "img-src": ["'self'", "data:"],
            "connect-src": ["'self'"],
            "object-src": ["'none'"],
            "base-uri": ["'self'"],
            "form-action": ["'self'"],
            "frame-ancestors": ["'none'"],
        }, path
        assert_nothing_inline_without_the_nonce(response)
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["X-Content-Type-Options"] == "nosniff"
        # drf-spectacular opens the Swagger page to popups (unsafe-none) for its OAuth2 flow; no secrets there
        assert response["Cross-Origin-Opener-Policy"] == ("unsafe-none" if path == "/api/docs/" else "same-origin")


def test_the_nonce_is_new_on_every_response(client):
    assert nonce_of(client.get("/")) != nonce_of(client.get("/"))


def test_the_order_page_keeps_its_own_same_origin_referrer_policy(delivered):
    (order, _), _ = delivered

    response = Client().get(f"/order/{order.token}/")

    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cache-Control"] == "no-store"


def test_the_review_pages_nonce_their_styles_and_draw_charts_without_style_attributes():
    client = logged_in(reviewer())

    for name in ("review:queue", "review:metrics"):
        response = client.get(reverse(name))

        assert response.status_code == 200
        assert_nothing_inline_without_the_nonce(response)


def test_admin_pages_load_with_only_style_attributes_allowed_and_only_there(admin_client):
    for path in ["/admin/", reverse("admin:catalog_product_changelist"), reverse("admin:catalog_product_add")]:
        response = admin_client.get(path)

        assert response.status_code == 200, path
        policy = csp_of(response)
        assert policy["style-src-attr"] == ["'unsafe-inline'"]
        assert policy["script-src"] == ["'self'", f"'nonce-{nonce_of(response)}'"]
        assert_nothing_inline_without_the_nonce(response, style_attributes_allowed=True)
    assert "style-src-attr" not in csp_of(Client().get("/"))


def test_pay_page_allows_the_stripe_js_in_use_here_localstripe(client, localstripe, make_order, settings):
    # Given a pending order, and Stripe on the suite's localstripe
    product = ProductFactory(price_amount=2500)
    add_keys(product, 1)
    order = make_order((product, 1))

    # When its pay page is opened
    response = client.get(f"/pay/{order.token}/")

    # Then Stripe.js may load from localstripe and call it, the page's own script carries the nonce
    assert response.status_code == 200
    policy = csp_of(response)
    assert policy["script-src"] == ["'self'", f"'nonce-{nonce_of(response)}'", localstripe.url]
    assert policy["connect-src"] == ["'self'", localstripe.url]
    assert "frame-src" not in policy  # localstripe's stand-in draws plain inputs, it frames nothing
    assert f'<script src="{localstripe.url}/js.stripe.com/v3/"></script>' in response.content.decode()
    assert_nothing_inline_without_the_nonce(response)


def test_pay_page_policy_in_production_allows_stripe_and_nothing_else(settings):
    # Given Stripe itself (no localstripe address on the channel or in settings)
    settings.STRIPE_API_BASE = ""
    settings.STRIPE_JS_URL = "https://js.stripe.com/v3/"
    settings.CSP_REPORT_URI = ""
    PaymentChannel.objects.filter(provider="stripe").update(api_base="")
    request = RequestFactory().get("/pay/x/")
    request.resolver_match = resolve(f"/pay/{'t' * 43}/")

    # When the pay page's policy is built
    header = policy_header(policy_for(request, "NONCE"))

    # Then it is the strict policy plus what Stripe.js needs
    assert header == (
        "default-src 'self'; script-src 'self' 'nonce-NONCE' https://js.stripe.com https://*.js.stripe.com; "
        "style-src 'self' 'nonce-NONCE'; img-src 'self' data:; connect-src 'self' https://api.stripe.com; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; "
        "frame-src 'self' https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com"
    )
    assert REAL_STRIPE_SOURCES["connect-src"] == ["https://api.stripe.com"]
    # and no other page gets Stripe's origins
    request.resolver_match = resolve("/")
    assert "stripe" not in policy_header(policy_for(request, "NONCE"))


def test_the_swagger_ui_keeps_working_its_inline_script_carries_the_nonce(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert f'<script nonce="{nonce_of(response)}">' in html and "SwaggerUIBundle(" in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html  # served offline


# Rate limits --------------------------------------------------------------------------------------------


@pytest.fixture
def one_rate_window(time_machine):
    """A clock that stands still: limits count per clock hour, and a test that ran across the turn of the hour
    would see its count start again from zero halfway through."""
    time_machine.move_to(timezone.now(), tick=False)


@pytest.mark.usefixtures("one_rate_window")
def test_web_checkout_refuses_the_attempt_after_the_limit_and_changes_nothing(settings):
    # Given a limit of 3 checkout attempts an hour, and a shopper with a key in the cart
    settings.CHECKOUT_RATE = 3
    product = ProductFactory()
    add_keys(product, 5)
    ip = fresh_ip()
    shopper = Client(REMOTE_ADDR=ip)
    shopper.post(reverse("cart-add", args=[product.slug]), {"quantity": "1"})

    # When two attempts fail validation and the third is right
    for _ in range(2):
        assert shopper.post(reverse("checkout"), {"email": "not-an-email"}).status_code == 200
    third = shopper.post(reverse("checkout"), {"email": "buyer@example.com"})
    # Then the third (the limit) goes through
    assert third.status_code == 302 and third["Location"].startswith("/pay/")
    assert Order.objects.count() == 1

    # When the same shopper fills the cart again and tries a fourth time
    shopper.post(reverse("cart-add", args=[product.slug]), {"quantity": "1"})
    fourth = shopper.post(reverse("checkout"), {"email": "buyer@example.com"})

    # Then it is refused with a clear message, no order is made and the cart is kept
    assert fourth.status_code == 429
    assert LIMITED in fourth.content.decode()
    assert Order.objects.count() == 1
    assert shopper.session["cart"] == {str(product.pk): 1}

    # And a shopper from another address is not affected
    other = Client(REMOTE_ADDR=fresh_ip())
    other.post(reverse("cart-add", args=[product.slug]), {"quantity": "1"})
    assert other.post(reverse("checkout"), {"email": "other@example.com"}).status_code == 302


@pytest.mark.usefixtures("one_rate_window")
def test_api_checkout_refuses_the_attempt_after_the_limit_with_the_error_envelope(settings, localstripe):
    # Given a limit of 2 checkouts an hour
    settings.CHECKOUT_RATE = 2
    product = ProductFactory(kind=FulfilmentKind.SERVICE)
    client = Client(REMOTE_ADDR=fresh_ip())

    def body(n: int) -> dict:
        return {"email": f"buyer{n}@example.com", "lines": [{"product": product.slug, "quantity": 1}]}

    # When a client checks out twice, then a third time
    answers = [client.post("/api/checkout/", body(n), content_type="application/json") for n in range(3)]

    # Then the first two make orders and the third is refused, making none
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].json() == {"error": {"code": "rate_limited", "message": LIMITED}}
    assert Order.objects.count() == 2
    # And another client is not affected
    other = Client(REMOTE_ADDR=fresh_ip()).post("/api/checkout/", body(3), content_type="application/json")
    assert other.status_code == 201


@pytest.mark.usefixtures("one_rate_window")
def test_web_and_api_checkout_share_one_count(settings, localstripe):
    settings.CHECKOUT_RATE = 1
    product = ProductFactory(kind=FulfilmentKind.SERVICE)
    client = Client(REMOTE_ADDR=fresh_ip())
    body = {"email": "buyer@example.com", "lines": [{"product": product.slug, "quantity": 1}]}

    assert client.post("/api/checkout/", body, content_type="application/json").status_code == 201
    client.post(reverse("cart-add", args=[product.slug]), {"quantity": "1"})
    assert client.post(reverse("checkout"), {"email": "buyer@example.com"}).status_code == 429


@pytest.mark.usefixtures("one_rate_window")
def test_behind_a_proxy_the_limit_counts_the_shoppers_address_not_the_proxys(settings, localstripe):
    settings.CHECKOUT_RATE = 1
    settings.TRUSTED_PROXY_COUNT = 1
    product = ProductFactory(kind=FulfilmentKind.SERVICE)
    proxy = fresh_ip()

    def checkout(shopper: str) -> int:
        body = {"email": f"{secrets.token_hex(4)}@example.com", "lines": [{"product": product.slug, "quantity": 1}]}
        client = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=shopper)
        return client.post("/api/checkout/", body, content_type="application/json").status_code

    first, second = fresh_ip(), fresh_ip()
    assert [checkout(first), checkout(second), checkout(first)] == [201, 201, 429]


@pytest.mark.usefixtures("one_rate_window")
@pytest.mark.parametrize("login_url", ["admin:login", "review:login"])
def test_login_refuses_the_attempt_after_the_limit_even_with_the_right_password(settings, login_url):
    # Given a limit of 3 login attempts an hour, and accounts for both logins
    settings.LOGIN_RATE = 3
    get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    reviewer("rita")
    username = "boss" if login_url == "admin:login" else "rita"
    attacker = Client(REMOTE_ADDR=fresh_ip())
    url = reverse(login_url)

    # When two guesses are wrong, the third (the limit) is right
    for guess in ("guess-1", "guess-2"):
        assert attacker.post(url, {"username": username, "password": guess}).status_code == 200
    assert attacker.post(url, {"username": username, "password": PASSWORD}).status_code == 302
    attacker.logout()

    # Then the fourth is refused, right password or not, and nobody is logged in
    refused = attacker.post(url, {"username": username, "password": PASSWORD})
    assert refused.status_code == 429
    assert refused.content.decode() == LIMITED
    assert int(refused["Retry-After"]) <= 3600
    assert SESSION_KEY not in refused.wsgi_request.session

    # And someone at another address logs in, and the login page itself still opens
    assert Client(REMOTE_ADDR=fresh_ip()).post(url, {"username": username, "password": PASSWORD}).status_code == 302
    assert attacker.get(url).status_code == 200


# CSRF on every view that takes a POST -------------------------------------------------------------------

WEBHOOKS = {"stripe-webhook", "channel-webhook"}


def _leaves(resolver=None, chain=()):
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _leaves(entry, (*chain, (entry.pattern, entry.namespace)))
        else:
            yield (*chain, (entry.pattern, None)), entry


def _fill(pattern, samples: dict[str, str]) -> str:
    """A concrete path piece for a route or a regex, with sample values for its parameters."""
    if isinstance(pattern, RoutePattern):
        return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: samples.get(m[1], "1"), str(pattern))
    assert isinstance(pattern, RegexPattern), pattern
    for template, params in normalize(pattern.regex.pattern):
        for values in combinations(*[[samples.get(p, "1"), "x", "auth"] for p in params]):
            piece = template % dict(zip(params, values, strict=True))
            if pattern.regex.fullmatch(piece):
                return piece
    raise AssertionError(f"no sample path for {pattern}")


def every_view(samples: dict[str, str]) -> list[tuple[str, str, object]]:
    """(path, name, view) for every URL pattern, each path checked to resolve to its own view."""
    found, unresolved = [], []
    for chain, leaf in _leaves():
        path = "/" + "".join(_fill(pattern, samples) for pattern, _ in chain)
        namespace = ":".join(ns for _, ns in chain if ns)
        name = f"{namespace}:{leaf.name}" if namespace and leaf.name else leaf.name or path
        if resolve(path).func is not leaf.callback:
            unresolved.append(path)
        found.append((path, name, leaf.callback))
    assert not unresolved, f"sample paths resolving to another view: {unresolved}"
    return found


def database_state() -> dict[str, list]:
    return {model._meta.label: list(model._base_manager.order_by("pk").values_list()) for model in apps.get_models()}


def test_every_form_view_refuses_a_post_without_the_csrf_token_and_changes_nothing(delivered):
    # Given real objects behind the sample URLs, a shopper and a superuser, both checked for CSRF
    (order, _), _ = delivered
    product = order.lines.get().product
    samples = {"slug": product.slug, "token": order.token, "object_id": str(product.pk), "code": "stripe"}
    views = every_view(samples)
    boss = get_user_model().objects.create_superuser("boss", "boss@example.com", PASSWORD)
    clients = {"anonymous": Client(enforce_csrf_checks=True), "superuser": logged_in(boss, enforce_csrf_checks=True)}
    exempt = {name for _, name, view in views if getattr(view, "csrf_exempt", False)}
    drf = {name for _, name, view in views if issubclass(getattr(view, "cls", object), APIView)}
    checked = [(path, name) for path, name, _ in views if name not in exempt]
    line = order.lines.get().pk
    before = database_state()

    # Then the only views without Django's CSRF check are the signed webhooks and the DRF API
    assert exempt == WEBHOOKS | drf
    assert len(checked) > 100  # the storefront, the review queue and every admin page
    # When each of the others gets a POST without a token, from either client
    for (path, name), (who, client) in combinations(checked, clients.items()):
        response = client.post(path, {"email": "x@example.com", "line": line, "note": "x"})

        # Then it is refused by the CSRF check itself
        assert response.status_code == 403, (who, name, path, response.status_code)
        assert b"CSRF verification failed" in response.content, (who, name, path)
    # And nothing changed anywhere
    assert database_state() == before


def test_a_post_with_the_csrf_token_is_let_through(delivered):
    # the other side of the test above: the same kind of client, with the token, gets to the view
    (order, key), _ = delivered
    client = Client(enforce_csrf_checks=True)
    token = client.get(f"/order/{order.token}/").cookies["csrftoken"].value

    response = client.post(
        f"/order/{order.token}/reveal/", {"line": order.lines.get().pk}, HTTP_X_CSRFTOKEN=token, follow=True
    )

    assert response.redirect_chain == [(f"/order/{order.token}/", 303)]
    assert key in response.content.decode()


def test_the_api_checks_csrf_for_a_logged_in_session(delivered):
    # Given a logged-in session (DRF's SessionAuthentication enforces CSRF only when the session has a user)
    (order, _), _ = delivered
    product = ProductFactory(kind=FulfilmentKind.SERVICE)
    client = logged_in(merchant(), enforce_csrf_checks=True)
    writes = [
        ("post", "/api/checkout/", {"email": "x@example.com", "lines": [{"product": product.slug, "quantity": 1}]}),
        ("put", "/api/cart/", {"product": product.slug, "quantity": 1}),
        ("delete", "/api/cart/", None),
        ("post", f"/api/orders/{order.token}/reveal/", {"line": order.lines.get().pk}),
        ("post", f"/api/orders/{order.token}/pay/", {"card_token": "tok_visa"}),
    ]
    before = database_state()

    # When it writes without the token
    for method, path, body in writes:
        response = getattr(client, method)(path, json.dumps(body), content_type="application/json")

        # Then each write is refused in the API's error envelope and nothing changes
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["message"].startswith("CSRF Failed"), (method, path)
    assert database_state() == before
    assert not DeliveryAccess.objects.exists()

    # And with the token the same session gets through
    token = client.get("/").cookies["csrftoken"].value
    put = client.put("/api/cart/", json.dumps(writes[1][2]), content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert put.status_code == 200


def test_anonymous_api_sessions_are_protected_by_a_same_site_cookie(settings):
    # DRF does not check CSRF for a session without a user; the shopper's session cookie is SameSite=Lax,
    # so another site's form or script never carries it (and JSON bodies need a CORS preflight we never grant)
    product = ProductFactory(kind=FulfilmentKind.SERVICE)
    response = Client().put("/api/cart/", {"product": product.slug, "quantity": 1}, content_type="application/json")

    assert response.status_code == 200
    assert response.cookies[settings.SESSION_COOKIE_NAME]["samesite"] == "Lax"
    assert response.cookies[settings.SESSION_COOKIE_NAME]["httponly"] is True


def test_webhooks_take_no_csrf_token_but_refuse_what_is_not_signed(delivered):
    before = database_state()
    client = Client(enforce_csrf_checks=True)

    for path in ("/payments/stripe/webhook/", "/payments/webhook/stripe/", "/payments/webhook/paypal/"):
        response = client.post(
            path, b'{"id": "evt_forged", "type": "charge.refunded"}', content_type="application/json"
        )

        assert response.status_code >= 400, path  # unsigned (or, for a channel that is off, unconfigured)
        assert b"CSRF" not in response.content
    assert database_state() == before


# Staff pages --------------------------------------------------------------------------------------------


def test_the_admin_refuses_a_risk_reviewer():
    rita = reviewer()

    index = logged_in(rita).get("/admin/")
    login = Client().post(reverse("admin:login"), {"username": "rita", "password": PASSWORD})

    assert index.status_code == 302 and index["Location"].startswith(reverse("admin:login"))
    assert login.status_code == 200 and SESSION_KEY not in login.wsgi_request.session


def test_the_review_queue_refuses_a_staff_merchant_without_the_group(delivered):
    client = logged_in(merchant())

    assert client.get("/admin/").status_code == 200  # a merchant is welcome in the admin...
    for path in ("/review/", "/review/metrics/", "/review/1/"):
        assert client.get(path).status_code == 403, path  # ...and not in the review queue
    assert client.post("/review/1/claim/").status_code == 403


def test_anonymous_visitors_are_sent_to_the_login_pages():
    client = Client()

    for path, login in [
        ("/admin/", "/admin/login/"),
        (reverse("admin:orders_order_changelist"), "/admin/login/"),
        ("/review/", "/review/login/"),
        ("/review/metrics/", "/review/login/"),
        ("/review/1/", "/review/login/"),
    ]:
        response = client.get(path)

        assert response.status_code == 302, path
        assert response["Location"].startswith(f"{login}?next="), path


# Order pages need their own token -----------------------------------------------------------------------


def test_order_pages_with_a_wrong_or_short_token_are_404_and_tell_nothing(delivered):
    (order, key), _ = delivered
    guesses = [
        secrets.token_urlsafe(32),  # well-formed, unknown
        order.token[:10],  # short
        order.token[:-1],  # all but one character
        order.token + "A",
        order.number,
        order.token.swapcase(),
    ]
    client = Client()
    not_found_page = client.get(f"/order/{secrets.token_urlsafe(32)}/").content

    for guess in guesses:
        page = client.get(f"/order/{guess}/")
        api = client.get(f"/api/orders/{guess}/")

        assert (page.status_code, api.status_code) == (404, 404), guess
        assert page.content == not_found_page, guess  # the same answer however close the guess
        assert api.json() == {"error": {"code": "order_not_found", "message": "No order with that token."}}
        for secret in (order.number, order.email, key):
            assert secret not in page.content.decode() + api.content.decode()


def test_another_orders_token_opens_nothing_of_this_order(delivered):
    (alice, alice_key), (bob, bob_key) = delivered
    client = Client()
    alice_line = alice.lines.get().pk

    page = client.post(f"/order/{bob.token}/reveal/", {"line": alice_line}, follow=True)
    api = client.post(f"/api/orders/{bob.token}/reveal/", {"line": alice_line}, content_type="application/json")

    assert (page.status_code, api.status_code) == (404, 404)
    assert alice_key not in page.content.decode() + api.content.decode()
    assert not DeliveryAccess.objects.filter(order=alice).exists()
    # Bob's own page shows Bob's order only
    bob_page = client.get(f"/order/{bob.token}/").content.decode()
    assert bob.number in bob_page and alice.number not in bob_page and alice.email not in bob_page


# The log checker (tests/conftest.py) --------------------------------------------------------------------


def test_secrets_in_finds_every_kind_of_secret_and_redacts_it():
    configured = {
        "SECRET_KEY": "s3cr3t-value-of-fifty-characters-or-so-1234567890",
        "PayPal client secret": "fake-secret",
    }
    lines = [
        "INFO payments calling Stripe with sk_test_suite",
        "WARNING payments restricted key rk_live_abc123 refused",
        "INFO orders card 4242424242424242 declined",
        "INFO orders card 4000 0025 0000 3155 needs 3-D Secure",
        "INFO fulfillment delivered KEY-17-00003 to SF-ABCDEFGH",
        "ERROR storefront signing with s3cr3t-value-of-fifty-characters-or-so-1234567890",
        "DEBUG paypal token request client_secret=fake-secret",
    ]

    found = secrets_in(lines, configured)

    assert [f.split(":", 1)[0] for f in found] == [
        "a Stripe secret key",
        "a Stripe secret key",
        "a card number",
        "a card number",
        "a test license key",
        "SECRET_KEY",
        "PayPal client secret",
    ]
    assert not any(secret in text for text in found for secret in ("sk_test_suite", "4242424242424242", "fake-secret"))


def test_secrets_in_lets_ordinary_lines_through():
    lines = [
        "INFO orders order SF-ABCDEFGH paid (pi_3MtwBwLkdIwHu7ix28a3tqPa), 1 line",
        "WARNING payments STRIPE_SECRET_KEY is not set; using localstripe",
        "INFO payments timestamp 1733000000000123 and amount 4242",  # 16 digits, not a card (no Luhn, starts with 1)
        "INFO storefront request took 4242424242424241 ns",  # fails the Luhn check
        "INFO fulfillment imported 100000 keys into product 17",
    ]

    assert secrets_in(lines, {"SECRET_KEY": "not-in-any-line"}) == []


def test_the_run_watches_for_the_configured_secrets(settings):
    watched = known_secrets()

    assert watched["SECRET_KEY"] == settings.SECRET_KEY
    assert watched["STRIPE_WEBHOOK_SECRET"] == settings.STRIPE_WEBHOOK_SECRET
    assert watched["KEY_FINGERPRINT_SECRET"] == settings.KEY_FINGERPRINT_SECRET
    assert [watched[f"KEY_ENCRYPTION_KEYS[{i}]"] for i in range(len(settings.KEY_ENCRYPTION_KEYS))] == list(
        settings.KEY_ENCRYPTION_KEYS
    )
    assert watched["PayPal client secret"] == "fake-secret"
