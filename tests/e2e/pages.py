"""Every shopper page, walked as a shopper reaches it, checked with axe-core and photographed.

axe-core (npm, MPL-2.0) is vendored as one file, tests/e2e/vendor/axe.min.js (`make e2e` puts it back from npm
when it is missing). It is never served by the shop: Playwright answers a made-up same-origin address with the
file, so the page's Content-Security-Policy ('self' scripts) lets it run and stays on while it does.
"""

from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from playwright.sync_api import Page, expect

from tests.e2e.steps import ORDER_PAGE, fill_card

AXE_FILE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
AXE_URL = "/__e2e__/axe.min.js"  # answered by Playwright (page.route), unknown to the shop
BLOCKING_IMPACTS = ("serious", "critical")
# The card element is the payment provider's (Stripe's iframe in production, localstripe's inputs here):
# the shop does not write it, so axe looks at everything around it.
NOT_OURS = ["#card-element"]
WIDTHS = (1280, 390)
LANGUAGES = ("en", "zh-hans")


def axe_problems(page: Page) -> list[str]:
    """Run axe-core on the page as it is now; one line per serious or critical violation and element."""
    assert AXE_FILE.is_file(), f"{AXE_FILE} is missing: `make e2e` fetches it from npm"
    if not page.evaluate("() => Boolean(window.axe)"):
        page.route(f"**{AXE_URL}", lambda route: route.fulfill(path=AXE_FILE, content_type="text/javascript"))
        page.add_script_tag(url=AXE_URL)
    results = page.evaluate(
        """(exclude) => axe.run({include: [document], exclude: exclude.map((selector) => [selector])},
                                {resultTypes: ["violations"]})""",
        NOT_OURS,
    )
    problems = []
    for violation in results["violations"]:
        if violation["impact"] not in BLOCKING_IMPACTS:
            continue
        for node in violation["nodes"]:
            target = " ".join(str(part) for part in node["target"])
            problems.append(f"{violation['impact']} {violation['id']} at {target}: {node['failureSummary']}")
    return problems


def shopper_pages(page: Page, *, product_slug: str, category_slug: str, footer_slug: str, query: str) -> Iterator[str]:
    """Go to each shopper page in turn (yielding its name once it is on screen), buying one product on the way.

    The product must be a license key with keys in stock, so the last page is a delivered order.
    """
    for name, path in (
        ("home", "/"),
        ("category", f"/c/{category_slug}/"),
        ("search", f"/search/?q={query}"),
        ("footer-page", f"/pages/{footer_slug}/"),
        ("find-my-order", "/order/lookup/"),
        ("not-found", "/no-such-page/"),
        ("product", f"/p/{product_slug}/"),
    ):
        page.goto(path)
        expect(page.locator("h1").first).to_be_visible()
        yield name
    page.locator("form[action$='/add/'] button[type=submit]").first.click()
    expect(page.locator("table.lines")).to_be_visible()
    yield "cart"
    page.locator("a.button[href$='/checkout/']").click()
    expect(page.locator("#id_email")).to_be_visible()
    yield "checkout"
    page.fill("#id_email", "every.page@example.com")
    page.locator("main form button[type=submit]").last.click()
    fill_card(page)
    yield "pay"
    page.locator("#pay-button").click()
    expect(page).to_have_url(ORDER_PAGE, timeout=10_000)
    expect(page.locator("#order-status")).to_have_attribute("data-status", "fulfilled")
    yield "order"


def contact_sheet(shots: list[Path], target: Path, *, columns: int = 4, cell_width: int = 320) -> Path:
    """One PNG with every screenshot scaled to a cell (the top of long pages), each under its file name."""
    label_height, cell_height, gap = 18, 560, 8
    rows = -(-len(shots) // columns)
    sheet = Image.new("RGB", (columns * (cell_width + gap) + gap, rows * (cell_height + label_height + gap) + gap))
    sheet.paste((235, 238, 242), (0, 0, *sheet.size))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    for index, shot in enumerate(shots):
        x = gap + (index % columns) * (cell_width + gap)
        y = gap + (index // columns) * (cell_height + label_height + gap)
        draw.text((x, y + 2), shot.stem, fill=(20, 20, 20), font=font)
        with Image.open(shot) as picture:
            scale = min(cell_width / picture.width, 1.0)
            height = min(round(picture.height * scale), cell_height)
            thumb = picture.convert("RGB").resize((round(picture.width * scale), round(picture.height * scale)))
            sheet.paste(thumb.crop((0, 0, thumb.width, height)), (x, y + label_height))
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target, optimize=True)
    return target
