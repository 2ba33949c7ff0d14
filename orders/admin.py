from django.contrib import admin, messages

from orders.models import Order, OrderEvent, OrderLine, OrderStatus
from orders.services import order_mark_lines_shipped
from orders.status import IllegalTransition


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    can_delete = False
    fields = (
        "product_name",
        "kind",
        "quantity",
        "unit_price",
        "line_total",
        "delivered_at",
        "shipped_at",
        "booking_reference",
    )
    readonly_fields = fields


class OrderEventInline(admin.TabularInline):
    model = OrderEvent
    extra = 0
    can_delete = False
    fields = ("created_at", "type", "from_status", "to_status", "actor", "note", "data")
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("number", "email", "status", "payment_state", "total_amount", "currency", "created_at")
    list_filter = ("status", "payment_state")
    search_fields = ("number", "email")
    exclude = ("token",)
    readonly_fields = (
        "number",
        "email",
        "status",
        "payment_state",
        "currency",
        "subtotal_amount",
        "shipping_amount",
        "total_amount",
        "purchase_ip",
        "user_agent",
        "locale",
        "paid_at",
        "completed_at",
        "ship_name",
        "ship_line1",
        "ship_line2",
        "ship_city",
        "ship_postal_code",
        "ship_country",
    )
    inlines = [OrderLineInline, OrderEventInline]
    actions = ["mark_shipped", "resend_delivery_email", "refund_in_full"]

    def has_add_permission(self, request):
        return False

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
        from fulfillment.services import order_resend_delivery_email

        sent = 0
        for order in queryset.exclude(status__in=[OrderStatus.PENDING_PAYMENT, OrderStatus.CANCELLED]):
            order_resend_delivery_email(order=order, actor=f"staff:{request.user.get_username()}")
            sent += 1
        self.message_user(request, f"Delivery email queued for {sent} order(s).")

    @admin.action(description="Refund in full (revokes keys and download links)", permissions=["refund"])
    def refund_in_full(self, request, queryset):
        from payments.providers.base import PaymentError
        from payments.refunds import RefundNotAllowed, refund_issue

        for order in queryset:
            try:
                refund_issue(order=order, actor=f"staff:{request.user.get_username()}", reason="Refunded from admin.")
                self.message_user(request, f"{order.number} refunded.")
            except (RefundNotAllowed, PaymentError) as exc:
                self.message_user(request, f"{order.number}: not refunded ({exc}).", messages.ERROR)

    def has_refund_permission(self, request):
        return request.user.has_perm("orders.refund_order")
