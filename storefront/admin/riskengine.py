"""Risk engine admin: rules (one row each, tuned without a deploy), thresholds, block/allow lists, and the
read-only record of assessments and review cases. The review queue itself is /review/ (storefront.review.views).
"""

import contextlib
import ipaddress
import json
from numbers import Real

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from riskengine.backtest import backtest_run
from riskengine.learning import ModelError, model_status, risk_model_promote, risk_model_retire
from riskengine.models import (
    FraudLabel,
    ListEntry,
    ListKind,
    ReviewCase,
    RiskAssessment,
    RiskModel,
    RiskRule,
    RiskSettings,
    RuleType,
)
from storefront.admin.base import ReadOnlyAdmin

BACKTEST_DAYS = 30
IDENTIFIERS = ["email", "ip", "device", "card"]
# The parameters each rule type reads (see riskengine.rules): kind of value and what it may hold.
PARAM_SPECS: dict[str, dict[str, tuple]] = {
    RuleType.BLOCKLIST: {},
    RuleType.VELOCITY: {
        "metric": ("choice", ["orders", "failed_payments", "distinct_cards", "distinct_emails"]),
        "by": ("choices", IDENTIFIERS),
        "window_minutes": ("int", 1),
        "threshold": ("int", 0),
    },
    RuleType.DISPOSABLE_EMAIL: {},
    RuleType.COUNTRY_MISMATCH: {"compare": ("choices", ["card", "billing"])},
    RuleType.AMOUNT_VS_HISTORY: {"multiple": ("number", 0), "first_purchase_max": ("int", 0)},
    RuleType.HIGH_RISK_PRODUCT: {},
    RuleType.LINKED_FRAUD: {"hops": ("int", 1, 3), "weights": ("weights", IDENTIFIERS), "second_hop": ("number", 0)},
    RuleType.RADAR: {
        "levels": ("choices", ["normal", "elevated", "highest"]),
        "score_from": ("int", 0, 100),
        "score_to": ("int", 1, 100),
    },
    RuleType.EMAIL_PATTERN: {"skip_disposable": ("bool",)},
    RuleType.AMOUNT_VS_PRODUCT: {"days": ("int", 1, 365)},
    RuleType.TRUSTED_CUSTOMER: {"min_days": ("int", 0, 365)},
    RuleType.COUPON_ABUSE: {"threshold": ("int", 1), "days": ("int", 1, 365)},
}


def rule_params_errors(rule_type: str, params) -> list[str]:
    """What is wrong with `params` for a rule of `rule_type`, as messages for staff (empty: fine)."""
    if rule_type not in PARAM_SPECS:
        return [f"Unknown rule type {rule_type!r}."]
    if not isinstance(params, dict):
        return ['Parameters must be a JSON object, e.g. {} or {"threshold": 3}.']
    spec = PARAM_SPECS[rule_type]
    errors = []
    for key in params:
        if key not in spec:
            allowed = ", ".join(spec) or "none"
            errors.append(f"Unknown parameter {key!r} for a {rule_type} rule (allowed: {allowed}).")
    for key, (kind, *limits) in spec.items():
        if key not in params:
            continue
        value = params[key]
        if kind == "choice":
            if value not in limits[0]:
                errors.append(f"Unknown {key} {value!r}: use one of {', '.join(limits[0])}.")
        elif kind == "choices":
            if not isinstance(value, list) or not value:
                errors.append(f"{key} must be a non-empty list drawn from {', '.join(limits[0])}.")
            else:
                unknown = [v for v in value if v not in limits[0]]
                if unknown:
                    errors.append(
                        f"Unknown {key} value(s) {', '.join(map(repr, unknown))}: use {', '.join(limits[0])}."
                    )
        elif kind == "bool":
            if not isinstance(value, bool):
                errors.append(f"{key} must be true or false, not {value!r}.")
        elif kind == "weights":
            if not isinstance(value, dict) or any(
                k not in limits[0] or isinstance(v, bool) or not isinstance(v, Real) or not 0 <= v <= 1
                for k, v in value.items()
            ):
                errors.append(f"{key} must map {', '.join(limits[0])} to numbers from 0 to 1.")
        else:
            wanted = int if kind == "int" else Real
            if isinstance(value, bool) or not isinstance(value, wanted):
                errors.append(f"{key} must be {'a whole number' if kind == 'int' else 'a number'}, not {value!r}.")
            elif value < 0:
                errors.append(f"{key} must not be negative ({value}).")
            elif value < limits[0] or (len(limits) > 1 and value > limits[1]):
                upper = f" and at most {limits[1]}" if len(limits) > 1 else ""
                errors.append(f"{key} must be at least {limits[0]}{upper} ({value}).")
    return errors


