"""The ops review queue and the risk metrics: pages for the 'Risk reviewers' group, not the Django admin.

Reviewers are not staff; every review page asks for riskengine.review_orders. Thin: the pages read the order's
story and act through riskengine.review, whose services write an OrderEvent for every action.
The backtest page (the current rules against a proposal, riskengine.backtest) is for staff who may see the rules:
the posted proposal starts a staff job (storefront.flow.backtest_job), whose page shows its progress, then the
comparison.
"""

import copy
from datetime import timedelta
from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from orders.models import Order
from orders.status import IllegalTransition
from payments.providers.base import PaymentError
from payments.refunds import RefundNotAllowed
from riskengine import metrics
from riskengine.backtest import Configuration, configuration_build, configuration_current
from riskengine.backtest_report import DECISIONS, comparison_from_json, comparison_side_by_side
from riskengine.learning import model_status
from riskengine.models import FraudLabel, ListKind, ReviewCase, ReviewStatus, RiskRule, RiskSettings, RuleMode
from riskengine.review import BLOCKABLE, ReviewError, review_claim
from riskengine.selectors import linked_orders
from storefront.charts import dispute_chart
from storefront.flow.backtest_job import backtest_job_params
from storefront.flow.review import review_approve, review_reject
from storefront.flow.staff_jobs import staff_job_start
from storefront.models import StaffJob, StaffJobKind, StaffJobStatus

REVIEW_PERMISSION = "riskengine.review_orders"
DECISION_COLOURS = {"approve": "#4a4", "review": "#e90", "decline": "#c33"}


def reviewer_required(view):
    """Anonymous visitors go to the review login; signed-in users without the permission get 403."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), login_url=reverse("review:login"))
        if not request.user.has_perm(REVIEW_PERMISSION):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


# Reads -------------------------------------------------------------------------------------------------


def top_reasons(reasons: list[dict], count: int = 2) -> list[dict]:
    """The reasons that weighed most (stable for equal points)."""
    return sorted(reasons or [], key=lambda r: -int(r.get("points") or 0))[:count]


def _open_cases():
    return (
        ReviewCase.objects.filter(status=ReviewStatus.OPEN)
        .select_related("order", "assessment", "claimed_by")
        .order_by("created_at", "pk")
    )


def _customer_history(order: Order) -> list[dict]:
    others = list(Order.objects.filter(email__iexact=order.email).exclude(pk=order.pk).order_by("-created_at")[:50])
    labels = _labels_for([o.pk for o in others])
    return [{"order": o, "labels": labels.get(o.pk, [])} for o in others]


def _labels_for(order_ids: list[int]) -> dict[int, list[FraudLabel]]:
    found: dict[int, list[FraudLabel]] = {}
    for label in FraudLabel.objects.filter(order_id__in=order_ids).order_by("created_at"):
        found.setdefault(label.order_id, []).append(label)
    return found


def _linked(order: Order) -> list[dict]:
    links = linked_orders(order_id=order.pk)
    orders = Order.objects.in_bulk([link.order_id for link in links])
    return [{"link": link, "order": orders.get(link.order_id)} for link in links]


def _blockable(order: Order) -> list[dict]:
    labels = dict(ListKind.choices)
    return [
        {"kind": kind, "label": labels[kind], "value": getattr(order, field)}
        for kind, field in BLOCKABLE.items()
        if getattr(order, field)
    ]


# Pages -------------------------------------------------------------------------------------------------


@require_GET
@reviewer_required
def queue(request):
    deadline = timedelta(hours=RiskSettings.current().review_deadline_hours)
    rows = [
        {
            "case": case,
            "top_reasons": top_reasons(case.assessment.reasons),
            "radar": case.assessment.radar or {},
            "refund_at": case.created_at + deadline,
        }
        for case in _open_cases()
    ]
    return render(request, "riskengine/queue.html", {"rows": rows})


def _case_page(request, case_id: int, *, error: str = "", note: str = "", status: int = 200):
    case = get_object_or_404(
        ReviewCase.objects.select_related("order", "assessment", "claimed_by", "decided_by"), pk=case_id
    )
    order = case.order
    context = {
        "case": case,
        "order": order,
        "assessment": case.assessment,
        "radar": case.assessment.radar or {},
        "earlier_assessments": order.risk_assessments.exclude(pk=case.assessment_id),
        "lines": order.lines.all(),
        "history": _customer_history(order),
        "links": _linked(order),
        "accesses": order.accesses.select_related("line"),
        "events": order.events.all(),
        "labels": order.fraud_labels.all(),
        "blockable": _blockable(order),
        "refund_at": case.created_at + timedelta(hours=RiskSettings.current().review_deadline_hours),
        "is_open": case.status == ReviewStatus.OPEN,
        "claimed_by_me": case.claimed_by_id == request.user.pk,
        "error": error,
        "note": note,
    }
    return render(request, "riskengine/case_detail.html", context, status=status)


@require_GET
@reviewer_required
def case_detail(request, case_id: int):
    return _case_page(request, case_id)


@require_POST
@reviewer_required
def case_claim(request, case_id: int):
    get_object_or_404(ReviewCase, pk=case_id)
    try:
        review_claim(case_id=case_id, user=request.user)
    except ReviewError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "You are reviewing this order; nobody else can decide it while you do.")
    return redirect("review:case", case_id=case_id)


@require_POST
@reviewer_required
def case_approve(request, case_id: int):
    get_object_or_404(ReviewCase, pk=case_id)
    note = request.POST.get("note", "")
    try:
        order = review_approve(case_id=case_id, user=request.user, note=note)
    except ReviewError as exc:
        return _case_page(request, case_id, error=str(exc), note=note, status=409)
    except IllegalTransition as exc:
        return _case_page(request, case_id, error=f"The order can no longer be approved: {exc}", note=note, status=409)
    messages.success(request, f"{order.number} approved and released ({order.get_status_display()}).")
    return redirect("review:queue")


@require_POST
@reviewer_required
def case_reject(request, case_id: int):
    get_object_or_404(ReviewCase, pk=case_id)
    note = request.POST.get("note", "")
    kinds = [kind for kind in request.POST.getlist("blocklist") if kind in BLOCKABLE]
    try:
        order = review_reject(case_id=case_id, user=request.user, note=note, blocklist=kinds)
    except ReviewError as exc:
        return _case_page(request, case_id, error=str(exc), note=note, status=409)
    except (RefundNotAllowed, PaymentError) as exc:
        error = f"The refund did not go through, nothing was decided: {exc}"
        return _case_page(request, case_id, error=error, note=note, status=502)
    blocked = f" Blocklisted: {', '.join(kinds)}." if kinds else ""
    messages.success(request, f"{order.number} rejected and refunded.{blocked}")
    return redirect("review:queue")


# Metrics -----------------------------------------------------------------------------------------------


def _decision_chart(days: list[metrics.DecisionCounts], *, width: int = 720, height: int = 180) -> dict:
    """Stacked bars of each day's approve / review / decline shares (SVG geometry, no script)."""
    slot = width / max(len(days), 1)
    bars = []
    for index, day in enumerate(days):
        top = float(height)
        segments = []
        for decision in ("approve", "review", "decline"):
            count = getattr(day, decision)
            share = count / day.total if day.total else 0
            size = share * height
            top -= size
            segments.append(
                {
                    "y": round(top, 1),
                    "height": round(size, 1),
                    "colour": DECISION_COLOURS[decision],
                    "title": f"{day.day:%Y-%m-%d}: {count} {decision} ({share:.0%})",
                }
            )
        bars.append({"x": round(index * slot + 1, 1), "width": round(max(slot - 2, 1), 1), "segments": segments})
    return {"width": width, "height": height, "bars": bars}


