"""The rules and thresholds a new shop starts with: what migrations 0003, 0008, 0010, 0011 and 0012 leave in a fresh
database (tests/riskengine/test_rules_v2.py checks the two agree). Tests, the simulator and the e2e shop put them back
after a flush or an edit with `shipped_rules_install`."""

from riskengine.models import RiskRule, RiskSettings, RuleMode

SHIPPED_RULES = [
    ("Blocklisted identifier", "blocklist", {}, 100, "Email, domain, IP/CIDR, device or card on the blocklist."),
    (
        "Many orders per email",
        "velocity",
        {"metric": "orders", "by": ["email"], "window_minutes": 60, "threshold": 5},
        15,
        "Weak alone: regulars and resellers buy in bursts.",
    ),
    (
        "Many orders per device",
        "velocity",
        {"metric": "orders", "by": ["device"], "window_minutes": 60, "threshold": 5},
        15,
        "Weak alone: regulars and resellers buy in bursts.",
    ),
    (
        "Card testing: failed payments per IP",
        "velocity",
        {"metric": "failed_payments", "by": ["ip", "email", "device", "card"], "window_minutes": 60, "threshold": 3},
        100,
        "Declines alone, before the provider is asked again: stops card testing. Not counted by an IP address "
        "many good customers share.",
    ),
    (
        "Card testing: distinct cards per email or device",
        "velocity",
        {"metric": "distinct_cards", "by": ["email", "device"], "window_minutes": 1440, "threshold": 3},
        100,
        "Declines alone: four or more cards in a day.",
    ),
    ("Disposable email", "disposable_email", {}, 20, ""),
    (
        "Made-up mailbox name",
        "email_pattern",
        {"skip_disposable": True},
        35,
        "Digits inside letters, or a long name with hardly a vowel: a mailbox opened for one order. Disposable domains "
        "count under their own rule instead.",
    ),
    ("IP country differs from card/billing", "country_mismatch", {"compare": ["card", "billing"]}, 20, ""),
    (
        "Amount far above history",
        "amount_vs_history",
        {"multiple": 3, "first_purchase_max": 9000},
        10,
        "Three times the customer's average, or a first purchase over 90.00.",
    ),
    (
        "More units than the product usually sells",
        "amount_vs_product",
        {"days": 60},
        10,
        "More units of one product than its orders of the last 60 days usually take.",
    ),
    ("High-risk product", "high_risk_product", {}, 15, ""),
    ("Linked to fraud or disputes", "linked_fraud", {"hops": 2}, 50, ""),
    (
        "One card under two or more emails",
        "velocity",
        {"metric": "distinct_emails", "by": ["card"], "window_minutes": 30 * 1440, "threshold": 1},
        30,
        "A card paid for orders under more than one mailbox this month (a +tag or Gmail's dots are one "
        "mailbox): a stolen card shared out, or a family's card.",
    ),
    (
        "One card under four or more emails",
        "velocity",
        {"metric": "distinct_emails", "by": ["card"], "window_minutes": 30 * 1440, "threshold": 3},
        60,
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
        "Weak alone, and not counted by an IP address many good customers share (an office, a carrier).",
    ),
    (
        "Radar risk score",
        "radar",
        {"score_from": 25, "score_to": 90},
        45,
        "Points rise with Stripe Radar's risk score from 25 (none) to 90 (all); 'elevated' alone does not hold. "
        "From 25, a stolen card's middling score adds up with a weak signal or two to a hold; an honest low "
        "score adds nothing.",
    ),
    (
        "Returning customer with a clean history",
        "trusted_customer",
        {"min_days": 1},
        30,
        "Takes points off: the same email paid with this card a day or more ago, was delivered, and no order "
        "of the email or card was ever marked as fraud.",
    ),
    (
        "Coupon farming: one device or card, many emails",
        "coupon_abuse",
        {"threshold": 1, "days": 30},
        50,
        "The order's coupon was used from this browser or card under two or more other mailboxes in 30 days "
        "(however the addresses are written): held for review.",
    ),
]
SHIPPED_THRESHOLDS = {"review_threshold": 50, "decline_threshold": 90}


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
