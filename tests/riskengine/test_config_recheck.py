"""The risk configuration's stamps are read at most once per RISK_CONFIG_RECHECK_SECONDS in a process; a write in
this process is seen at once, one made elsewhere within that time."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from riskengine import config
from riskengine.config import risk_config
from riskengine.models import RiskRule

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch, settings):
    settings.RISK_CONFIG_RECHECK_SECONDS = 1.0
    now = [1000.0]
    monkeypatch.setattr(config.time, "monotonic", lambda: now[0])
    config.risk_config_recheck()
    yield now
    config.risk_config_recheck()


def _stamp_reads(fn) -> int:
    with CaptureQueriesContext(connection) as queries:
        fn()
    return sum("riskengine_riskconfigversion" in q["sql"] for q in queries.captured_queries)


def test_within_the_second_no_query_and_after_it_one(clock):
    risk_config()
    assert _stamp_reads(risk_config) == 0
    clock[0] += 1.5
    assert _stamp_reads(risk_config) == 1


def test_a_rule_saved_in_this_process_is_seen_by_the_next_assessment(clock):
    rule = RiskRule.objects.filter(enabled=True).first()
    assert rule in risk_config().rules
    rule.enabled = False
    rule.save()
    assert rule.pk not in {r.pk for r in risk_config().rules}


def test_a_change_made_elsewhere_is_seen_once_the_second_passed(clock):
    rule = RiskRule.objects.filter(enabled=True).first()
    risk_config()
    RiskRule.objects.filter(pk=rule.pk).update(enabled=False)  # no signal: as another process writes
    assert rule.pk in {r.pk for r in risk_config().rules}
    clock[0] += 1.01
    assert rule.pk not in {r.pk for r in risk_config().rules}


def test_zero_reads_the_stamps_every_time(clock, settings):
    settings.RISK_CONFIG_RECHECK_SECONDS = 0
    risk_config()
    assert _stamp_reads(risk_config) == 1
