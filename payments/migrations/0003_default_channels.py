# The shop's first channels: Stripe (as configured before channels existed) and PayPal, off until set up.

from decimal import Decimal

from django.db import migrations

CHANNELS = [
    {
        "code": "stripe",
        "provider": "stripe",
        "display_name": "Card",
        "display_name_zh_hans": "银行卡",
        "enabled": True,
        "priority": 10,
        "fee_percent": Decimal("2.900"),
        "fee_fixed": 30,
        "public_key_env": "STRIPE_PUBLISHABLE_KEY",
        "secret_env": "STRIPE_SECRET_KEY",
        "webhook_env": "STRIPE_WEBHOOK_SECRET",
    },
    {
        "code": "paypal",
        "provider": "paypal",
        "display_name": "PayPal",
        "display_name_zh_hans": "PayPal 贝宝",
        "enabled": False,
        "priority": 20,
        "fee_percent": Decimal("3.490"),
        "fee_fixed": 49,
        "public_key_env": "PAYPAL_CLIENT_ID",
        "secret_env": "PAYPAL_CLIENT_SECRET",
        "webhook_env": "PAYPAL_WEBHOOK_ID",
    },
]


def create_channels(apps, schema_editor):
    Channel = apps.get_model("payments", "PaymentChannel")
    Payment = apps.get_model("payments", "Payment")
    for fields in CHANNELS:
        Channel.objects.get_or_create(code=fields["code"], defaults=fields)
    stripe = Channel.objects.get(code="stripe")
    Payment.objects.filter(provider="stripe", channel__isnull=True).update(channel=stripe)


class Migration(migrations.Migration):
    dependencies = [("payments", "0002_channels_refunds_disputes")]

    operations = [migrations.RunPython(create_channels, migrations.RunPython.noop)]
