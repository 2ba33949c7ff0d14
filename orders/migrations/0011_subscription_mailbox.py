from django.db import migrations, models

from orders.mailbox import email_key


def mailboxes_fill(apps, schema_editor):
    """Subscriptions made before: their mailbox from their email, as new ones get it."""
    subscription = apps.get_model("orders", "Subscription")
    for row in subscription.objects.filter(mailbox="").only("pk", "email").iterator(chunk_size=2000):
        subscription.objects.filter(pk=row.pk).update(mailbox=email_key(row.email))


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0009_free_trials"),
        ("orders", "0010_free_trials"),
    ]

    operations = [
        migrations.AddField(
            model_name="subscription",
            name="mailbox",
            field=models.CharField(blank=True, max_length=254),
        ),
        migrations.AddIndex(
            model_name="subscription",
            index=models.Index(fields=["product", "mailbox"], name="subscription_product_mailbox"),
        ),
        migrations.RunPython(mailboxes_fill, migrations.RunPython.noop),
    ]
