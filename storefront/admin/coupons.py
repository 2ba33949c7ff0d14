"""Coupons in admin: the merchant's codes with their rules, and per coupon its uses, the discount given and the
revenue of the orders that used it (paid orders only). Amounts are typed in major units (9.99), kept in minor."""

from decimal import Decimal

from django import forms
from django.contrib import admin
from django.db.models import Count, Q, Sum

from orders.coupons import coupon_code_normalise
from orders.models import Coupon, CouponKind, CouponRedemption
from storefront.admin.catalog_forms import major_units, minor_units
from storefront.templatetags.money import money

PAID = Q(order__paid_at__isnull=False)


class CouponForm(forms.ModelForm):
    amount_off_typed = forms.DecimalField(
        label="amount off",
        required=False,
        min_value=Decimal("0"),
        max_digits=14,
        decimal_places=3,
        help_text="For a fixed amount, in the currency below, e.g. 5.00",
    )
    min_order_typed = forms.DecimalField(
        label="minimum order",
        required=False,
        min_value=Decimal("0"),
        max_digits=14,
        decimal_places=3,
        help_text="Lines before the discount, in the currency below; empty: none",
    )

    class Meta:
        model = Coupon
        fields = (
            "code",
            "kind",
            "percent_off",
            "currency",
            "products",
            "categories",
            "starts_at",
            "ends_at",
            "max_uses",
            "max_uses_per_shopper",
            "first_order_only",
            "stacks_with_quantity_prices",
            "first_period_of_subscriptions",
            "offered_for_waiting",
            "valid_days_when_offered",
            "is_active",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["percent_off"].required = False  # only for a percent coupon (clean)
        if self.instance.pk:
            currency = self.instance.currency or "USD"
            if self.instance.amount_off:
                self.initial["amount_off_typed"] = major_units(self.instance.amount_off, currency)
            if self.instance.min_order_amount:
                self.initial["min_order_typed"] = major_units(self.instance.min_order_amount, currency)

    def clean_code(self):
        code = coupon_code_normalise(self.cleaned_data.get("code") or "")
        if not code:
            raise forms.ValidationError("Enter a code.")
        if Coupon.objects.filter(code__iexact=code).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("Another coupon has this code.")
        return code

    def clean_currency(self):
        return (self.cleaned_data.get("currency") or "").strip().upper()

    def clean(self):
        cleaned = super().clean()
        currency = cleaned.get("currency") or ""
        kind = cleaned.get("kind")
        typed_amount, typed_minimum = cleaned.get("amount_off_typed"), cleaned.get("min_order_typed")
        if (kind == CouponKind.FIXED or typed_minimum) and not currency:
            self.add_error("currency", "A fixed amount or a minimum order needs a currency.")
            return cleaned
        if kind == CouponKind.FIXED:
            amount = minor_units(self, "amount_off_typed", typed_amount, currency) if typed_amount else None
            if amount is None:
                self.add_error("amount_off_typed", "Enter the amount taken off.")
            else:
                self.instance.amount_off, cleaned["percent_off"] = amount, 0
        else:
            percent = cleaned["percent_off"] = cleaned.get("percent_off") or 0
            if not 1 <= percent <= 100:
                self.add_error("percent_off", "Between 1 and 100.")
            self.instance.amount_off = 0
        minimum = minor_units(self, "min_order_typed", typed_minimum, currency) if typed_minimum else 0
        self.instance.min_order_amount = minimum or 0
        return cleaned


class CouponRedemptionInline(admin.TabularInline):
    model = CouponRedemption
    extra = 0
    can_delete = False
    fields = ("created_at", "order", "order_status", "email_key", "device_id", "discount")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def order_status(self, redemption: CouponRedemption) -> str:
        return redemption.order.get_status_display()

    @admin.display(description="discount")
    def discount(self, redemption: CouponRedemption) -> str:
        return money(redemption.amount, redemption.order.currency)


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):
    form = CouponForm
    list_display = ("code", "value", "is_active", "ends_at", "uses", "discount_given", "revenue")
    list_filter = ("is_active", "kind", "offered_for_waiting", "first_order_only")
    search_fields = ("code",)
    filter_horizontal = ("products", "categories")
    inlines = [CouponRedemptionInline]
    readonly_fields = ("issued_for_order",)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                paid_uses=Count("redemptions", filter=Q(redemptions__order__paid_at__isnull=False)),
                given=Sum("redemptions__amount", filter=Q(redemptions__order__paid_at__isnull=False)),
            )
        )

    @admin.display(description="value")
    def value(self, coupon: Coupon) -> str:
        if coupon.kind == CouponKind.PERCENT:
            return f"{coupon.percent_off}%"
        return money(coupon.amount_off, coupon.currency)

    @admin.display(description="uses (paid)", ordering="paid_uses")
    def uses(self, coupon: Coupon) -> str:
        limit = f" / {coupon.max_uses}" if coupon.max_uses is not None else ""
        return f"{coupon.paid_uses}{limit}"

    @admin.display(description="discount given", ordering="given")
    def discount_given(self, coupon: Coupon) -> str:
        return self._by_currency(coupon, "amount")

    @admin.display(description="revenue (paid orders)")
    def revenue(self, coupon: Coupon) -> str:
        return self._by_currency(coupon, "order__total_amount")

    @staticmethod
    def _by_currency(coupon: Coupon, field: str) -> str:
        rows = (
            coupon.redemptions.filter(PAID)
            .values("order__currency")
            .annotate(total=Sum(field))
            .order_by("order__currency")
        )
        return ", ".join(money(row["total"] or 0, row["order__currency"]) for row in rows) or "-"
