"""The demo's people, over HTTP: a shopper with a browser's cookies, the merchant in admin, a risk reviewer.

Each does what the pages make them do. Where the browser would run script, the shopper does what that script
does: the pay page's (templates/storefront/pay.html) and localstripe's Stripe.js (create a card token with the
publishable key, ask the shop's API to pay with it, confirm 3-D Secure at localstripe).
"""

import html
import re
import time
from urllib.parse import urlsplit

import requests

from storefront.management.commands.seed_demo import MERCHANT_LOGIN, REVIEWER_LOGIN

CARD_PAYS = "4242424242424242"
CARD_DECLINED = "4000000000000341"
CARD_3DS = "4000002500003155"
WAIT_SECONDS = 15.0  # for what arrives by webhook (localstripe and the fake PayPal send them to the demo)


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} is not in the page:\n{text[:3000]}"
    return html.unescape(match.group(1))


def summary(response: requests.Response) -> str:
    """What went wrong, short: Django's debug page names the exception (its traceback is in the demo's output)."""
    title = re.search(r"<title>(.*?)</title>", response.text, flags=re.DOTALL)
    value = re.search(r'<pre class="exception_value">(.*?)</pre>', response.text, flags=re.DOTALL)
    if title and value:
        return html.unescape(" ".join(title.group(1).split()) + ": " + value.group(1).strip())
    return response.text[:3000]


class Browser:
    def __init__(self, shop_url: str):
        self.shop = shop_url
        self.http = requests.Session()

    def get(self, path: str, *, expect: int = 200) -> requests.Response:
        response = self.http.get(self.shop + path, timeout=30)
        assert response.status_code == expect, f"GET {path}: {response.status_code}\n{summary(response)}"
        return response

    def post_form(self, path: str, data: dict | list, *, expect: int = 200) -> requests.Response:
        """Submit a form of the page at `path` (the CSRF token from the cookie, as the form carries it)."""
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        fields.append(("csrfmiddlewaretoken", self.http.cookies.get("csrftoken", "")))
        response = self.http.post(self.shop + path, data=fields, timeout=30)
        assert response.status_code == expect, f"POST {path}: {response.status_code}\n{summary(response)}"
        return response

    def log_in(self, login_path: str, credentials: tuple[str, str], *, then: str) -> None:
        self.get(f"{login_path}?next={then}")
        username, password = credentials
        page = self.post_form(f"{login_path}?next={then}", {"username": username, "password": password})
        assert page.url == self.shop + then, f"{username} could not log in at {login_path}: at {page.url}"


