"""Risk engine v2 defaults, tuned on the simulator (riskengine/simulate): review at 50, decline at 90.

- New signals: a made-up mailbox name, more units than a product usually sells, and a returning customer
  with a clean history (its points come off the score).
- Radar 'elevated' no longer holds or scores by its level: Radar's risk score counts in proportion.
- Card testing declines alone (100 points); bursts of orders per email or device are weak alone.

A default rule or threshold a merchant has changed is left as they made it: a rule is updated only while
it is exactly what 0003/0008 created.
"""

from django.db import migrations, models

FAILED = {"metric": "failed_payments", "by": ["ip", "email", "device", "card"], "window_minutes": 60, "threshold": 3}
CARDS = {"metric": "distinct_cards", "by": ["email", "device"], "window_minutes": 1440, "threshold": 3}
COUNTRY = {"compare": ["card", "billing"]}


def velocity(metric: str, by: str, minutes: int, threshold: int) -> dict:
    return {"metric": metric, "by": [by], "window_minutes": minutes, "threshold": threshold}


# name: (params and points as 0003/0008 made them, params and points now, description now)
CHANGED = {
    "Many orders per email": (
        velocity("orders", "email", 60, 5), 25, velocity("orders", "email", 60, 5), 15,
        "Weak alone: regulars and resellers buy in bursts.",
    ),
    "Many orders per device": (
        velocity("orders", "device", 60, 5), 25, velocity("orders", "device", 60, 5), 15,
        "Weak alone: regulars and resellers buy in bursts.",
    ),
    "Card testing: failed payments per IP": (
        FAILED, 80, FAILED, 100,
        "Declines alone, before the provider is asked again: stops card testing. Not counted by an IP address "
        "many good customers share.",
    ),
    "Card testing: distinct cards per email or device": (
        CARDS, 80, CARDS, 100, "Declines alone: four or more cards in a day.",
    ),
    "IP country differs from card/billing": (COUNTRY, 15, COUNTRY, 20, ""),
    "Amount far above history": (
        {"multiple": 3, "first_purchase_max": 20000}, 15, {"multiple": 3, "first_purchase_max": 9000}, 10,
        "Three times the customer's average, or a first purchase over 90.00.",
    ),
    "High-risk product": ({}, 10, {}, 15, ""),
    "One card under two or more emails": (
        velocity("distinct_emails", "card", 30 * 1440, 1), 45, velocity("distinct_emails", "card", 30 * 1440, 1), 30,
        "A card paid for orders under more than one mailbox this month (a +tag or Gmail's dots are one "
        "mailbox): a stolen card shared out, or a family's card.",
    ),
    "One card under four or more emails": (
        velocity("distinct_emails", "card", 30 * 1440, 3), 40, velocity("distinct_emails", "card", 30 * 1440, 3), 60,
        "Adds to the rule above: with it, declines.",
    ),
    "Many cards behind one IP": (
        velocity("distinct_cards", "ip", 1440, 8), 25, velocity("distinct_cards", "ip", 1440, 8), 25,
        "Weak alone, and not counted by an IP address many good customers share (an office, a carrier).",
    ),
    "Radar risk score": (
        {"score_from": 40, "score_to": 90}, 50, {"score_from": 30, "score_to": 90}, 45,
        "Points rise with Stripe Radar's risk score from 30 (none) to 90 (all); 'elevated' alone does not hold.",
    ),
}  # fmt: skip
NEW_RULES = [
    (
        "Made-up mailbox name",
        "email_pattern",
        {"skip_disposable": True},
        35,
        "Digits inside letters, or a long name with hardly a vowel: a mailbox opened for one order. Disposable domains "
        "count under their own rule instead.",
    ),
    (
        "More units than the product usually sells",
        "amount_vs_product",
        {"days": 60},
        10,
        "More units of one product than its orders of the last 60 days usually take.",
    ),
    (
        "Returning customer with a clean history",
        "trusted_customer",
        {"min_days": 1},
        30,
        "Takes points off: the same email paid with this card a day or more ago, was delivered, and no order "
        "of the email or card was ever marked as fraud.",
    ),
]
RADAR_ELEVATED = ("Radar elevated", {"levels": ["elevated"]}, 20)
OLD_THRESHOLDS, NEW_THRESHOLDS = (40, 80), (50, 90)


def forwards(apps, schema_editor):
    RiskRule = apps.get_model("riskengine", "RiskRule")
    RiskSettings = apps.get_model("riskengine", "RiskSettings")
    for name, (old_params, old_points, params, points, description) in CHANGED.items():
        RiskRule.objects.filter(name=name, params=old_params, points=old_points).update(
            params=params, points=points, description=description
        )
    name, params, points = RADAR_ELEVATED
    RiskRule.objects.filter(name=name, params=params, points=points).delete()
    for name, type_, params, points, description in NEW_RULES:
        RiskRule.objects.get_or_create(
            name=name, defaults={"type": type_, "params": params, "points": points, "description": description}
        )
    review, decline = OLD_THRESHOLDS
    RiskSettings.objects.filter(pk=1, review_threshold=review, decline_threshold=decline).update(
        review_threshold=NEW_THRESHOLDS[0], decline_threshold=NEW_THRESHOLDS[1]
    )


def backwards(apps, schema_editor):
    RiskRule = apps.get_model("riskengine", "RiskRule")
    RiskSettings = apps.get_model("riskengine", "RiskSettings")
    for name, (old_params, old_points, params, points, _) in CHANGED.items():
        RiskRule.objects.filter(name=name, params=params, points=points).update(params=old_params, points=old_points)
    name, params, points = RADAR_ELEVATED
    RiskRule.objects.get_or_create(name=name, defaults={"type": "radar", "params": params, "points": points})
    RiskRule.objects.filter(
        name__in=[
            "Made-up mailbox name",
            "More units than the product usually sells",
            "Returning customer with a clean history",
        ]
    ).delete()
    review, decline = NEW_THRESHOLDS
    RiskSettings.objects.filter(pk=1, review_threshold=review, decline_threshold=decline).update(
        review_threshold=OLD_THRESHOLDS[0], decline_threshold=OLD_THRESHOLDS[1]
    )


class Migration(migrations.Migration):
    dependencies = [("riskengine", "0009_model")]

    operations = [
        migrations.AlterField(
            model_name="riskrule",
            name="type",
            field=models.CharField(
                choices=[
                    ("blocklist", "Blocklist hit (decides alone)"),
                    ("velocity", "Velocity over a window"),
                    ("disposable_email", "Disposable email domain"),
                    ("country_mismatch", "IP country differs from card or billing country"),
                    ("amount_vs_history", "Amount against the customer's history"),
                    ("high_risk_product", "High-risk product"),
                    ("linked_fraud", "Linked to earlier fraud or disputes"),
                    ("radar", "Stripe Radar outcome"),
                    ("email_pattern", "Made-up mailbox name"),
                    ("amount_vs_product", "More units than the product usually sells"),
                    ("trusted_customer", "Returning customer with a clean history (takes points off)"),
                ],
                max_length=30,
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