class RiskRuleForm(forms.ModelForm):
    points = forms.IntegerField(min_value=0, max_value=100, help_text="0-100; the score is the sum, capped at 100.")

    class Meta:
        model = RiskRule
        fields = ["name", "type", "params", "points", "enabled", "mode", "description"]
        help_texts = {"params": "JSON. " + " ".join(f"{t}: {', '.join(s) or '—'}." for t, s in PARAM_SPECS.items())}

    def clean(self):
        cleaned = super().clean()
        if "type" in cleaned and "params" in cleaned:
            errors = rule_params_errors(cleaned["type"], cleaned["params"])
            if errors:
                self.add_error("params", errors)
        return cleaned


@admin.register(RiskRule)
class RiskRuleAdmin(admin.ModelAdmin):
    form = RiskRuleForm
    list_display = ("name", "type", "points", "enabled", "mode", "params_summary", "updated_at")
    list_filter = ("type", "mode", "enabled")
    search_fields = ("name", "description")
    actions = ["backtest_as_active"]

    @admin.display(description="params")
    def params_summary(self, obj):
        return json.dumps(obj.params, sort_keys=True) if obj.params else "—"

    @admin.action(description="Backtest selected rules as active", permissions=["view"])
    def backtest_as_active(self, request, queryset):
        rules = list(queryset)
        report = backtest_run(days=BACKTEST_DAYS, rules=rules, treat_shadow_as_active=True)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Backtest of {len(rules)} rule(s) as active, last {BACKTEST_DAYS} days",
            "rules": rules,
            "report": report,
            "days": BACKTEST_DAYS,
            "decisions": [
                (d, report.counts_before.get(d, 0), report.counts_after.get(d, 0))
                for d in ("approve", "review", "decline")
            ],
        }
        return TemplateResponse(request, "riskengine/admin_backtest.html", context)


class RiskSettingsForm(forms.ModelForm):
    class Meta:
        model = RiskSettings
        fields = ["review_threshold", "decline_threshold", "review_deadline_hours"]

    def clean(self):
        cleaned = super().clean()
        review, decline = cleaned.get("review_threshold"), cleaned.get("decline_threshold")
        if review is not None and decline is not None and not (0 < review < decline <= 100):
            raise ValidationError(
                "Thresholds must satisfy 0 < review < decline ≤ 100 (got review %(review)s, decline %(decline)s).",
                params={"review": review, "decline": decline},
            )
        if cleaned.get("review_deadline_hours") == 0:
            self.add_error("review_deadline_hours", "Give reviewers at least one hour.")
        return cleaned


@admin.register(RiskSettings)
class RiskSettingsAdmin(admin.ModelAdmin):
    """One row of thresholds: the list goes straight to it."""

    form = RiskSettingsForm
    list_display = ("__str__", "review_deadline_hours")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        settings_row = RiskSettings.current()
        return HttpResponseRedirect(reverse("admin:riskengine_risksettings_change", args=[settings_row.pk]))


class ListEntryForm(forms.ModelForm):
    class Meta:
        model = ListEntry
        fields = ["allow", "kind", "value", "reason"]

    def clean(self):
        cleaned = super().clean()
        kind, value = cleaned.get("kind"), (cleaned.get("value") or "").strip()
        if not kind or not value:
            return cleaned
        try:
            cleaned["value"] = list_value_normalise(kind, value)
        except ValidationError as exc:
            self.add_error("value", exc)
        return cleaned


