"""Merchant admin for payments: channels (with health and fees), payments, refunds, disputes, reconciliation."""

from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from payments.health import call_log_flush, health_annotations, health_of
from payments.models import (
    Dispute,
    DisputeStatus,
    Payment,
    PaymentChannel,
    ProviderCall,
    ReconciliationRun,
    Refund,
    WebhookEvent,
)
from payments.providers.base import PaymentError
from payments.selectors import fee_report
from storefront.admin.base import ReadOnlyAdmin
from storefront.flow.disputes import dispute_answer
from storefront.flow.reconcile import reconcile_channel


def _actor(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


@admin.register(PaymentChannel)
class PaymentChannelAdmin(admin.ModelAdmin):
    list_display = (
        "code",
        "display_name",
        "provider",
        "enabled",
        "priority",
        "fee",
        "credentials",
        "breaker",
        "success_30_min",
        "success_24_h",
        "latency_24_h",
    )
    list_editable = ("enabled", "priority")
    list_filter = ("provider", "enabled")
    readonly_fields = ("credentials", "breaker", "success_30_min", "success_24_h", "latency_24_h", "webhook_url")
    fieldsets = (
        (None, {"fields": ("code", "provider", "display_name", "display_name_zh_hans", "enabled", "priority")}),
        ("Where it may be used", {"fields": ("currencies", "countries", "min_amount", "max_amount")}),
        ("Fees", {"fields": ("fee_percent", "fee_fixed")}),
        (
            "Credentials (names of environment variables, never values)",
            {
                "fields": (
                    "public_key_env",
                    "secret_env",
                    "webhook_env",
                    "credentials",
                    "api_base",
                    "live",
                    "webhook_url",
                )
            },
        ),
        (
            "Health",
            {
                "fields": (
                    "breaker_threshold",
                    "breaker_cooldown_seconds",
                    "breaker",
                    "success_30_min",
                    "success_24_h",
                    "latency_24_h",
                )
            },
        ),
    )
    actions = ["close_breaker", "reconcile_now"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_urls(self):
        own = [path("fees/", self.admin_site.admin_view(self.fees_view), name="payments_paymentchannel_fees")]
        return own + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        extra = {"fees_url": reverse("admin:payments_paymentchannel_fees"), **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra)

    def fees_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Fees by channel and month",
            "rows": fee_report(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/payments/fees.html", context)

    @admin.display(description="fee")
    def fee(self, channel: PaymentChannel) -> str:
        return f"{channel.fee_percent.normalize()}% + {channel.fee_fixed}"

    @admin.display(description="credentials")
    def credentials(self, channel: PaymentChannel) -> str:
        if not channel.pk and not channel.secret_env:
            return "-"
        missing = channel.missing_credentials(including_webhook=True)
        return "set" if not missing else "missing: " + ", ".join(missing)

    @admin.display(description="breaker")
    def breaker(self, channel: PaymentChannel) -> str:
        if channel.breaker_open():
            until = timezone.localtime(channel.breaker_open_until)
            return f"OPEN until {until:%H:%M:%S} ({channel.failures_in_row} failures)"
        return f"closed ({channel.failures_in_row} failures in a row)" if channel.failures_in_row else "closed"

    def get_queryset(self, request):
        """Each channel with its health over the last 30 minutes and 24 hours, in the same query."""
        call_log_flush()  # the calls still queued in Redis count too
        now = timezone.now()
        return (
            super()
            .get_queryset(request)
            .annotate(
                **health_annotations(prefix="h30", since=now - timedelta(minutes=30)),
                **health_annotations(prefix="h24", since=now - timedelta(hours=24)),
            )
        )

    @staticmethod
    def _rate(channel: PaymentChannel, prefix: str) -> str:
        health = health_of(channel, prefix=prefix)
        return f"{health.success_rate:.0%} of {health.calls}" if health.calls else "no calls"

    @admin.display(description="success, 30 min")
    def success_30_min(self, channel: PaymentChannel) -> str:
        return self._rate(channel, "h30")

    @admin.display(description="success, 24 h")
    def success_24_h(self, channel: PaymentChannel) -> str:
        return self._rate(channel, "h24")

    @admin.display(description="latency, 24 h")
    def latency_24_h(self, channel: PaymentChannel) -> str:
        latency = health_of(channel, prefix="h24").average_latency_ms
        return "-" if latency is None else f"{latency:.0f} ms"

    @admin.display(description="webhook URL")
    def webhook_url(self, channel: PaymentChannel) -> str:
        from django.conf import settings

        if not channel.code:
            return "-"
        return settings.SITE_URL + reverse("channel-webhook", kwargs={"code": channel.code})

    @admin.action(description="Close the breaker now (offer the channel again)")
    def close_breaker(self, request, queryset):
        done = queryset.update(failures_in_row=0, breaker_open_until=None)
        self.message_user(request, f"Breaker closed on {done} channel(s).")

    @admin.action(description="Reconcile now")
    def reconcile_now(self, request, queryset):

        for channel in queryset:
            if channel.missing_credentials():
                self.message_user(request, f"{channel.code}: credentials missing.", messages.WARNING)
                continue
            run = reconcile_channel(channel=channel)
            self.message_user(
                request,
                f"{channel.code}: {run.checked} checked, {run.applied} applied, {run.mismatches} mismatches, "
                f"{run.errors} errors.",
                messages.WARNING if run.errors or run.mismatches else messages.SUCCESS,
            )


class RefundInline(admin.TabularInline):
    model = Refund
    extra = 0
    can_delete = False
    fields = ("created_at", "amount", "status", "provider_ref", "line_ids", "whole_order", "actor", "reason", "failure")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = (
        "provider_ref",
        "order",
        "channel",
        "amount",
        "currency",
        "status",
        "refunded_amount",
        "expected_fee",
        "actual_fee",
        "duplicate",
        "created_at",
    )
    list_filter = ("channel", "status", "duplicate")
    search_fields = ("provider_ref", "capture_ref", "order__number")
    exclude = ("client_secret",)
    inlines = [RefundInline]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "order", "amount", "currency", "status", "whole_order", "actor", "provider_ref")
    list_filter = ("status", "whole_order", "money_only")
    search_fields = ("order__number", "provider_ref")


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "order", "provider", "kind", "amount", "currency", "reason", "status", "due")
    list_filter = ("provider", "status", "kind")
    search_fields = ("provider_ref", "order__number")
    readonly_fields = ("evidence_summary", "evidence_submitted_at", "evidence_submitted_by")
    exclude = ("evidence",)
    actions = ["submit_evidence"]

    def has_change_permission(self, request, obj=None):
        # the "submit evidence" action asks for change permission on the list; a dispute itself is never edited
        return request.user.has_perm("payments.change_dispute") if obj is None else False

    @admin.display(description="evidence due")
    def due(self, dispute: Dispute) -> str:
        return f"{dispute.evidence_due_by:%Y-%m-%d}" if dispute.evidence_due_by else "-"

    @admin.display(description="evidence")
    def evidence_summary(self, dispute: Dispute) -> str:
        e = dispute.evidence or {}
        facts = [(label, e.get(key, "")) for key, label in EVIDENCE_LABELS]
        log = format_html_join("", "<li>{}</li>", ((entry,) for entry in e.get("access_log", [])))
        return format_html(
            "<dl>{}</dl><p><b>Reveal and download log</b></p><ul>{}</ul>",
            format_html_join("", "<dt>{}</dt><dd>{}</dd>", facts),
            log or format_html("<li>{}</li>", "none recorded"),
        )

    @admin.action(description="Submit the evidence to the provider (Stripe)", permissions=["change"])
    def submit_evidence(self, request, queryset):
        for dispute in queryset:
            if dispute.status != DisputeStatus.NEEDS_RESPONSE:
                self.message_user(request, f"{dispute.provider_ref}: {dispute.get_status_display()}.", messages.INFO)
                continue
            try:
                dispute_answer(dispute=dispute, actor=_actor(request))
            except PaymentError as exc:
                self.message_user(request, f"{dispute.provider_ref}: not submitted ({exc}).", messages.ERROR)
            else:
                self.message_user(request, f"{dispute.provider_ref}: evidence submitted.")


EVIDENCE_LABELS = [
    ("order_number", "Order"),
    ("customer_email", "Customer email"),
    ("purchase_ip", "Purchase IP"),
    ("purchased_at", "Ordered"),
    ("paid_at", "Paid"),
    ("delivered_at", "Delivered"),
    ("products", "Products"),
    ("reveals", "Key reveals"),
    ("downloads", "Downloads"),
]


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "channel", "checked", "applied", "mismatches", "errors", "finished_at")
    list_filter = ("channel",)


@admin.register(ProviderCall)
class ProviderCallAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "channel", "operation", "outcome", "latency_ms", "error", "order")
    list_filter = ("channel", "outcome", "operation")


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ("event_id", "provider", "channel", "event_type", "payment_ref", "outcome", "received_at")
    list_filter = ("provider", "event_type", "outcome")
    search_fields = ("event_id", "payment_ref")
