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
    actions = ["mark_shipped"]

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
