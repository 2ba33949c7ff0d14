"""How staff run the backtest: the risk_backtest command, and the review site's page, whose comparison runs in
the background as a staff job (storefront.flow.backtest_job) with a page that shows its progress, then the figures.
The replay itself: test_backtest.py.

Orders are placed at fixed moments in 2025 (time-machine, tests/riskengine/backtest_history.py), and the
backtest's window is given exactly (the page's runs from the frozen clock), so each test sees its own orders only.
"""

import json
import re
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from riskengine import backtest
from riskengine.backtest import backtest_compare, configuration_build, configuration_current
from riskengine.backtest_report import comparison_from_json, comparison_to_json
from riskengine.models import RiskRule
from storefront.flow.staff_jobs import staff_job_run, staff_jobs_resume_stalled
from storefront.models import StaffJob, StaffJobKind, StaffJobStatus
from tests.riskengine.backtest_history import (  # noqa: F401  (the fixtures)
    WINDOW,
    clock_fixture,
    history_fixture,
    risky_month_fixture,
)

# --- the command -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_command_prints_the_summary_and_the_changed_orders(history):
    out = StringIO()

    call_command("risk_backtest", "--days", "30", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "Risk backtest: 2 paid order(s) from the last 30 day(s), all enabled rules (shadow rules counted as active)."
    )
    assert "approve          2       1      -1" in lines
    assert "review           0       1      +1" in lines
    assert f"{history['flips'].number:<14}approve  review   10 -> 50" in lines


@pytest.mark.django_db
def test_command_compares_a_proposal_and_refuses_bad_input(history):
    out = StringIO()

    call_command(
        "risk_backtest", "--compare", "--days", "60", "--review-threshold", "10", "--mode", "Disposable (trial)=off",
        stdout=out,
    )  # fmt: skip

    text = out.getvalue()
    assert re.search(r"thresholds\s+-\s+40/80\s+10/80", text)
    assert re.search(r"good held\s+0 \(0\.0%\)\s+0 \(0\.0%\)\s+2 \(66\.7%\)", text)
    assert "Disposable (trial)" in text and "2 order(s) decided differently." in text
    with pytest.raises(CommandError, match="No rule named: Nope"):
        call_command("risk_backtest", "--rule", "Nope", stdout=StringIO())
    with pytest.raises(CommandError, match="--mode takes active, shadow, off"):
        call_command("risk_backtest", "--compare", "--mode", "Risky goods=loud", stdout=StringIO())
    with pytest.raises(CommandError, match="0 < review < decline"):
        call_command("risk_backtest", "--compare", "--review-threshold", "90", stdout=StringIO())


# --- the page, and its job ---------------------------------------------------------------------------------


def staff_client(*, allowed: bool = True) -> Client:
    user = get_user_model().objects.create_user(f"staff{uuid.uuid4().hex[:6]}", password="pw-staff-1", is_staff=True)
    if allowed:
        user.user_permissions.add(Permission.objects.get(codename="view_riskrule"))
    client = Client()
    client.force_login(user)
    return client


def text_of(response) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", response.content.decode()).split())


def proposal(rule: RiskRule, **change: str) -> dict:
    """The form as posted: a 30-day window, review at 30 (the stored settings say 40), the rule active at 30."""
    data = {"days": "30", "review_threshold": "30", "decline_threshold": "80"}
    data |= {f"mode_{rule.pk}": change.pop("mode", "active"), f"points_{rule.pk}": change.pop("points", "30")}
    return data | change


def backtest_job(**fields) -> StaffJob:
    return StaffJob.objects.create(kind=StaffJobKind.BACKTEST, created_by="staff:someone", **fields)


