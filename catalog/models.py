from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _


class FulfilmentKind(models.TextChoices):
    LICENSE_KEY = "license_key", _("License key")
    DOWNLOAD = "download", _("Downloadable file")
    SERVICE = "service", _("Service")
    PHYSICAL = "physical", _("Physical item")
    MEMBERSHIP = "membership", _("Membership")


class StockDisplay(models.TextChoices):
    STATUS = "status", _("In stock / low / sold out")
    COUNT = "count", _("Exact count")


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
    high_risk = models.BooleanField(_("high-risk product"), default=False, help_text=_("Adds risk points."))
    redemption_instructions = models.TextField(_("redemption instructions"), blank=True)
    redemption_instructions_zh_hans = models.TextField(_("redemption instructions (Simplified Chinese)"), blank=True)
    service_instructions = models.TextField(_("service instructions"), blank=True)
    service_instructions_zh_hans = models.TextField(_("service instructions (Simplified Chinese)"), blank=True)
    # License keys
    low_stock_threshold = models.PositiveIntegerField(_("low-stock threshold"), default=5)
    low_stock_alerted = models.BooleanField(default=False, editable=False)
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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(price_amount__gt=0), name="product_price_positive"),
            models.CheckConstraint(condition=models.Q(max_per_order__gte=1), name="product_max_per_order_min_1"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def requires_shipping(self) -> bool:
        return self.kind == FulfilmentKind.PHYSICAL

    @property
    def localized_name(self) -> str:
        if (get_language() or "").lower().startswith("zh") and self.name_zh_hans:
            return self.name_zh_hans
        return self.name

    @property
    def is_reusable_key(self) -> bool:
        """One shared code sold any number of times instead of a pool of single-use keys."""
        return self.kind == FulfilmentKind.LICENSE_KEY and self.shared_key_ciphertext is not None

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
