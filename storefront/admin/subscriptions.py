"""Subscriptions in admin: the list by status, each one's history and orders, and the merchant's actions (cancel
now, one free period, refund the last period). Figures for the list's header: active subscriptions, monthly
recurring revenue by currency, churn over 30 days, failed and recovered renewals."""

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import Count, F, Max, Q, Sum
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from catalog.models import BillingInterval
from orders.models import Order, OrderStatus, Subscription, SubscriptionEvent, SubscriptionEventType, SubscriptionStatus
from orders.subscriptions import LIVE, MONTHS
from storefront.admin.base import ReadOnlyAdmin
from storefront.admin.staff import actor_of, start_job
from storefront.flow.renewals import subscription_cancel_now, subscription_give_free_period
from storefront.models import StaffJobKind
from storefront.templatetags.money import money


def subscription_figures(*, now=None) -> dict:
    """Active, past-due and trialing subscriptions, monthly recurring revenue per currency (minor units; a trial
    pays nothing yet), churn and renewals of the last 30 days: two aggregate queries at any size (the subscription
    list's header and the dashboard)."""
    now = now or timezone.now()
    paying = ~Q(status=SubscriptionStatus.TRIALING)
    live = Subscription.objects.filter(status__in=LIVE)
    rows = live.values("currency", "interval").annotate(
        amount=Sum(F("unit_price") * F("quantity"), filter=paying, default=0),
        count=Count("pk", filter=paying),
        past_due=Count("pk", filter=Q(status=SubscriptionStatus.PAST_DUE)),
        trialing=Count("pk", filter=~paying),
    )
    mrr: dict[str, int] = {}
    active = past_due = trialing = 0
    for row in rows:
        monthly = row["amount"] // MONTHS[BillingInterval(row["interval"])]
        if monthly:
            mrr[row["currency"]] = mrr.get(row["currency"], 0) + monthly
        active, past_due, trialing = active + row["count"], past_due + row["past_due"], trialing + row["trialing"]
    events = SubscriptionEvent.objects.filter(created_at__gte=now - timedelta(days=30)).aggregate(
        failed=Count("pk", filter=Q(type=SubscriptionEventType.RENEWAL_FAILED)),
        recovered=Count("pk", filter=Q(type=SubscriptionEventType.RECOVERED)),
        renewed=Count("pk", filter=Q(type=SubscriptionEventType.RENEWED)),
        cancelled=Count("pk", filter=Q(type=SubscriptionEventType.CANCELLED)),
    )
    base = active + events["cancelled"]  # live now, plus those that ended within the 30 days
    return {
        "active": active,
        "past_due": past_due,
        "trialing": trialing,
        "mrr": mrr,
        "churn_30d": round(100 * events["cancelled"] / base, 1) if base else 0.0,
        **events,
    }


class SubscriptionEventInline(admin.TabularInline):
    model = SubscriptionEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "type", "period", "actor", "note")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class SubscriptionOrderInline(admin.TabularInline):
    model = Order
    fk_name = "subscription"
    extra = 0
    can_delete = False
    fields = ("number", "subscription_period", "status", "total_amount", "created_at")
    readonly_fields = fields
    ordering = ("subscription_period",)
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = (
        "email",
        "product",
        "status",
        "price",
        "interval",
        "current_period_end",
        "cancel_at_period_end",
        "periods_paid",
        "failed_attempts",
    )
    list_filter = ("status", "interval", "cancel_at_period_end", "provider")
    search_fields = ("email", "product__name")
    date_hierarchy = "created_at"
    exclude = ("token",)
    inlines = [SubscriptionOrderInline, SubscriptionEventInline]
    actions = ["cancel_now", "give_free_period", "refund_last_period"]
    change_list_template = "admin/orders/subscription/change_list.html"

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), "figures": subscription_figures()})

    @admin.display(description="price")
    def price(self, subscription: Subscription) -> str:
        return money(subscription.amount, subscription.currency)

    @admin.action(description="Cancel now (access ends now)", permissions=["cancel"])
    def cancel_now(self, request, queryset):
        for pk in queryset.values_list("pk", flat=True):
            subscription_cancel_now(subscription_id=pk, actor=actor_of(request))
        self.message_user(request, f"{queryset.count()} subscription(s) cancelled.")

    @admin.action(description="Give one free period", permissions=["cancel"])
    def give_free_period(self, request, queryset):
        done = 0
        for pk in queryset.exclude(status=SubscriptionStatus.CANCELLED).values_list("pk", flat=True):
            subscription_give_free_period(subscription_id=pk, actor=actor_of(request))
            done += 1
        self.message_user(request, f"One free period given to {done} subscription(s).")

    @admin.action(description="Refund the last period (and cancel)", permissions=["refund"])
    def refund_last_period(self, request, queryset):
        """The order that paid each one's current period, refunded by a staff job (outside this request); the
        refund ends the subscription (storefront.flow.refunds)."""
        last = (
            Order.objects.filter(subscription__in=queryset, status__in=[OrderStatus.FULFILLED, OrderStatus.PAID])
            .values("subscription")
            .annotate(period=Max("subscription_period"))
        )
        wanted = Q(pk__in=[])
        for row in last:
            wanted |= Q(subscription_id=row["subscription"], subscription_period=row["period"])
        order_ids = list(Order.objects.filter(wanted).order_by("pk").values_list("pk", flat=True))
        if not order_ids:
            self.message_user(request, "No paid period to refund.", messages.WARNING)
            return None
        job = start_job(request, kind=StaffJobKind.REFUND_ORDERS, targets=order_ids)
        return HttpResponseRedirect(reverse("admin:storefront_staffjob_progress", args=[job.pk]))

    def has_cancel_permission(self, request):
        return request.user.has_perm("orders.change_subscription")

    def has_refund_permission(self, request):
        return request.user.has_perm("orders.refund_order")
