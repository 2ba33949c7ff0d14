"""Every shopper page of the demo shop, in English and Simplified Chinese, at 1280 px and 390 px: axe-core finds
no serious or critical violation, and each is saved under .cache/e2e/pages/ with one contact sheet of them all.
"""

from pathlib import Path

import pytest
from django.core.management import call_command

from tests.e2e.conftest import SCREENSHOTS
from tests.e2e.pages import LANGUAGES, WIDTHS, axe_problems, contact_sheet, shopper_pages

pytestmark = pytest.mark.django_db(transaction=True)

PAGES_DIR = SCREENSHOTS / "pages"
CONTACT_SHEET = SCREENSHOTS / "contact-sheet.png"
EVERY_PAGE = [
    "home",
    "category",
    "search",
    "footer-page",
    "find-my-order",
    "not-found",
    "product",
    "cart",
    "checkout",
    "pay",
    "order",
]


def test_every_shopper_page_passes_axe_in_both_languages_and_both_widths(browsers, tmp_path):
    # Given the demo shop: brand, logo, categories, pictures, footer pages, keys in stock
    call_command("seed_demo", stdout=tmp_path.joinpath("seed.log").open("w"))
    PAGES_DIR.mkdir(parents=True, exist_ok=True)
    for stale in PAGES_DIR.glob("*.png"):
        stale.unlink()
    problems: list[str] = []
    shots: list[tuple[int, str, int, Path]] = []

    for language in LANGUAGES:
        # When a shopper in that language walks through the shop and buys a key
        shopper = browsers.open(f"shopper-{language}", width=WIDTHS[0])
        shopper.context.add_cookies([{"name": "django_language", "value": language, "url": browsers.base_url}])
        page = shopper.page
        seen = []
        for number, name in enumerate(
            shopper_pages(
                page, product_slug="photo-editor-pro", category_slug="software", footer_slug="terms", query="photo"
            ),
            start=1,
        ):
            assert page.locator("html").get_attribute("lang") == language, (name, page.url)
            if name == "not-found":  # the 404 answer is the point of this page, not a browser error
                shopper.errors = [error for error in shopper.errors if "404" not in error]
            # Then at each width the page has no serious or critical violation, and is photographed
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                shot = PAGES_DIR / f"{language}-{number:02d}-{name}-{width}.png"
                page.screenshot(path=shot, full_page=True)
                shots.append((number, language, -width, shot))
                problems += [f"[{language} {name} {width}px] {problem}" for problem in axe_problems(page)]
            page.set_viewport_size({"width": WIDTHS[0], "height": 900})
            seen.append(name)
        assert seen == EVERY_PAGE

    contact_sheet([shot for *_order, shot in sorted(shots)], CONTACT_SHEET)  # a row per page
    assert len(shots) == len(EVERY_PAGE) * len(LANGUAGES) * len(WIDTHS)
    assert not problems, "axe-core found serious or critical violations:\n" + "\n".join(problems)
    assert not browsers.errors(), "\n".join(browsers.errors())


def test_axe_reports_a_search_box_that_lost_its_label(browsers):
    # Given the home page, whose search box has a label
    shopper = browsers.open()
    shopper.page.goto("/")
    assert axe_problems(shopper.page) == []

    # When the label is taken away, axe-core reports the input (so the walk above can fail)
    shopper.page.evaluate("() => document.querySelector('label[for=search-q]').remove()")
    shopper.page.evaluate("() => document.querySelector('#search-q').removeAttribute('placeholder')")
    problems = axe_problems(shopper.page)
    assert any(" label at #search-q" in problem for problem in problems), problems