@pytest.mark.django_db
def test_posting_a_proposal_starts_one_job_whose_page_shows_the_comparison_when_done(
    risky_month, django_capture_on_commit_callbacks
):
    # Given staff who may see the rules, on the form
    rule = RiskRule.objects.get(name="Risky goods")
    client = staff_client()
    form = client.get(reverse("review:backtest"))
    assert form.status_code == 200 and "Compare" in text_of(form) and "backtest-headline" not in form.content.decode()

    # When they post a proposal (review at 30 instead of 40)
    with django_capture_on_commit_callbacks(execute=False) as scheduled:
        response = client.post(reverse("review:backtest"), proposal(rule))

    # Then the request replayed nothing: it started one backtest job, to run once committed, and sent them to it
    job = StaffJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("review:backtest_job", args=[job.pk])
    assert (job.kind, job.status, job.outcome, len(scheduled)) == (StaffJobKind.BACKTEST, StaffJobStatus.PENDING, {}, 1)
    waiting = client.get(response["Location"])
    assert waiting.status_code == 200 and waiting["Refresh"] == "3"
    assert "Waiting for a worker" in text_of(waiting) and "backtest-headline" not in waiting.content.decode()

    # When the task runs (Celery runs eagerly in the tests)
    scheduled[0]()

    # Then the job is done, its progress counted every moment replayed, and its page no longer refreshes
    job.refresh_from_db()
    assert job.status == StaffJobStatus.DONE
    assert job.processed == job.total >= 5 and job.percent == 100
    done = client.get(response["Location"])
    assert done.status_code == 200 and not done.has_header("Refresh")

    # And it shows the comparison the page showed before it ran in the background
    text = text_of(done)
    assert "5 order(s)" in text
    assert "Fraud caught (held, declined or blocked) 0 0.0% 0 0.0% 1 100.0%" in text
    assert "Good orders held 0 0.0% 0 0.0% 2 50.0%" in text
    matrices = re.findall(r'<table class="confusion".*?</table>', done.content.decode(), re.S)
    cells = [[int(n) for n in re.findall(r'<td class="num">(\d+)</td>', m)] for m in matrices]
    assert cells == [[1, 0, 0, 0, 0, 4, 0, 0, 0, 0], [1, 0, 0, 0, 0, 4, 0, 0, 0, 0], [0, 1, 0, 0, 0, 2, 2, 0, 0, 0]]
    assert "Risky goods active 30 1 2 0 33.3% active 30 1 2 0 33.3%" in text
    assert "Orders decided differently (3)" in text

    # And its figures are those backtest_compare gives directly, over the window the form asked for
    end = timezone.now()
    proposed = configuration_build(name="proposed", rules=[rule], review_threshold=30, decline_threshold=80)
    direct = backtest_compare(
        configurations=[configuration_current(), proposed], start=end - timedelta(days=30), end=end
    )
    assert comparison_from_json(job.outcome["comparison"]) == direct
    assert (job.params["start"], job.params["end"]) == ((end - timedelta(days=30)).isoformat(), end.isoformat())


@pytest.mark.django_db
def test_a_job_run_again_or_resumed_after_it_stalled_keeps_one_comparison(
    risky_month, settings, django_capture_on_commit_callbacks
):
    # Given a backtest job whose worker died halfway (running, its last heartbeat long ago)
    rule = RiskRule.objects.get(name="Risky goods")
    with django_capture_on_commit_callbacks(execute=False):
        staff_client().post(reverse("review:backtest"), proposal(rule))
    job = StaffJob.objects.get()
    stalled_at = timezone.now() - settings.KEY_IMPORT_STALL_AFTER - timedelta(minutes=1)
    StaffJob.objects.filter(pk=job.pk).update(
        status=StaffJobStatus.RUNNING, processed=2, total=9, heartbeat_at=stalled_at
    )

    # When the sweeper finds it, and then the job is run once more
    with django_capture_on_commit_callbacks(execute=True):
        resumed = staff_jobs_resume_stalled()
    job.refresh_from_db()
    first = job.outcome
    again = staff_job_run(job_id=job.pk)

    # Then the resumed run replayed from the start and stored the comparison; the second run left it as it was
    assert resumed == [job.pk]
    assert job.status == StaffJobStatus.DONE and job.processed == job.total >= 5
    assert comparison_from_json(first["comparison"]).figures("proposed").overall.caught == 1
    assert again.status == StaffJobStatus.DONE and again.outcome == first and StaffJob.objects.count() == 1


