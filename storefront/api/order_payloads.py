"""What the order API answers with: its serializers (for the schema) and the payloads they describe."""

from django.urls import reverse
from rest_framework import serializers

from orders.models import Order, OrderStatus, SubscriptionStatus
from payments.models import PaymentStatus
from payments.services import payment_channel_for
from storefront.api.cart import CartLineSerializer


class ShippingSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    line1 = serializers.CharField(max_length=200)
    line2 = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    city = serializers.CharField(max_length=100)
    postal_code = serializers.CharField(max_length=20)
    country = serializers.RegexField(r"^[A-Za-z]{2}$")


class CheckoutSerializer(serializers.Serializer):
    email = serializers.EmailField()
    lines = CartLineSerializer(many=True, required=False, help_text="Defaults to the session cart.")
    shipping_address = ShippingSerializer(required=False)
    device_fingerprint = serializers.CharField(
        required=False, max_length=64, help_text="Hex SHA-256 of light browser traits (optional)."
    )
    coupon = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=40,
        help_text="A coupon code (any case); defaults to the one kept with the session cart when buying it. "
        "Unknown, spent or not for this order: 400 coupon_invalid and nothing is created.",
    )


class OrderLineSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    product_name = serializers.CharField()
    kind = serializers.CharField()
    quantity = serializers.IntegerField()
    line_total = serializers.IntegerField()
    discount_amount = serializers.IntegerField(help_text="This line's share of the coupon; paid = line_total - this.")
    delivered = serializers.BooleanField()
    refunded = serializers.BooleanField()
    has_keys = serializers.BooleanField(help_text="Reveal them with POST /api/orders/{token}/reveal/.")
    booking_reference = serializers.CharField()


class OrderSubscriptionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=SubscriptionStatus.values)
    current_period_end = serializers.DateTimeField()
    cancel_at_period_end = serializers.BooleanField()
    manage_url = serializers.CharField(help_text="The shopper's page to cancel, resume or change the card.")


class OrderStatusSerializer(serializers.Serializer):
    number = serializers.CharField()
    status = serializers.CharField()
    status_label = serializers.CharField()
    currency = serializers.CharField()
    subtotal_amount = serializers.IntegerField()
    shipping_amount = serializers.IntegerField()
    discount_amount = serializers.IntegerField(help_text="What the coupon took off the lines, minor units.")
    coupon = serializers.CharField(allow_null=True, help_text="The coupon code used, or null.")
    total_amount = serializers.IntegerField()
    lines = OrderLineSerializer(many=True)
    subscription = OrderSubscriptionSerializer(
        allow_null=True, help_text="The subscription this order started or renewed; null for a one-off order."
    )


class PaymentSessionSerializer(serializers.Serializer):
    provider = serializers.CharField()
    channel = serializers.CharField()
    status = serializers.CharField()
    client_secret = serializers.CharField(help_text="Stripe: for confirmCardPayment when 3-D Secure is asked for.")
    publishable_key = serializers.CharField(help_text="Stripe: the channel's publishable key for Stripe.js.")
    approval_url = serializers.CharField(help_text="PayPal: send the shopper here to approve the payment.")


class PaymentMethodSerializer(serializers.Serializer):
    channel = serializers.CharField()
    provider = serializers.CharField()
    name = serializers.CharField()


class CheckoutResultSerializer(serializers.Serializer):
    order_token = serializers.CharField()
    order = OrderStatusSerializer()
    payment = PaymentSessionSerializer(allow_null=True)


def order_status_payload(order: Order) -> dict:
    live = order.status not in ("refunded", "cancelled")
    partly = order.status == OrderStatus.AWAITING_STOCK  # only then can a line hold keys before it is delivered
    return {
        "number": order.number,
        "status": order.status,
        "status_label": str(order.get_status_display()),
        "currency": order.currency,
        "subtotal_amount": order.subtotal_amount,
        "shipping_amount": order.shipping_amount,
        "discount_amount": order.discount_amount,
        "coupon": order.coupon.code if order.coupon_id else None,
        "total_amount": order.total_amount,
        "lines": [
            {
                "id": line.pk,
                "product_name": line.product_name,
                "kind": line.kind,
                "quantity": line.quantity,
                "line_total": line.line_total,
                "discount_amount": line.discount_amount,
                "delivered": bool(line.delivered_at),
                "refunded": bool(line.refunded_at),
                "has_keys": live
                and not line.refunded_at
                and line.kind == "license_key"
                and (
                    line.delivered_at is not None
                    or (partly and any(k.status == "sold" for k in line.license_keys.all()))
                ),
                "booking_reference": line.booking_reference,
            }
            for line in order.lines.all()
        ],
        "subscription": _subscription_payload(order),
    }


def _subscription_payload(order: Order) -> dict | None:
    if not order.subscription_id:
        return None
    subscription = order.subscription
    return {
        "status": subscription.status,
        "current_period_end": subscription.current_period_end,
        "cancel_at_period_end": subscription.cancel_at_period_end,
        "manage_url": reverse("subscription-manage", kwargs={"token": subscription.token}),
    }


def payment_payload(payment) -> dict | None:
    if payment is None:
        return None
    channel = payment_channel_for(payment)
    stripe = payment.provider == "stripe"
    return {
        "provider": payment.provider,
        "channel": channel.code,
        "status": payment.status,
        "client_secret": payment.client_secret if stripe and payment.status != PaymentStatus.SUCCEEDED else "",
        "publishable_key": channel.credential("public_key") if stripe else "",
        "approval_url": payment.approval_url if payment.status != PaymentStatus.SUCCEEDED else "",
    }
