"""The smoke suite runs against `manage.py demo` itself (tests/smoke_sqlite/demo.py), one for the whole session.

It never opens the database: everything goes through the shop's pages and API, localstripe and the fake PayPal,
as a visitor of the demo would. A failing test shows the end of the demo's output (tracebacks land there).
"""

import pytest

from tests.smoke_sqlite.demo import Demo


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    shop = Demo(tmp_path_factory.mktemp("demo")).start()
    yield shop
    shop.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    shop = getattr(item, "funcargs", {}).get("demo")
    if report.failed and isinstance(shop, Demo):
        report.sections.append(("the demo's output (last lines)", shop.tail(80)))
    return report