class Shopper(Browser):
    """One shopper's browser: the cart in the session cookie, an order at a time."""

    def __init__(self, shop_url: str, stripe_url: str, *, email: str):
        super().__init__(shop_url)
        self.stripe = stripe_url
        self.email = email
        self.token = ""

    # -- catalog, cart, checkout ---------------------------------------------------------------------------------
    def buy(self, slug: str, quantity: int = 1) -> str:
        """From the shop's front page to the pay page of a new order; returns the pay page."""
        assert f'href="/p/{slug}/"' in self.get("/").text
        self.get(f"/p/{slug}/")
        cart = self.post_form(f"/p/{slug}/add/", {"quantity": quantity})
        assert cart.url.endswith("/cart/"), cart.url
        self.get("/checkout/")
        pay_page = self.post_form("/checkout/", {"email": self.email, "device_fp": ""})
        self.token = found(r"/pay/([\w-]+)/$", pay_page.url)
        return pay_page.text

    def pay_page(self, query: str = "") -> str:
        return self.get(f"/pay/{self.token}/{query}").text

    # -- paying --------------------------------------------------------------------------------------------------
    def pay_by_card(self, number: str, *, confirm_3ds: bool = True) -> requests.Response:
        """The pay page's form: a token from Stripe.js, the shop's pay API, then 3-D Secure if the bank asks."""
        page = self.pay_page()
        publishable_key = found(r'Stripe\("([^"]+)"\)', page)
        channel = found(r'<form id="payment-form"[^>]*data-channel="([\w-]+)"', page)
        card = {"number": number, "exp_month": "12", "exp_year": "2099", "cvc": "123", "address_zip": "10001"}
        token = requests.post(
            f"{self.stripe}/v1/tokens",
            data={**{f"card[{k}]": v for k, v in card.items()}, "key": publishable_key},
            timeout=30,
        )
        assert token.status_code == 200, token.text
        answer = self.http.post(
            f"{self.shop}/api/orders/{self.token}/pay/",
            json={"card_token": token.json()["id"], "channel": channel},
            headers={"X-CSRFToken": self.http.cookies.get("csrftoken", "")},
            timeout=30,
        )
        if answer.status_code == 200 and answer.json()["status"] == "requires_action" and confirm_3ds:
            self.complete_3ds(answer.json()["client_secret"], publishable_key)
        return answer

    def start_trial(self, number: str) -> requests.Response:
        """A free trial's pay page: the shop opens a card setup, Stripe.js confirms it (confirmCardSetup at
        localstripe, as localstripe's Stripe.js posts it), then the shop keeps the card and starts the trial."""
        page = self.pay_page()
        publishable_key = found(r'Stripe\("([^"]+)"\)', page)
        pay_url = f"{self.shop}/api/orders/{self.token}/pay/"
        headers = {"X-CSRFToken": self.http.cookies.get("csrftoken", "")}
        opened = self.http.post(pay_url, json={}, headers=headers, timeout=30)
        assert opened.status_code == 200 and opened.json()["status"] == "requires_setup", opened.text
        secret = opened.json()["client_secret"]
        setup_id = found(r"^(seti_\w+?)_secret_", secret)
        card = {"number": number, "exp_month": "12", "exp_year": "2099", "cvc": "123"}
        confirmed = requests.post(
            f"{self.stripe}/v1/setup_intents/{setup_id}/confirm",
            json={
                "key": publishable_key,
                "client_secret": secret,
                "payment_method_data": {"type": "card", "card": card},
            },
            timeout=30,
        )
        assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded", confirmed.text
        return self.http.post(pay_url, json={"setup_intent": setup_id}, headers=headers, timeout=30)

    def complete_3ds(self, client_secret: str, publishable_key: str, *, success: bool = True) -> None:
        """localstripe's Stripe.js confirmCardPayment: its dialog, answered 'Complete authentication'."""
        intent = found(r"^(pi_\w+?)_secret_", client_secret)
        answer = requests.post(
            f"{self.stripe}/v1/payment_intents/{intent}/_authenticate?success={str(success).lower()}",
            json={"key": publishable_key, "client_secret": client_secret},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text

    def pay_with_paypal(self) -> None:
        """Choose PayPal on the pay page, approve on the fake PayPal's page, come back to the shop's order page."""
        approval_url = found(r'id="paypal-button" href="([^"]+)"', self.pay_page("?method=paypal"))
        paypal_page = self.http.get(approval_url, timeout=30)
        assert paypal_page.status_code == 200, paypal_page.text[:3000]
        action = found(r'<form method="post" action="([^"]+)"', paypal_page.text)
        paypal = urlsplit(approval_url)
        buyer = {"email": "buyer@example.com", "country": "US"}
        back = self.http.post(f"{paypal.scheme}://{paypal.netloc}{action}", data=buyer, timeout=30)
        assert back.status_code == 200, back.text[:3000]
        assert back.url == f"{self.shop}/order/{self.token}/", back.url

    # -- the order -----------------------------------------------------------------------------------------------
    def order(self) -> dict:
        return self.get(f"/api/orders/{self.token}/").json()

    def wait_for_status(self, *statuses: str) -> dict:
        deadline = time.monotonic() + WAIT_SECONDS
        order = self.order()
        while order["status"] not in statuses and time.monotonic() < deadline:
            time.sleep(0.2)
            order = self.order()
        assert order["status"] in statuses, f"order {order['number']} is {order['status']}, not {statuses}"
        return order

    def order_page(self) -> str:
        return self.get(f"/order/{self.token}/").text

    def reveal_key(self) -> str:
        page = self.order_page()
        line = found(r'name="line" value="(\d+)"', page)
        revealed = self.post_form(f"/order/{self.token}/reveal/", {"line": line})
        return found(r'<span class="key">([^<]+)</span>', revealed.text)


class Merchant(Browser):
    """The demo's merchant login in Django admin."""

    def __init__(self, shop_url: str):
        super().__init__(shop_url)
        self.log_in("/admin/login/", MERCHANT_LOGIN, then="/admin/")

    def set_review_threshold(self, review: int) -> int:
        """Risk settings in admin: orders scoring at least `review` wait for a reviewer. Returns the old value."""
        form = self.get("/admin/riskengine/risksettings/")  # the list goes straight to its one row
        before = int(found(r'name="review_threshold" value="(\d+)"', form.text))
        decline = found(r'name="decline_threshold" value="(\d+)"', form.text)
        hours = found(r'name="review_deadline_hours" value="(\d+)"', form.text)
        fields = {"review_threshold": review, "decline_threshold": decline, "review_deadline_hours": hours}
        saved = self.post_form(urlsplit(form.url).path, {**fields, "_save": "Save"})
        assert "errornote" not in saved.text, saved.text[:3000]
        return before

    def refund_order(self, number: str) -> str:
        """Orders in admin: find the order, 'Refund all or some lines…', tick every line, give a reason."""
        found_page = self.get(f"/admin/orders/order/?q={number}").text
        order_path = found(r'href="(/admin/orders/order/\d+/change/)[^"]*"', found_page)
        refund_path = order_path.replace("/change/", "/refund/")
        form = self.get(refund_path).text
        lines = re.findall(r'name="lines" value="(\d+)"', form)
        assert lines, form[:3000]
        done = self.post_form(refund_path, [*(("lines", line) for line in lines), ("reason", "Smoke test refund")])
        return done.text


class Reviewer(Browser):
    """The demo's reviewer login in the review queue (/review/)."""

    def __init__(self, shop_url: str):
        super().__init__(shop_url)
        self.log_in("/review/login/", REVIEWER_LOGIN, then="/review/")

    def approve(self, order_number: str, *, note: str) -> str:
        queue = self.get("/review/").text
        case_path = found(rf'<a href="(/review/\d+/)">{order_number}</a>', queue)
        self.post_form(case_path + "claim/", {})
        done = self.post_form(case_path + "approve/", {"note": note})
        return done.text
