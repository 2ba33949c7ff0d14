"""Lighthouse (npm, 12.2.3) on the demo shop's home, product, checkout and order pages with Debian's Chromium:
performance and accessibility at least 95 each, Lighthouse's default mobile run (simulated slow 4G, 4x CPU).

Slow (about 20 s a page), so it runs only from `make lighthouse`, which installs Lighthouse into
.cache/lighthouse and sets LIGHTHOUSE to its command; the scores go to .cache/e2e/lighthouse.txt.
"""

import json
import os
import subprocess

import pytest
from django.core.management import call_command

from tests.e2e.chromium import LAUNCH_ARGS
from tests.e2e.conftest import CHROMIUM, SCREENSHOTS
from tests.e2e.pages import shopper_pages

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not os.environ.get("LIGHTHOUSE"), reason="Lighthouse runs from `make lighthouse`"),
]

LEAST_SCORE = 95
CATEGORIES = ("performance", "accessibility")
SCORES_FILE = SCREENSHOTS / "lighthouse.txt"
WALK = {"product_slug": "photo-editor-pro", "category_slug": "software", "footer_slug": "terms", "query": "photo"}


def lighthouse_scores(url: str, report_path, *, cookie: str = "") -> dict[str, int]:
    """Run the Lighthouse CLI on one address; its category scores out of 100."""
    command = [
        os.environ["LIGHTHOUSE"],
        url,
        "--quiet",
        "--output=json",
        f"--output-path={report_path}",
        f"--only-categories={','.join(CATEGORIES)}",
        f"--chrome-flags=--headless=new {' '.join(LAUNCH_ARGS)}",
        "--max-wait-for-load=20000",
    ]
    if cookie:
        command.append(f"--extra-headers={json.dumps({'Cookie': cookie})}")
    subprocess.run(command, check=True, timeout=180, env=dict(os.environ, CHROME_PATH=CHROMIUM))
    report = json.loads(report_path.read_text())
    assert report["finalDisplayedUrl"] == url, f"{url} went to {report['finalDisplayedUrl']}"
    return {name: round(report["categories"][name]["score"] * 100) for name in CATEGORIES}


def test_home_product_checkout_and_order_score_at_least_95(browsers, tmp_path):
    # Given the demo shop, a shopper who bought a key (the order page) and one with a cart (the checkout page)
    SCORES_FILE.unlink(missing_ok=True)
    call_command("seed_demo", stdout=tmp_path.joinpath("seed.log").open("w"))
    buyer = browsers.open("buyer")
    for name in shopper_pages(buyer.page, **WALK):
        if name == "order":
            order_url = buyer.page.url
    carrier = browsers.open("checkout")
    for name in shopper_pages(carrier.page, **WALK):
        if name == "checkout":
            break
    session = "; ".join(f"{c['name']}={c['value']}" for c in carrier.context.cookies())

    # When Lighthouse loads each page in a fresh Chromium
    pages = {
        "home": (browsers.base_url + "/", ""),
        "product": (f"{browsers.base_url}/p/{WALK['product_slug']}/", ""),
        "checkout": (f"{browsers.base_url}/checkout/", session),
        "order": (order_url, ""),
    }
    scores = {
        name: lighthouse_scores(url, tmp_path / f"{name}.json", cookie=cookie) for name, (url, cookie) in pages.items()
    }

    # Then every page scores at least 95 in both categories
    lines = [f"{name:<10}" + "  ".join(f"{c} {s[c]:>3}" for c in CATEGORIES) for name, s in scores.items()]
    SCORES_FILE.parent.mkdir(parents=True, exist_ok=True)
    SCORES_FILE.write_text("Lighthouse (mobile, simulated throttling)\n" + "\n".join(lines) + "\n")
    low = {name: s for name, s in scores.items() if min(s.values()) < LEAST_SCORE}
    assert not low, f"below {LEAST_SCORE}: {low}"
