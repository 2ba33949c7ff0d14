"""Admin forms of the catalog: prices typed and shown in major units (19.99, not 1999), and the product's
images and quantity prices as inlines. The database keeps integer minor units (payments.money)."""

from decimal import Decimal

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from catalog.models import SUBSCRIBABLE_KINDS, FulfilmentKind, PriceBreak, Product, ProductImage
from fulfillment.models import KeySource, LicensePolicy
from payments.money import MoneyError, exponent, from_decimal_string, to_decimal_string


def major_units(amount: int | None, currency: str) -> Decimal | None:
    return None if amount is None else Decimal(to_decimal_string(amount, currency))


def minor_units(
    form: forms.ModelForm, field: str, value: Decimal | None, currency: str, *, allow_zero: bool = False
) -> int | None:
    """The minor units of a typed price, or None with the error put on the field (zero only with `allow_zero`:
    a product may be free, a quantity price may not)."""
    if value is None:
        return None
    try:
        amount = from_decimal_string(str(value), currency)
    except MoneyError:
        form.add_error(field, f"{currency} has {exponent(currency)} decimal places.")
        return None
    if amount < 0 or (amount == 0 and not allow_zero):
        form.add_error(field, "The price must be above zero.")
        return None
    return amount


class ProductForm(forms.ModelForm):
    price = forms.DecimalField(
        label="price",
        min_value=Decimal("0"),
        max_digits=14,
        decimal_places=3,
        help_text="In the currency below, e.g. 19.99; 0 for a free product (checked out with an email alone)",
    )

    class Meta:
        model = Product
        exclude = ("price_amount",)  # noqa: DJ006 - every other field, as admin lists them; the price is typed above

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["price"] = major_units(self.instance.price_amount, self.instance.currency)

    def clean_currency(self):
        return (self.cleaned_data.get("currency") or "").strip().upper()

    def clean(self):
        cleaned = super().clean()
        currency = cleaned.get("currency") or self.instance.currency or "USD"
        amount = minor_units(self, "price", cleaned.get("price"), currency, allow_zero=True)
        if amount is not None:
            self.instance.price_amount = amount
        if amount == 0 and cleaned.get("billing_interval"):
            self.add_error("price", "A subscription cannot be free: it renews by charging its price.")
        if cleaned.get("trial_days") and not cleaned.get("billing_interval"):
            self.add_error("trial_days", "Only a product that renews can have a free trial.")
        if cleaned.get("billing_interval") and cleaned.get("kind") not in SUBSCRIBABLE_KINDS:
            self.add_error("billing_interval", "Only memberships, downloads and license keys can renew.")
        inline_shown = "license_policy-TOTAL_FORMS" in self.data  # else its formset cannot check (no permission)
        renewing_key = cleaned.get("kind") == FulfilmentKind.LICENSE_KEY and cleaned.get("billing_interval")
        if renewing_key and not inline_shown and not _generates_keys(self.instance):
            self.add_error("billing_interval", RENEWING_KEY_NEEDS_GENERATED)
        return cleaned


RENEWING_KEY_NEEDS_GENERATED = (
    "A license-key product that renews needs a license policy with generated keys: each period moves its key's expiry."
)


def _generates_keys(product: Product) -> bool:
    policy = LicensePolicy.objects.filter(product_id=product.pk).first() if product.pk else None
    return policy is not None and policy.key_source == KeySource.GENERATED


class PriceBreakForm(forms.ModelForm):
    unit_price = forms.DecimalField(label="unit price", min_value=Decimal("0"), max_digits=14, decimal_places=3)

    class Meta:
        model = PriceBreak
        fields = ("min_quantity",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["unit_price"] = major_units(self.instance.unit_amount, self.instance.product.currency)

    def clean(self):
        cleaned = super().clean()
        product = getattr(self.instance, "product", None)
        currency = product.currency if product is not None else "USD"
        amount = minor_units(self, "unit_price", cleaned.get("unit_price"), currency)
        if amount is not None:
            self.instance.unit_amount = amount
        return cleaned


class PriceBreakInline(admin.TabularInline):
    model = PriceBreak
    form = PriceBreakForm
    extra = 0
    verbose_name = "quantity price"
    verbose_name_plural = "quantity prices (wholesale): a lower unit price from a quantity on"


class ProductImageInline(admin.TabularInline):
    model = ProductImage
    extra = 1
    fields = ("preview", "original", "alt", "alt_zh_hans", "position")
    readonly_fields = ("preview",)

    @admin.display(description="preview")
    def preview(self, image: ProductImage):
        if not image.thumb:
            return "-"
        return format_html('<img src="{}" width="96" alt="">', image.thumb.url)
