"""Coupons and their uses (orders.coupons checks and writes them). Models of the orders app, kept apart from
orders.models for its length; orders.models imports them, so they are the app's like any other."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class CouponKind(models.TextChoices):
    PERCENT = "percent", _("Percent off")
    FIXED = "fixed", _("Fixed amount off")


class Coupon(models.Model):
    """A discount code. Its rules are checked and its uses written only by orders.coupons."""

    code = models.CharField(_("code"), max_length=40, unique=True, help_text=_("Shoppers may type it in any case."))
    kind = models.CharField(_("kind"), max_length=10, choices=CouponKind.choices, default=CouponKind.PERCENT)
    percent_off = models.PositiveSmallIntegerField(_("percent off"), default=0)
    amount_off = models.PositiveIntegerField(_("amount off (minor units)"), default=0)
    currency = models.CharField(
        _("currency"),
        max_length=3,
        blank=True,
        help_text=_("Needed for a fixed amount or a minimum order; the coupon then applies only in this currency."),
    )
    products = models.ManyToManyField(
        "catalog.Product", blank=True, related_name="coupons", verbose_name=_("only these products")
    )
    categories = models.ManyToManyField(
        "catalog.Category", blank=True, related_name="coupons", verbose_name=_("only these categories")
    )
    min_order_amount = models.PositiveIntegerField(_("minimum order (minor units)"), default=0)
    starts_at = models.DateTimeField(_("valid from"), null=True, blank=True)
    ends_at = models.DateTimeField(_("valid until"), null=True, blank=True)
    max_uses = models.PositiveIntegerField(_("uses in total"), null=True, blank=True, help_text=_("Empty: no limit."))
    max_uses_per_shopper = models.PositiveIntegerField(
        _("uses per shopper"),
        null=True,
        blank=True,
        default=1,
        help_text=_("Counted per mailbox (however the address is written), per device and per card. Empty: no limit."),
    )
    first_order_only = models.BooleanField(_("first order only"), default=False)
    stacks_with_quantity_prices = models.BooleanField(
        _("also on quantity prices"),
        default=True,
        help_text=_("Off: lines bought at a quantity price get no coupon discount."),
    )
    first_period_of_subscriptions = models.BooleanField(
        _("also the first period of a subscription"),
        default=False,
        help_text=_("Renewals are always charged at the subscription's own price."),
    )
    offered_for_waiting = models.BooleanField(
        _("offer to shoppers who wait for stock"),
        default=False,
        help_text=_(
            "A shopper whose paid order waits for stock is promised a one-use copy, sent when it is filled. "
            "The code itself is then not accepted: only its copies are."
        ),
    )
    valid_days_when_offered = models.PositiveSmallIntegerField(_("an offered copy is valid for (days)"), default=30)
    is_active = models.BooleanField(_("active"), default=True)
    issued_for_order = models.OneToOneField(
        "orders.Order",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="compensation_coupon",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        constraints = [
            models.CheckConstraint(condition=models.Q(percent_off__lte=100), name="coupon_percent_max_100"),
            models.CheckConstraint(
                condition=~models.Q(kind="percent") | models.Q(percent_off__gte=1), name="coupon_percent_given"
            ),
            models.CheckConstraint(
                condition=~models.Q(kind="fixed") | (models.Q(amount_off__gte=1) & ~models.Q(currency="")),
                name="coupon_fixed_amount_given",
            ),
        ]

    def __str__(self) -> str:
        return self.code


class CouponRedemption(models.Model):
    """One use of a coupon: written with its order, counted against the coupon's limits while the order is not
    cancelled. The mailbox is kept normalised (orders.mailbox); the device and card are the order's."""

    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="redemptions")
    order = models.OneToOneField("orders.Order", on_delete=models.CASCADE, related_name="coupon_redemption")
    email_key = models.CharField(max_length=254, db_index=True)
    device_id = models.CharField(max_length=64, blank=True)
    amount = models.PositiveIntegerField()  # the discount, minor units of the order's currency
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["coupon", "device_id"], name="couponredemption_device")]

    def __str__(self) -> str:
        return f"{self.coupon} on {self.order_id}"
