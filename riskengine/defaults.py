"""The rules and thresholds a new shop starts with: what migrations 0003 and 0008 leave in a fresh database
(tests/riskengine/test_rules_v2.py checks the two agree). Tests, the simulator and the e2e shop put them back
after a flush or an edit with `shipped_rules_install`."""

from riskengine.models import RiskRule, RiskSettings, RuleMode

SHIPPED_RULES = [
    ("Blocklisted identifier", "blocklist", {}, 100, "Email, domain, IP/CIDR, device or card on the blocklist."),
    (
        "Many orders per email",
        "velocity",
        {"metric": "orders", "by": ["email"], "window_minutes": 60, "threshold": 5},
        25,
        "",
    ),
    (
        "Many orders per device",
        "velocity",
        {"metric": "orders", "by": ["device"], "window_minutes": 60, "threshold": 5},
        25,
        "",
    ),
    (
        "Card testing: failed payments per IP",
        "velocity",
        {"metric": "failed_payments", "by": ["ip", "email", "device", "card"], "window_minutes": 60, "threshold": 3},
        80,
        "Declines alone: stops card testing before the provider is charged.",
    ),
    (
        "Card testing: distinct cards per email or device",
        "velocity",
        {"metric": "distinct_cards", "by": ["email", "device"], "window_minutes": 1440, "threshold": 3},
        80,
        "Declines alone: four or more cards in a day.",
    ),
    ("Disposable email", "disposable_email", {}, 20, ""),
    ("IP country differs from card/billing", "country_mismatch", {"compare": ["card", "billing"]}, 15, ""),
    ("Amount far above history", "amount_vs_history", {"multiple": 3, "first_purchase_max": 20000}, 15, ""),
    ("High-risk product", "high_risk_product", {}, 10, ""),
    ("Linked to fraud or disputes", "linked_fraud", {"hops": 2}, 50, ""),
    ("Radar elevated", "radar", {"levels": ["elevated"]}, 20, ""),
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
SHIPPED_THRESHOLDS = {"review_threshold": 40, "decline_threshold": 80}


def shipped_rules_install(*, rule_model=RiskRule, settings_model=RiskSettings) -> None:
    """Exactly the shipped rules, enabled and active, and the shipped thresholds; any other rule is disabled."""
    rule_model.objects.exclude(name__in=[name for name, *_ in SHIPPED_RULES]).update(enabled=False)
    for name, type_, params, points, description in SHIPPED_RULES:
        rule_model.objects.update_or_create(
            name=name,
            defaults={
                "type": type_,
                "params": params,
                "points": points,
                "description": description,
                "enabled": True,
                "mode": RuleMode.ACTIVE,
            },
        )
    settings_model.objects.update_or_create(pk=1, defaults=SHIPPED_THRESHOLDS)
