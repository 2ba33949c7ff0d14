from django.db import migrations

DEFAULT_RULES = [
    ("Blocklisted identifier", "blocklist", {}, 100, "Email, domain, IP/CIDR, device or card on the blocklist."),
    ("Many orders per email", "velocity", {"metric": "orders", "by": ["email"], "window_minutes": 60, "threshold": 5}, 25, ""),
    ("Many orders per device", "velocity", {"metric": "orders", "by": ["device"], "window_minutes": 60, "threshold": 5}, 25, ""),
    ("Card testing: failed payments per IP", "velocity", {"metric": "failed_payments", "by": ["ip", "email", "device", "card"], "window_minutes": 60, "threshold": 3}, 80, "Declines alone: stops card testing before the provider is charged."),
    ("Card testing: distinct cards per email or IP", "velocity", {"metric": "distinct_cards", "by": ["email", "ip", "device"], "window_minutes": 1440, "threshold": 3}, 80, "Declines alone: four or more cards in a day."),
    ("Disposable email", "disposable_email", {}, 20, ""),
    ("IP country differs from card/billing", "country_mismatch", {"compare": ["card", "billing"]}, 15, ""),
    ("Amount far above history", "amount_vs_history", {"multiple": 3, "first_purchase_max": 20000}, 15, ""),
    ("High-risk product", "high_risk_product", {}, 10, ""),
    ("Linked to fraud or disputes", "linked_fraud", {"hops": 2}, 50, ""),
    ("Radar elevated", "radar", {"levels": ["elevated"]}, 20, ""),
]


def create_defaults(apps, schema_editor):
    RiskRule = apps.get_model("riskengine", "RiskRule")
    RiskSettings = apps.get_model("riskengine", "RiskSettings")
    for name, type_, params, points, description in DEFAULT_RULES:
        RiskRule.objects.get_or_create(
            name=name, defaults={"type": type_, "params": params, "points": points, "description": description}
        )
    RiskSettings.objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("riskengine", "0002_risk_engine")]

    operations = [migrations.RunPython(create_defaults, migrations.RunPython.noop)]