@pytest.mark.django_db
def test_a_rule_deleted_before_the_job_ran_is_left_out_and_the_page_says_so(
    risky_month, django_capture_on_commit_callbacks
):
    # Given a backtest started, and its one rule deleted before a worker ran it
    rule = RiskRule.objects.get(name="Risky goods")
    client = staff_client()
    with django_capture_on_commit_callbacks(execute=False) as scheduled:
        response = client.post(reverse("review:backtest"), proposal(rule))
    rule.delete()

    # When it runs
    scheduled[0]()

    # Then both configurations ran without it (nothing held), and the page says one rule was left out
    text = text_of(client.get(response["Location"]))
    assert "1 rule was left out: it was deleted after the backtest was started." in text
    assert "Orders decided differently (0)" in text


def test_the_replay_reports_its_progress_every_few_hundred_moments(risky_month, monkeypatch):
    # Given progress asked for every two moments
    monkeypatch.setattr(backtest, "PROGRESS_EVERY", 2)
    heard = []

    # When the window is compared
    backtest_compare(configurations=[configuration_current()], progress=lambda *done: heard.append(done), **WINDOW)

    # Then it heard the total first, then every second moment, then the last
    total = heard[0][1]
    assert heard == [(0, total), *((n, total) for n in range(2, total, 2)), (total, total)] and total >= 5


@pytest.mark.django_db
def test_a_running_job_shows_its_progress_and_a_failed_one_its_error(db):
    client = staff_client()
    running = backtest_job(status=StaffJobStatus.RUNNING, processed=1200, total=4800)
    failed = backtest_job(status=StaffJobStatus.FAILED, error="Stopped after 0 of 0 (OperationalError).")

    page = client.get(reverse("review:backtest_job", args=[running.pk]))
    stopped = client.get(reverse("review:backtest_job", args=[failed.pk]))

    assert page["Refresh"] == "3"
    assert "Running: 25% (1200 of 4800 moments replayed" in text_of(page)
    assert not stopped.has_header("Refresh") and "Failed. Stopped after 0 of 0 (OperationalError)." in text_of(stopped)


def test_the_comparison_comes_back_from_json_equal_and_in_order(risky_month):
    comparison = backtest_compare(configurations=[configuration_current()], patterns={"x": "y"}, **WINDOW)

    stored = json.loads(json.dumps(comparison_to_json(comparison)))

    assert comparison_from_json(stored) == comparison
    back = comparison_from_json(stored).figures("current").overall.confusion
    assert [(label, list(row)) for label, row in back.items()] == [
        (label, list(row)) for label, row in comparison.figures("current").overall.confusion.items()
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"review_threshold": "90"}, "The review threshold (90) must be below the decline threshold (80)."),
        ({"review_threshold": "abc"}, "Review threshold: Enter a whole number."),
        ({"days": "0"}, "Days: Ensure this value is greater than or equal to 1."),
        ({"mode": "loud"}, "Risky goods: mode: Select a valid choice. loud is not one of the available choices."),
        ({"points": "101"}, "Risky goods: points: Ensure this value is less than or equal to 100."),
    ],
)
def test_the_page_refuses_bad_input_with_a_message_and_starts_nothing(
    risky_month, change, message, django_capture_on_commit_callbacks
):
    rule = RiskRule.objects.get(name="Risky goods")

    with django_capture_on_commit_callbacks(execute=False) as scheduled:
        response = staff_client().post(
            reverse("review:backtest"), proposal(rule, **{"review_threshold": "40", **change})
        )

    assert response.status_code == 400
    assert message in text_of(response)
    assert "backtest-headline" not in response.content.decode()
    assert not StaffJob.objects.exists() and scheduled == []


@pytest.mark.django_db
def test_the_page_and_its_jobs_are_for_staff_who_may_see_the_rules(db):
    job = backtest_job()
    other_kind = StaffJob.objects.create(kind=StaffJobKind.LOCK_KEYS, created_by="staff:someone")
    form, page = reverse("review:backtest"), reverse("review:backtest_job", args=[job.pk])
    anonymous, forbidden, allowed = Client(), staff_client(allowed=False), staff_client()

    for url in (form, page):
        response = anonymous.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
        assert forbidden.get(url).status_code == 403
    assert anonymous.post(form, {"days": "30"}).status_code == 302
    assert forbidden.post(form, {"days": "30", "review_threshold": "30", "decline_threshold": "80"}).status_code == 403
    assert StaffJob.objects.count() == 2  # none started
    assert allowed.get(page).status_code == 200
    assert allowed.get(reverse("review:backtest_job", args=[other_kind.pk])).status_code == 404
