from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _


class FulfilmentKind(models.TextChoices):
    LICENSE_KEY = "license_key", _("License key")
    DOWNLOAD = "download", _("Downloadable file")
    SERVICE = "service", _("Service")
    PHYSICAL = "physical", _("Physical item")


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
    redemption_instructions = models.TextField(_("redemption instructions"), blank=True)
    service_instructions = models.TextField(_("service instructions"), blank=True)
    download_file = models.FileField(_("download file"), upload_to="downloads/", blank=True)
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
    def localized_description(self) -> str:
        if (get_language() or "").lower().startswith("zh") and self.description_zh_hans:
            return self.description_zh_hans
        return self.description