def list_value_normalise(kind: str, value: str) -> str:
    """The value as the engine compares it, or ValidationError with what is wrong."""
    if kind == ListKind.IP:
        try:
            if "/" in value:
                return str(ipaddress.ip_network(value, strict=True))
            return str(ipaddress.ip_address(value))
        except ValueError as exc:
            hint = ""
            with contextlib.suppress(ValueError):
                hint = f" Did you mean {ipaddress.ip_network(value, strict=False)}?"
            raise ValidationError(f"Not an IP address or CIDR range: {exc}.{hint}") from None
    if kind == ListKind.EMAIL:
        validate_email(value)
        return value.lower()
    if kind == ListKind.EMAIL_DOMAIN:
        domain = value.lower().lstrip("@")
        if "@" in domain or "." not in domain or " " in domain:
            raise ValidationError("Give a domain such as example.com.")
        return domain
    return value.lower() if kind == ListKind.CARD else value


@admin.register(ListEntry)
class ListEntryAdmin(admin.ModelAdmin):
    form = ListEntryForm
    list_display = ("kind", "value", "allow", "reason", "created_by", "created_at")
    list_filter = ("allow", "kind")
    search_fields = ("value", "reason")
    readonly_fields = ("created_by", "created_at")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = f"staff:{request.user.get_username()}"
        super().save_model(request, obj, form, change)


@admin.register(RiskAssessment)
class RiskAssessmentAdmin(ReadOnlyAdmin):
    list_display = ("order", "stage", "decision", "score", "duration_ms", "created_at")
    list_filter = ("decision", "stage")
    search_fields = ("order__number", "order__email")
    fields = ("order", "stage", "decision", "score", "reasons", "shadow_reasons", "radar", "duration_ms", "created_at")
    readonly_fields = fields


@admin.register(ReviewCase)
class ReviewCaseAdmin(ReadOnlyAdmin):
    list_display = ("order", "status", "claimed_by", "decided_by", "decided_at", "created_at")
    list_filter = ("status",)
    search_fields = ("order__number", "order__email")
    fields = (
        "order",
        "assessment",
        "status",
        "claimed_by",
        "claimed_at",
        "decided_by",
        "decided_at",
        "note",
        "created_at",
    )
    readonly_fields = fields


@admin.register(FraudLabel)
class FraudLabelAdmin(admin.ModelAdmin):
    list_display = ("order", "source", "is_fraud", "created_at")
    list_filter = ("source", "is_fraud")
    search_fields = ("order__number", "order__email")
    raw_id_fields = ("order",)


@admin.register(RiskModel)
class RiskModelAdmin(admin.ModelAdmin):
    """Trained versions of the risk model (manage.py risk_train, or weekly): staff promote one from shadow to
    active, retire one, and tune how many points it adds. The page says which model counts, or why none does."""

    list_display = (
        "version",
        "mode",
        "points",
        "auc",
        "precision",
        "recall",
        "fraud_count",
        "good_count",
        "trained_to",
        "created_at",
    )
    list_filter = ("mode",)
    actions = ["promote", "retire"]
    fields = (
        "version",
        "mode",
        "points",
        "metrics",
        "fraud_count",
        "good_count",
        "trained_from",
        "trained_to",
        "algorithm",
        "library",
        "feature_names",
        "created_at",
        "created_by",
        "mode_changed_at",
        "mode_changed_by",
    )
    readonly_fields = tuple(f for f in fields if f != "points")

    def has_add_permission(self, request):
        return False  # versions come from training only

    def has_delete_permission(self, request, obj=None):
        return False  # retire instead: decisions name the version that scored them

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, extra_context={**(extra_context or {}), "subtitle": model_status()})

    @admin.display(description="AUC")
    def auc(self, obj):
        return obj.metrics.get("auc", "—")

    @admin.display(description="precision")
    def precision(self, obj):
        value = obj.metrics.get("precision")
        return "—" if value is None else value

    @admin.display(description="recall")
    def recall(self, obj):
        return obj.metrics.get("recall", "—")

    @admin.action(description="Promote the selected model to active (the active one retires)", permissions=["change"])
    def promote(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model to promote.", messages.ERROR)
            return
        try:
            model = risk_model_promote(version=queryset.get().version, actor=f"staff:{request.user.get_username()}")
        except ModelError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"Model v{model.version} is active: it adds up to {model.points} points.")

    @admin.action(description="Retire the selected models", permissions=["change"])
    def retire(self, request, queryset):
        actor = f"staff:{request.user.get_username()}"
        for model in queryset:
            try:
                risk_model_retire(version=model.version, actor=actor)
            except ModelError as exc:
                self.message_user(request, str(exc), messages.WARNING)
            else:
                self.message_user(request, f"Model v{model.version} retired.")
