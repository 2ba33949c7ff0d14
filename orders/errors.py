"""Errors a shopper can act on: a stable code plus one message, mapped once here."""

from django.utils.translation import gettext_lazy as _

MESSAGES = {
    "empty_cart": _("Your cart is empty."),
    "invalid_quantity": _("Please choose a quantity of at least 1."),
    "quantity_over_maximum": _("You can buy at most %(maximum)s of this product per order."),
    "product_unavailable": _("“%(product)s” is no longer on sale."),
    "out_of_stock": _("Only %(available)s left of “%(product)s”."),
    "mixed_currency": _("Products priced in different currencies cannot share one order."),
    "shipping_required": _("Please enter a shipping address."),
    "invalid_email": _("Please enter a valid email address."),
    "order_not_payable": _("This order can no longer be paid."),
    "payment_blocked": _("We could not start this payment. Please contact us if you think this is a mistake."),
    "order_sold_out": _("Sorry, part of this order sold out before payment. Please start a new order."),
    "payment_declined": _("Your payment was declined: %(reason)s"),
    "payment_unavailable": _("Payment is unavailable right now; please try again in a moment."),
    "trial_used": _(
        "This email or card has had a free trial of this product already. Check out again to subscribe without one."
    ),
    "coupon_with_trial": _("A free trial takes no coupon; remove the coupon to start the trial."),
    "one_subscription_per_order": _("A subscription is bought on its own order; please check it out separately."),
    "order_too_large": _("This order is too large for one payment; please split it into smaller orders."),
    "coupon_invalid": _("The coupon “%(coupon)s” cannot be used: %(reason)s"),
    "free_order_limit": _("You have claimed free products too often; please try again later."),
}


class CheckoutError(Exception):
    def __init__(self, code: str, **params):
        self.code = code
        self.params = params
        super().__init__(code)

    @property
    def message(self) -> str:
        return str(MESSAGES.get(self.code, self.code)) % self.params if self.params else str(MESSAGES[self.code])
