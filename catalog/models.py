from django.core.validators import MinValueValidator
from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _


class FulfilmentKind(models.TextChoices):
    LICENSE_KEY = "license_key", _("License key")
    DOWNLOAD = "download", _("Downloadable file")
    SERVICE = "service", _("Service")
    PHYSICAL = "physical", _("Physical item")
    MEMBERSHIP = "membership", _("Membership")


class BillingInterval(models.TextChoices):
    """How often a subscription product renews; empty for a one-off product."""

    MONTH = "month", _("Monthly")
    QUARTER = "quarter", _("Quarterly")
    YEAR = "year", _("Yearly")


# A license key renews as one generated key whose expiry each paid period moves (fulfillment.licenses).
SUBSCRIBABLE_KINDS = (FulfilmentKind.MEMBERSHIP, FulfilmentKind.DOWNLOAD, FulfilmentKind.LICENSE_KEY)


class StockDisplay(models.TextChoices):
    STATUS = "status", _("In stock / low / sold out")
    COUNT = "count", _("Exact count")


def _in_chinese() -> bool:
    return (get_language() or "").lower().startswith("zh")


class Category(models.Model):
    """A shelf of the shop: shown on the home page and in the menu, in the merchant's order."""

    name = models.CharField(_("name"), max_length=100)
    name_zh_hans = models.CharField(_("name (Simplified Chinese)"), max_length=100, blank=True)
    slug = models.SlugField(unique=True)
    description = models.TextField(_("description"), blank=True)
    description_zh_hans = models.TextField(_("description (Simplified Chinese)"), blank=True)
    position = models.PositiveSmallIntegerField(_("position"), default=0, help_text=_("Lower comes first."))

    class Meta:
        ordering = ["position", "name"]
        verbose_name = _("category")
        verbose_name_plural = _("categories")

    def __str__(self) -> str:
        return self.name

    @property
    def localized_name(self) -> str:
        return (self.name_zh_hans if _in_chinese() else "") or self.name

    @property
    def localized_description(self) -> str:
        return (self.description_zh_hans if _in_chinese() else "") or self.description


