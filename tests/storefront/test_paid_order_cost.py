"""The work one paid order costs, counted (not timed): SQL statements and transactions from checkout to key
delivered and email queued (tests/load/order_cost.py measures it; `make bench` prints it with CPU)."""

import pytest
import redis
from django.conf import settings

from tests.load.order_cost import STAGES, paid_order_cost
from tests.riskengine.test_rules import use_shipped_rules

# Real commits (on_commit work runs, nothing hides in a test's own transaction); the channels come back through
# tests/conftest.py, the shipped risk rules through use_shipped_rules.
pytestmark = pytest.mark.django_db(transaction=True)

STATEMENT_BUDGET = 25  # issue 12: at most 25 SQL statements per paid order, checkout to key delivered
TO_KEY_DELIVERED = ("checkout", "webhook", "deliver_task")


@pytest.fixture(autouse=True)
def stamps_read_once(settings):
    """The risk config's change stamps are read at most once a second per process, one read shared by every order
    of that second; on a slow machine one order can outlast a second and would count that read alone."""
    settings.RISK_CONFIG_RECHECK_SECONDS = 3600


@pytest.fixture
def cost(localstripe):
    use_shipped_rules()
    return paid_order_cost(
        orders=3, warmup=1, localstripe=localstripe, redis_client=redis.Redis.from_url(settings.REDIS_URL)
    )


def test_a_paid_order_costs_at_most_25_statements_from_checkout_to_key_delivered(cost):
    statements = sum(cost["stages"][stage]["statements"] for stage in TO_KEY_DELIVERED)
    assert statements <= STATEMENT_BUDGET, {stage: cost["stages"][stage]["statements"] for stage in STAGES}


def test_the_key_is_delivered_by_the_webhook_itself_and_one_task_is_left_the_email(cost):
    assert cost["stages"]["deliver_task"]["statements"] == 0  # no delivery task: the webhook delivered
    assert cost["left_queued"] == []
    assert cost["stages"]["email_task"]["statements"] <= 3


def test_no_savepoint_on_the_hot_path(localstripe):
    use_shipped_rules()
    cost = paid_order_cost(
        orders=1, warmup=0, localstripe=localstripe, redis_client=redis.Redis.from_url(settings.REDIS_URL), trace=True
    )
    assert [line for line in cost["trace"] if "SAVEPOINT" in line] == []
