import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django_countries import countries

from fulfillment.services import order_resend_delivery_email
from orders.models import Order, OrderEvent, OrderLine, OrderStatus
from orders.services import order_mark_lines_shipped
from orders.status import IllegalTransition
from payments.providers.base import PaymentError
from payments.refunds import REFUNDABLE, RefundNotAllowed
from storefront.admin.staff import start_job
from storefront.flow.refunds import refund_issue
from storefront.models import StaffJobKind
from storefront.templatetags.money import money


class OrderLineInline(admin.TabularInline):
    """What was sold, as it was sold: read-only (staff act through refunds and actions, which are audited)."""

    model = OrderLine
    extra = 0
    can_delete = False
    fields = (
        "product_name",
        "kind",
        "quantity",
        "unit_price_shown",
        "line_total_shown",
        "paid_shown",
        "delivered_at",
        "shipped_at",
        "booking_reference",
        "refunded_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="unit price")
    def unit_price_shown(self, line: OrderLine) -> str:
        return money(line.unit_price, line.order.currency)

    @admin.display(description="line total")
    def line_total_shown(self, line: OrderLine) -> str:
        return money(line.line_total, line.order.currency)

    @admin.display(description="paid (less coupon)")
    def paid_shown(self, line: OrderLine) -> str:
        return money(line.paid_amount, line.order.currency)


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "type", "from_status", "to_status", "actor", "note", "details")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="data")
    def details(self, event: OrderEvent) -> str:
        """The event's data wrapped within the column, so a long value never widens the table."""
        if not event.data:
            return "-"
        text = json.dumps(event.data, ensure_ascii=False, sort_keys=True)
        return format_html('<code style="display:block;max-width:32em;overflow-wrap:anywhere">{}</code>', text)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("number", "email", "status", "payment_state", "total", "created_at")
    list_filter = ("status", "payment_state")
    search_fields = ("number", "email")
    exclude = ("token",)
    readonly_fields = (
        "number",
        "email",
        "status",
        "payment_state",
        "subtotal",
        "shipping",
        "discount",
        "coupon",
        "total",
        "purchase_ip",
        "user_agent",
        "device_id",
        "card_fingerprint",
        "card_country_name",
        "billing_country_name",
        "locale",
        "paid_at",
        "completed_at",
        "ship_name",
        "ship_line1",
        "ship_line2",
        "ship_city",
        "ship_postal_code",
        "ship_country_name",
        "refund_link",
    )
    # A paid order's figures and evidence (device, card, countries, IP) are the shop's record, never edited.
    fields = readonly_fields
    inlines = [OrderLineInline, OrderEventInline]
    actions = ["mark_shipped", "resend_delivery_email", "refund_in_full"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="subtotal", ordering="subtotal_amount")
    def subtotal(self, order: Order) -> str:
        return money(order.subtotal_amount, order.currency)

    @admin.display(description="shipping", ordering="shipping_amount")
    def shipping(self, order: Order) -> str:
        return money(order.shipping_amount, order.currency)

    @admin.display(description="coupon discount", ordering="discount_amount")
    def discount(self, order: Order) -> str:
        return money(order.discount_amount, order.currency)

    @admin.display(description="total", ordering="total_amount")
    def total(self, order: Order) -> str:
        return money(order.total_amount, order.currency)

    @staticmethod
    def _country(code: str) -> str:
        return f"{countries.name(code) or code} ({code})" if code else "-"

    @admin.display(description="card country")
    def card_country_name(self, order: Order) -> str:
        return self._country(order.card_country)

    @admin.display(description="billing country")
    def billing_country_name(self, order: Order) -> str:
        return self._country(order.billing_country)

    @admin.display(description="ship to country")
    def ship_country_name(self, order: Order) -> str:
        return self._country(order.ship_country)

    @admin.action(description="Mark physical lines shipped")
    def mark_shipped(self, request, queryset):
        done = 0
        for order in queryset.filter(status=OrderStatus.AWAITING_SHIPMENT):
            try:
                order_mark_lines_shipped(order_id=order.pk, actor=f"staff:{request.user.get_username()}")
                done += 1
            except IllegalTransition as exc:
                self.message_user(request, str(exc), messages.WARNING)
        self.message_user(request, f"{done} order(s) marked shipped.")

    @admin.action(description="Resend the delivery email")
    def resend_delivery_email(self, request, queryset):

        sent = 0
        for order in queryset.exclude(status__in=[OrderStatus.PENDING_PAYMENT, OrderStatus.CANCELLED]):
            order_resend_delivery_email(order=order, actor=f"staff:{request.user.get_username()}")
            sent += 1
        self.message_user(request, f"Delivery email queued for {sent} order(s).")

    @admin.action(description="Refund in full (revokes keys and download links)", permissions=["refund"])
    def refund_in_full(self, request, queryset):
        """Started as a staff job: the providers are called by a task, never inside this request."""
        order_ids = list(queryset.order_by("pk").values_list("pk", flat=True))
        job = start_job(request, kind=StaffJobKind.REFUND_ORDERS, targets=order_ids)
        return HttpResponseRedirect(reverse("admin:storefront_staffjob_progress", args=[job.pk]))

    def has_refund_permission(self, request):
        return request.user.has_perm("orders.refund_order")

    @admin.display(description="refund")
    def refund_link(self, order: Order) -> str:

        if order.status not in REFUNDABLE:
            return "-"
        url = reverse("admin:orders_order_refund", kwargs={"order_id": order.pk})
        return format_html('<a class="button" href="{}">Refund all or some lines…</a>', url)

    def get_urls(self):
        own = [
            path(
                "<int:order_id>/refund/",
                self.admin_site.admin_view(self.refund_view),
                name="orders_order_refund",
            )
        ]
        return own + super().get_urls()

    def refund_view(self, request, order_id: int):
        """Refund chosen lines (or all): the money through the provider, the goods of those lines withdrawn."""

        if not self.has_refund_permission(request):
            raise PermissionDenied
        order = get_object_or_404(Order, pk=order_id)
        form = RefundLinesForm(request.POST or None, order=order)
        if request.method == "POST" and form.is_valid():
            chosen = list(form.cleaned_data["lines"])
            everything = set(chosen) == set(form.fields["lines"].queryset)
            try:
                refund_issue(
                    order=order,
                    actor=f"staff:{request.user.get_username()}",
                    reason=form.cleaned_data["reason"],
                    lines=None if everything else chosen,
                )
            except (RefundNotAllowed, PaymentError) as exc:
                form.add_error(None, f"Not refunded: {exc}")
            else:
                self.message_user(request, f"{order.number}: refund of {len(chosen)} line(s) made.")
                return HttpResponseRedirect(reverse("admin:orders_order_change", args=[order.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Refund {order.number}",
            "order": order,
            "form": form,
            "opts": self.model._meta,
            "payments": list(order.payments.all()),
        }
        return TemplateResponse(request, "admin/orders/refund.html", context)


class RefundLinesForm(forms.Form):
    lines = forms.ModelMultipleChoiceField(
        queryset=OrderLine.objects.none(), widget=forms.CheckboxSelectMultiple, help_text="Choose every line to refund."
    )
    reason = forms.CharField(max_length=300, help_text="Shown on the order's history.")

    def __init__(self, *args, order: Order, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["lines"].queryset = order.lines.filter(refunded_at__isnull=True).order_by("pk")
        self.fields["lines"].label_from_instance = lambda line: (
            f"{line.quantity} x {line.product_name} ({money(line.paid_amount, order.currency)})"
        )
