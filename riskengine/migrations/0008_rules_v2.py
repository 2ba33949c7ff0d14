"""Risk engine v2 defaults: the signals the first rules missed, and an IP counted as the weak evidence it is.

- One card under several emails, and one device under several emails (stolen cards, rings).
- Stripe Radar's numeric risk score, counted continuously.
- Card testing counts cards per email and device only: many cards behind one IP is an office or a carrier
  as often as an attacker, so it gets a rule of its own with a higher count and fewer points.

A default rule a merchant has changed is left as they made it.
"""

from django.db import migrations

OLD_CARD_TESTING = {"metric": "distinct_cards", "by": ["email", "ip", "device"], "window_minutes": 1440, "threshold": 3}
NEW_CARD_TESTING = {"metric": "distinct_cards", "by": ["email", "device"], "window_minutes": 1440, "threshold": 3}
CARD_TESTING = "Card testing: distinct cards per email or IP"
CARD_TESTING_NOW = "Card testing: distinct cards per email or device"

NEW_RULES = [
    (
        "One card under two or more emails",
        "velocity",
        {"metric": "distinct_emails", "by": ["card"], "window_minutes": 30 * 1440, "threshold": 1},
        45,
        "A card paid for orders under more than one mailbox this month: a stolen card shared out.",
    ),
    (
        "One card under four or more emails",
        "velocity",
        {"metric": "distinct_emails", "by": ["card"], "window_minutes": 30 * 1440, "threshold": 3},
        40,
        "Adds to the rule above: with it, declines.",
    ),
    (
        "One device under three or more emails",
        "velocity",
        {"metric": "distinct_emails", "by": ["device"], "window_minutes": 7 * 1440, "threshold": 2},
        45,
        "One browser buying as several people this week: a ring or a coupon farmer.",
    ),
    (
        "Many cards behind one IP",
        "velocity",
        {"metric": "distinct_cards", "by": ["ip"], "window_minutes": 1440, "threshold": 8},
        25,
        "Weak alone (offices and mobile carriers share an IP); adds to other signals.",
    ),
    (
        "Radar risk score",
        "radar",
        {"score_from": 40, "score_to": 90},
        50,
        "Points rise with Stripe Radar's risk score from 40 (none) to 90 (all).",
    ),
]


def forwards(apps, schema_editor):
    RiskRule = apps.get_model("riskengine", "RiskRule")
    RiskRule.objects.filter(name=CARD_TESTING, params=OLD_CARD_TESTING).update(
        name=CARD_TESTING_NOW, params=NEW_CARD_TESTING
    )
    for name, type_, params, points, description in NEW_RULES:
        RiskRule.objects.get_or_create(
            name=name, defaults={"type": type_, "params": params, "points": points, "description": description}
        )


def backwards(apps, schema_editor):
    RiskRule = apps.get_model("riskengine", "RiskRule")
    RiskRule.objects.filter(name=CARD_TESTING_NOW, params=NEW_CARD_TESTING).update(
        name=CARD_TESTING, params=OLD_CARD_TESTING
    )
    RiskRule.objects.filter(name__in=[rule[0] for rule in NEW_RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("riskengine", "0007_review_closed")]

    operations = [migrations.RunPython(forwards, backwards)]
