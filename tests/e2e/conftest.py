"""Browser fixtures: Debian's Chromium, driven by Playwright, against the shop on pytest-django's live_server.

Every test gets fresh browser contexts (one per person: their own cookies, as two real people would have).
Each page's console errors, page errors and failed requests are collected, and `browsers.finish()` saves a
full-page screenshot of the end state to .cache/e2e/<test name>.png and fails on any error the browser saw
(a script blocked by the Content-Security-Policy shows up there). A failing test leaves
<test name>-<role>-failed.png and prints the browser's errors with its report.
Without Chromium the tests skip themselves, saying why.
"""

import contextlib
import glob
import re
import uuid
from pathlib import Path

import pytest

from riskengine.defaults import shipped_rules_install
from tests.e2e.chromium import LAUNCH_ARGS, SKIP_REASON, find_chromium

CHROMIUM = find_chromium()
E2E_DIR = Path(__file__).resolve().parent
SCREENSHOTS = E2E_DIR.parents[1] / ".cache" / "e2e"
STEP_TIMEOUT_MS = 5_000  # any one click, fill or expectation
NAVIGATION_TIMEOUT_MS = 10_000  # a page load that includes a provider call (localstripe, the fake PayPal)
CALL_FAILED = pytest.StashKey[bool]()


def pytest_collection_modifyitems(config, items):
    if CHROMIUM:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if E2E_DIR in Path(item.path).resolve().parents:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
        browsers = getattr(item, "funcargs", {}).get("browsers")
        if report.failed and browsers is not None and browsers.errors():
            # what the browser saw (a CSP refusal, a script error) usually explains a step that timed out
            report.sections.append(("browser errors", "\n".join(browsers.errors())))
    return report


@pytest.fixture(scope="package")
def chromium():
    """One headless Chromium for the e2e package; Playwright's own browser download is not used."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=STEP_TIMEOUT_MS)
    with pytest.MonkeyPatch.context() as patch:
        # Playwright's sync API keeps its asyncio loop running on this thread, and Django refuses ORM calls
        # from a thread with a running loop. The test code itself is synchronous, so it is safe here; the
        # setting ends with the package, before the rest of the suite runs.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            # launch() gives every browser a new, empty profile directory of its own
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
            yield browser
            browser.close()


class Person:
    """One person's browser window: a fresh context and its page, with what went wrong in it."""

    def __init__(self, context, role: str):
        self.role = role
        self.context = context
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("requestfailed", self._request_failed)

    def _console(self, message) -> None:
        if message.type != "error":
            return
        where = message.location.get("url", "") if message.location else ""
        if where.endswith("/favicon.ico"):  # the shop has no icon; Chromium asks for one anyway
            return
        self.errors.append(f"console error at {where or self.page.url}: {message.text}")

    def _request_failed(self, request) -> None:
        if request.url.endswith("/favicon.ico"):
            return
        self.errors.append(f"request failed: {request.method} {request.url}: {request.failure}")


class Browsers:
    """Opens a browser window per person and records the end state of the test."""

    def __init__(self, chromium, base_url: str, test_name: str):
        self._chromium = chromium
        self.base_url = base_url
        self._name = re.sub(r"[^\w.-]+", "_", test_name)
        self.people: list[Person] = []
        for stale in SCREENSHOTS.glob(f"{glob.escape(self._name)}*.png"):  # the folder shows the last run
            stale.unlink()

    def open(self, role: str = "shopper", *, locale: str = "en-US", width: int = 1100) -> Person:
        context = self._chromium.new_context(
            base_url=self.base_url, locale=locale, viewport={"width": width, "height": 900}
        )
        context.set_default_timeout(STEP_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        person = Person(context, role)
        self.people.append(person)
        return person

    def screenshot(self, person: Person, suffix: str = "") -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self._name}{suffix}.png"
        person.page.screenshot(path=path, full_page=True)
        return path

    def finish(self, main: Person) -> None:
        """Screenshot every window's end state (the main one as <test>.png); fail on any browser error."""
        self.screenshot(main)
        for person in self.people:
            if person is not main:
                self.screenshot(person, f"-{person.role}")
        errors = self.errors()
        assert not errors, "the browser reported errors:\n" + "\n".join(errors)

    def errors(self) -> list[str]:
        return [f"[{person.role}] {error}" for person in self.people for error in person.errors]

    def close(self, failed: bool) -> None:
        for person in self.people:
            if failed:
                # a page that crashed cannot be photographed; the test's own failure is what counts
                with contextlib.suppress(Exception):
                    self.screenshot(person, f"-{person.role}-failed")
            person.context.close()


@pytest.fixture
def shop(live_server, localstripe, settings):
    """The shop on live_server as a fresh install has it: Stripe on localstripe, the default risk rules.

    Transactional tests flush what migrations inserted, so the default rules and thresholds are put back.
    Velocity counters get a prefix of their own, so orders placed by earlier tests from this same
    browser address (127.0.0.1) never count against this one.
    """
    shipped_rules_install()
    settings.SITE_URL = live_server.url  # links in emails and the fake PayPal's return address
    settings.RISK_VELOCITY_PREFIX = f"{settings.RISK_VELOCITY_PREFIX}:e2e{uuid.uuid4().hex[:8]}"
    return live_server


@pytest.fixture
def browsers(chromium, shop, request):
    opened = Browsers(chromium, shop.url, request.node.name)
    yield opened
    opened.close(failed=request.node.stash.get(CALL_FAILED, False))