def _dispute_chart(months: list[metrics.MonthDisputes]) -> dict:
    """Bars of each month's dispute ratio with the card networks' early-warning lines (shared with the dashboard)."""
    return dispute_chart(months, metrics.DISPUTE_THRESHOLDS)


def percent(part: int, whole: int, digits: int = 1) -> str:
    return f"{100 * part / whole:.{digits}f}%" if whole else "n/a"


@require_GET
@reviewer_required
def metrics_page(request):
    per_day = metrics.decisions_per_day(days=30)
    months = metrics.dispute_ratio_by_month(months=6)
    days = [
        {"counts": day, **{d: percent(getattr(day, d), day.total) for d in DECISION_COLOURS}}
        for day in reversed(per_day)
    ]
    totals = metrics.decisions_total(per_day)
    rules = [
        {"stats": rule, "precision": percent(rule.fraud, rule.labelled, 0)} for rule in metrics.rule_hit_stats(days=90)
    ]
    context = {
        "days": days,
        "totals": totals,
        "total_rates": {d: percent(getattr(totals, d), totals.total) for d in DECISION_COLOURS},
        "decision_chart": _decision_chart(per_day),
        "colours": DECISION_COLOURS,
        "rules": rules,
        "months": months,
        "dispute_chart": _dispute_chart(months),
        "thresholds": {network: float(level * 100) for network, level in metrics.DISPUTE_THRESHOLDS.items()},
        "warnings": [m for m in months if m.over],
        "settings": RiskSettings.current(),
    }
    return render(request, "riskengine/metrics.html", context)


# Backtest ----------------------------------------------------------------------------------------------

RULE_MODES = [(RuleMode.ACTIVE.value, "active"), (RuleMode.SHADOW.value, "shadow"), ("off", "off")]
BACKTEST_REFRESH_SECONDS = 3