class Product(models.Model):
    """Something the shop sells. Prices are integer minor units plus an ISO currency."""

    name = models.CharField(_("name"), max_length=200)
    name_zh_hans = models.CharField(_("name (Simplified Chinese)"), max_length=200, blank=True)
    slug = models.SlugField(unique=True)
    description = models.TextField(_("description"), blank=True)
    description_zh_hans = models.TextField(_("description (Simplified Chinese)"), blank=True)
    kind = models.CharField(_("fulfilment kind"), max_length=20, choices=FulfilmentKind.choices)
    price_amount = models.PositiveIntegerField(_("price (minor units)"))
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    max_per_order = models.PositiveSmallIntegerField(_("maximum per order"), default=5)
    is_active = models.BooleanField(_("on sale"), default=True)
    category = models.ForeignKey(
        Category,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="products",
        verbose_name=_("category"),
    )
    featured = models.BooleanField(_("featured on the home page"), default=False)
    high_risk = models.BooleanField(_("high-risk product"), default=False, help_text=_("Adds risk points."))
    redemption_instructions = models.TextField(_("redemption instructions"), blank=True)
    redemption_instructions_zh_hans = models.TextField(_("redemption instructions (Simplified Chinese)"), blank=True)
    service_instructions = models.TextField(_("service instructions"), blank=True)
    service_instructions_zh_hans = models.TextField(_("service instructions (Simplified Chinese)"), blank=True)
    # License keys
    low_stock_threshold = models.PositiveIntegerField(_("low-stock threshold"), default=5)
    low_stock_alerted = models.BooleanField(default=False, editable=False)
    # Keys of this product with status available, kept by every move into or out of that status
    # (fulfillment.stock) and checked now and then against the keys (keys_stock_recount).
    keys_available = models.IntegerField(default=0, editable=False)
    stock_display = models.CharField(
        _("stock shown to shoppers"), max_length=10, choices=StockDisplay.choices, default=StockDisplay.STATUS
    )
    shared_key_ciphertext = models.BinaryField(null=True, blank=True, editable=False)
    reservation_minutes = models.PositiveIntegerField(_("key reservation window (minutes)"), default=30)
    backorder_refund_after_hours = models.PositiveIntegerField(
        _("refund unfilled backorders after (hours)"), default=72
    )
    no_refund_after_reveal = models.BooleanField(_("no refund once a key is revealed"), default=False)
    # Downloads
    download_file = models.FileField(_("download file"), upload_to="downloads/", blank=True)
    download_ttl_hours = models.PositiveIntegerField(_("download link lifetime (hours)"), default=72)
    download_max = models.PositiveIntegerField(_("maximum downloads per purchase"), default=5)
    # Memberships
    membership_group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.PROTECT, verbose_name=_("membership group")
    )
    membership_days = models.PositiveIntegerField(_("membership length (days)"), default=30)
    # Subscriptions: sold by period and renewed by the shop itself (storefront.flow.renewals)
    billing_interval = models.CharField(
        _("renews every"),
        max_length=10,
        choices=BillingInterval.choices,
        blank=True,
        help_text=_(
            "Leave empty for a one-off purchase. Memberships, downloads and license keys the shop generates can renew."
        ),
    )
    trial_days = models.PositiveSmallIntegerField(
        _("free trial (days)"),
        default=0,
        help_text=_(
            "Days before the first charge of a product that renews; the card is taken at checkout. One trial per "
            "email. 0: no trial."
        ),
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(price_amount__gte=0), name="product_price_not_negative"),
            models.CheckConstraint(condition=models.Q(max_per_order__gte=1), name="product_max_per_order_min_1"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def requires_shipping(self) -> bool:
        return self.kind == FulfilmentKind.PHYSICAL

    @property
    def renews(self) -> bool:
        return bool(self.billing_interval)

    @property
    def localized_name(self) -> str:
        if (get_language() or "").lower().startswith("zh") and self.name_zh_hans:
            return self.name_zh_hans
        return self.name

    @property
    def is_reusable_key(self) -> bool:
        """One shared code sold any number of times instead of a pool of single-use keys."""
        return self.kind == FulfilmentKind.LICENSE_KEY and self.shared_key_ciphertext is not None

    @property
    def keys_unlimited(self) -> bool:
        """Keys that never run out: one shared code, or keys generated at delivery (the product's
        fulfillment.LicensePolicy, read through its reverse accessor: catalog imports nothing above it)."""
        if self.kind != FulfilmentKind.LICENSE_KEY:
            return False
        if self.shared_key_ciphertext is not None:
            return True
        policy = getattr(self, "license_policy", None)  # cached on the instance, None included
        return policy is not None and policy.key_source == "generated"

    def _localized(self, field: str) -> str:
        if (get_language() or "").lower().startswith("zh"):
            return getattr(self, f"{field}_zh_hans") or getattr(self, field)
        return getattr(self, field)

    @property
    def localized_redemption_instructions(self) -> str:
        return self._localized("redemption_instructions")

    @property
    def localized_service_instructions(self) -> str:
        return self._localized("service_instructions")

    @property
    def localized_description(self) -> str:
        if (get_language() or "").lower().startswith("zh") and self.description_zh_hans:
            return self.description_zh_hans
        return self.description

    def unit_price_for(self, quantity: int) -> int:
        """The unit price at this quantity: the best price break reached, else the list price.

        Reads `price_breaks` through the prefetch cache when the caller prefetched them."""
        price = self.price_amount
        for price_break in self.price_breaks.all():
            if quantity >= price_break.min_quantity:
                price = min(price, price_break.unit_amount)
        return price


class PriceBreak(models.Model):
    """A lower unit price from a quantity on (wholesale, 批发价), in the product's currency's minor units."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="price_breaks")
    min_quantity = models.PositiveSmallIntegerField(_("from quantity"), validators=[MinValueValidator(2)])
    unit_amount = models.PositiveIntegerField(_("unit price (minor units)"))

    class Meta:
        ordering = ["min_quantity"]
        verbose_name = _("quantity price")
        verbose_name_plural = _("quantity prices")
        constraints = [
            models.UniqueConstraint(fields=["product", "min_quantity"], name="pricebreak_one_per_quantity"),
            models.CheckConstraint(condition=models.Q(min_quantity__gte=2), name="pricebreak_quantity_min_2"),
            models.CheckConstraint(condition=models.Q(unit_amount__gt=0), name="pricebreak_price_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.min_quantity}+"


def public_storage():
    from django.core.files.storage import storages

    return storages["public"]


class ProductImage(models.Model):
    """A product photo: the merchant's upload and the WebP sizes the shop serves (storefront.images)."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="images")
    original = models.ImageField(_("image"), storage=public_storage, upload_to="products/original/")
    large = models.ImageField(storage=public_storage, upload_to="products/", blank=True, editable=False)
    large_width = models.PositiveIntegerField(default=0, editable=False)
    large_height = models.PositiveIntegerField(default=0, editable=False)
    thumb = models.ImageField(storage=public_storage, upload_to="products/", blank=True, editable=False)
    thumb_width = models.PositiveIntegerField(default=0, editable=False)
    thumb_height = models.PositiveIntegerField(default=0, editable=False)
    alt = models.CharField(_("description for screen readers"), max_length=200, blank=True)
    alt_zh_hans = models.CharField(_("description (Simplified Chinese)"), max_length=200, blank=True)
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = _("product image")
        verbose_name_plural = _("product images")

    def __str__(self) -> str:
        return self.original.name

    @property
    def localized_alt(self) -> str:
        return (self.alt_zh_hans if _in_chinese() else "") or self.alt or self.product.localized_name
