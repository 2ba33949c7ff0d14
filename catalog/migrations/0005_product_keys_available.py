from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce


def count_available_keys(apps, schema_editor):
    """Fill the new counter from the keys, in one UPDATE (products without available keys get 0)."""
    alias = schema_editor.connection.alias
    Product = apps.get_model("catalog", "Product")
    LicenseKey = apps.get_model("fulfillment", "LicenseKey")
    available = (
        LicenseKey.objects.using(alias)
        .filter(product=OuterRef("pk"), status="available")
        .order_by()
        .values("product")
        .annotate(n=Count("pk"))
        .values("n")
    )
    Product.objects.using(alias).update(
        keys_available=Coalesce(Subquery(available, output_field=models.IntegerField()), 0)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0004_categories_images_price_breaks"),
        # the keys are counted, so their table must be there (and as the models describe it today)
        ("fulfillment", "0005_keyimport_heartbeat"),
    ]

    operations = [
        migrations.AddField(
            model_name="product",
            name="keys_available",
            field=models.IntegerField(default=0, editable=False),
        ),
        migrations.RunPython(count_available_keys, migrations.RunPython.noop),
    ]