def staff_required(view):
    """Staff who may see the rules (as the admin's backtest action): others get the admin login or 403."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), login_url=reverse("admin:login"))
        if not (request.user.is_staff and request.user.has_perm("riskengine.view_riskrule")):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


class ProposalForm(forms.Form):
    """A proposed configuration: thresholds, each rule active, shadow or off with its points, and the window."""

    days = forms.IntegerField(min_value=1, max_value=365, initial=30)
    review_threshold = forms.IntegerField(min_value=1, max_value=100)
    decline_threshold = forms.IntegerField(min_value=1, max_value=100)
    shadow_as_active = forms.BooleanField(required=False, label="Count the proposal's shadow rules as active")

    def __init__(self, *args, rules: list[RiskRule], thresholds: RiskSettings, **kwargs):
        super().__init__(*args, **kwargs)
        self.rules = rules
        self.fields["review_threshold"].initial = thresholds.review_threshold
        self.fields["decline_threshold"].initial = thresholds.decline_threshold
        for rule in rules:
            self.fields[f"mode_{rule.pk}"] = forms.ChoiceField(
                choices=RULE_MODES, initial=rule.mode if rule.enabled else "off", label=f"{rule.name}: mode"
            )
            self.fields[f"points_{rule.pk}"] = forms.IntegerField(
                min_value=0, max_value=100, initial=rule.points, label=f"{rule.name}: points"
            )

    def clean(self):
        cleaned = super().clean()
        review, decline = cleaned.get("review_threshold"), cleaned.get("decline_threshold")
        if review is not None and decline is not None and not review < decline:
            raise forms.ValidationError(
                f"The review threshold ({review}) must be below the decline threshold ({decline})."
            )
        return cleaned

    def rule_rows(self) -> list[dict]:
        return [{"rule": r, "mode": self[f"mode_{r.pk}"], "points": self[f"points_{r.pk}"]} for r in self.rules]

    def proposal(self) -> Configuration:
        data, chosen = self.cleaned_data, []
        for rule in self.rules:
            if data[f"mode_{rule.pk}"] == "off":
                continue
            proposed = copy.copy(rule)  # in memory only: nothing is saved
            proposed.mode, proposed.points = data[f"mode_{rule.pk}"], data[f"points_{rule.pk}"]
            chosen.append(proposed)
        return configuration_build(
            name="proposed",
            rules=chosen,
            review_threshold=data["review_threshold"],
            decline_threshold=data["decline_threshold"],
            shadow_as_active=data["shadow_as_active"],
        )


@require_http_methods(["GET", "POST"])
@staff_required
def backtest_page(request):
    """The proposal's form; posted and valid, it starts a backtest job and sends staff to the job's page."""
    rules = list(RiskRule.objects.order_by("name"))
    thresholds = RiskSettings.objects.filter(pk=1).first() or RiskSettings()
    form = ProposalForm(request.POST if request.method == "POST" else None, rules=rules, thresholds=thresholds)
    context = {"form": form, "model_status": model_status()}
    if request.method != "POST":
        return render(request, "riskengine/backtest.html", context)
    if not form.is_valid():
        return render(request, "riskengine/backtest.html", context, status=400)
    end = timezone.now()
    params = backtest_job_params(
        configurations=[configuration_current(), form.proposal()],
        start=end - timedelta(days=form.cleaned_data["days"]),
        end=end,
    )
    job = staff_job_start(kind=StaffJobKind.BACKTEST, actor=f"staff:{request.user.get_username()}", params=params)
    return redirect("review:backtest_job", job_id=job.pk)


@require_GET
@staff_required
def backtest_job(request, job_id: int):
    """A backtest job: waiting, running with its progress (the page refreshes itself), or its comparison."""
    job = get_object_or_404(StaffJob, pk=job_id, kind=StaffJobKind.BACKTEST)
    context = {"job": job, "model_status": model_status(), "decisions": DECISIONS, "comparison": None, "notes": []}
    if job.status == StaffJobStatus.DONE and job.outcome:
        comparison = comparison_from_json(job.outcome["comparison"])
        notes = [job.outcome["note"]] if job.outcome.get("note") else []
        if gone := job.outcome.get("rules_gone"):
            notes.append(
                ngettext(
                    "%(count)d rule was left out: it was deleted after the backtest was started.",
                    "%(count)d rules were left out: they were deleted after the backtest was started.",
                    gone,
                )
                % {"count": gone}
            )
        context |= {"comparison": comparison, "table": comparison_side_by_side(comparison), "notes": notes}
    response = render(request, "riskengine/backtest_job.html", context)
    if job.running:
        response["Refresh"] = str(BACKTEST_REFRESH_SECONDS)  # no script: the browser asks again
    return response
