"""What a shopper does in the browser, step by step, shared by the e2e tests."""

import re

from playwright.sync_api import Page, expect

from catalog.models import FulfilmentKind, Product
from orders.models import Order
from tests.factories import ProductFactory, add_keys

TEST_CARD = "4242424242424242"
ORDER_PAGE = re.compile(r"/order/[\w-]{20,}/$")
ADDRESS = {
    "#id_ship_name": "Ada Lovelace",
    "#id_ship_line1": "1 Analytical Way",
    "#id_ship_city": "London",
    "#id_ship_postal_code": "N1 1AA",
    "#id_ship_country": "GB",
}


def add_to_cart(page: Page, product: Product, *, name: str = "", button: str = "Add to cart") -> None:
    """Open the product page (its heading is the product's name in the page's language) and add one."""
    page.goto(f"/p/{product.slug}/")
    expect(page.get_by_role("heading", level=1)).to_have_text(name or product.name)
    page.get_by_role("button", name=button).click()
    expect(page).to_have_url(re.compile(r"/cart/$"))


def fill_address(page: Page, address: dict[str, str]) -> None:
    """Type each field of the address; the country is chosen from its list."""
    for selector, value in address.items():
        if page.eval_on_selector(selector, "el => el.tagName") == "SELECT":
            page.select_option(selector, value)
        else:
            page.fill(selector, value)


def check_out(page: Page, email: str, *, address: dict[str, str] | None = None, button: str = "Continue to payment"):
    page.get_by_role("link", name=re.compile("Checkout|结账")).click()
    expect(page).to_have_url(re.compile(r"/checkout/$"))
    page.fill("#id_email", email)
    fill_address(page, address or {})
    page.get_by_role("button", name=button).click()
    expect(page).to_have_url(re.compile(r"/pay/[\w-]+/"))


def fill_card(page: Page, number: str = TEST_CARD) -> None:
    """Fill localstripe's card element: number, MM, YY, CVC, postal code."""
    card = page.locator("#card-element")
    card.get_by_placeholder("number").fill(number)
    card.get_by_placeholder("exp_month").fill("12")
    card.get_by_placeholder("exp_year").fill("31")
    card.get_by_placeholder("cvc").fill("123")
    card.get_by_placeholder("postal_code").fill("10001")


def pay_by_card(page: Page, *, number: str = TEST_CARD, button: str = "Pay now") -> None:
    """Fill the card element and pay; lands on the order page."""
    fill_card(page, number)
    page.get_by_role("button", name=button).click()
    expect(page).to_have_url(ORDER_PAGE, timeout=10_000)


def order_line(page: Page, product: Product, *, name: str = ""):
    return page.locator("tr.order-line").filter(has_text=name or product.name)


def reveal_key(page: Page, product: Product, *, name: str = "", button: str = "Reveal key") -> str:
    """Press the line's reveal button; the key appears in the line, once."""
    order_line(page, product, name=name).get_by_role("button", name=button).click()
    key = order_line(page, product, name=name).locator(".key")
    expect(key).to_have_count(1)
    return key.inner_text().strip()


def order_of(page: Page) -> Order:
    return Order.objects.get(token=re.search(r"/order/([^/]+)/", page.url).group(1))


def key_product(**fields) -> tuple[Product, list[str]]:
    product = ProductFactory(kind=FulfilmentKind.LICENSE_KEY, price_amount=2500, **fields)
    return product, add_keys(product, 3, prefix="E2E")


def address_inputs(page: Page):
    return page.locator("#id_ship_name, #id_ship_line1, #id_ship_city")
