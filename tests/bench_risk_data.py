"""The risk latency bench's data (tests/bench_risk.py): its 20 rules, a shop's history with lists and labels,
freshly paid orders to assess, and the velocity entries checkout and payments would have left for them."""

import random
import time
from datetime import timedelta

RULES = [
    ("bench blocklist", "blocklist", {}, 100),
    ("bench orders/email", "velocity", {"metric": "orders", "by": ["email"], "window_minutes": 60, "threshold": 5}, 25),
    (
        "bench orders/device",
        "velocity",
        {"metric": "orders", "by": ["device"], "window_minutes": 60, "threshold": 5},
        25,
    ),
    ("bench orders/ip", "velocity", {"metric": "orders", "by": ["ip"], "window_minutes": 60, "threshold": 10}, 15),
    ("bench orders/card", "velocity", {"metric": "orders", "by": ["card"], "window_minutes": 1440, "threshold": 5}, 15),
    (
        "bench failed/ip,email,device",
        "velocity",
        {"metric": "failed_payments", "by": ["ip", "email", "device"], "window_minutes": 60, "threshold": 3},
        40,
    ),
    (
        "bench distinct cards/email,ip,device",
        "velocity",
        {"metric": "distinct_cards", "by": ["email", "ip", "device"], "window_minutes": 1440, "threshold": 2},
        40,
    ),
    ("bench failed/card", "velocity", {"metric": "failed_payments", "by": ["card"], "window_minutes": 1440}, 30),
    ("bench disposable", "disposable_email", {}, 20),
    ("bench disposable (heavy)", "disposable_email", {}, 40),
    ("bench country card+billing", "country_mismatch", {"compare": ["card", "billing"]}, 15),
    ("bench country card", "country_mismatch", {"compare": ["card"]}, 10),
    ("bench amount 3x", "amount_vs_history", {"multiple": 3, "first_purchase_max": 20000}, 15),
    ("bench amount 10x", "amount_vs_history", {"multiple": 10, "first_purchase_max": 50000}, 25),
    ("bench high-risk product", "high_risk_product", {}, 10),
    ("bench high-risk product (heavy)", "high_risk_product", {}, 20),
    ("bench linked 1 hop", "linked_fraud", {"hops": 1}, 30),
    ("bench linked 2 hops", "linked_fraud", {"hops": 2}, 50),
    ("bench radar elevated", "radar", {"levels": ["elevated"]}, 20),
    ("bench radar elevated+highest", "radar", {"levels": ["elevated", "highest"]}, 30),
]


def seed_shop(*, tag: str, n: int, history: int, rng: random.Random) -> list[tuple[int, dict]]:
    """Rules, lists, a shop history and `n` freshly paid orders to assess. Returns (order id, radar) pairs."""
    from django.db.models import F, OuterRef, Subquery
    from django.utils import timezone

    from catalog.models import FulfilmentKind, Product
    from orders.models import Order, OrderEvent, OrderLine, PaymentState
    from riskengine.models import FraudLabel, ListEntry, RiskRule

    RiskRule.objects.bulk_create(
        RiskRule(name=f"{name} {tag}", type=type_, params=params, points=points)
        for name, type_, params, points in RULES
    )
    products = [
        Product.objects.create(
            name=f"Bench {i} {tag}",
            slug=f"bench-risk-{i}-{tag}",
            kind=FulfilmentKind.SERVICE,
            price_amount=price,
            high_risk=i == 0,
        )
        for i, price in enumerate([4900, 1999, 2900, 990, 14900])
    ]

    def public_ip() -> str:
        return f"{rng.randint(2, 190)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"

    # Customers: their own email, device, card and (mostly) IP; some share an office or carrier IP.
    shared_ips = [public_ip() for _ in range(20)]
    customers = [
        {
            "email": f"c{i}-{tag}@{'mailinator.com' if i % 25 == 0 else 'example.com'}",
            "ip": rng.choice(shared_ips) if i % 10 == 0 else public_ip(),
            "device": f"dev-{i}-{tag}",
            "card": f"card-{i}-{tag}",
        }
        for i in range(max(50, n // 4))
    ]
    # Lists as a shop accumulates them: most entries never match; IP entries are read in full for every order.
    entries = [ListEntry(kind="email", value=f"bad{i}-{tag}@example.net", created_by="bench") for i in range(400)]
    entries += [ListEntry(kind="email_domain", value=f"bad{i}-{tag}.example", created_by="bench") for i in range(100)]
    entries += [ListEntry(kind="ip", value=f"198.18.{i // 250}.{i % 250}", created_by="bench") for i in range(250)]
    entries += [ListEntry(kind="ip", value=f"100.{64 + i}.0.0/16", created_by="bench") for i in range(50)]
    entries += [ListEntry(kind="device", value=f"baddev-{i}-{tag}", created_by="bench") for i in range(100)]
    entries += [ListEntry(kind="card", value=f"badcard-{i}-{tag}", created_by="bench") for i in range(100)]
    entries += [ListEntry(kind="email", value=customers[7]["email"], allow=True, created_by="bench")]
    ListEntry.objects.bulk_create(entries)

    now = timezone.now()

    def order_for(customer: dict, product, *, paid_at) -> Order:
        return Order(
            email=customer["email"],
            currency="USD",
            subtotal_amount=product.price_amount,
            total_amount=product.price_amount,
            purchase_ip=customer["ip"],
            device_id=customer["device"],
            card_fingerprint=customer["card"] if paid_at else "",
            card_country=rng.choice(["US", "GB", "DE"]) if paid_at else "",
            billing_country=rng.choice(["US", "GB", "DE"]) if paid_at else "",
            status="fulfilled" if paid_at else "pending_payment",
            payment_state=PaymentState.PAID if paid_at else PaymentState.UNPAID,
            paid_at=paid_at,
        )

    def create(orders: list[Order], chosen_products: list) -> list[Order]:
        created = Order.objects.bulk_create(orders, batch_size=2000)
        OrderLine.objects.bulk_create(
            (
                OrderLine(
                    order=order,
                    product=product,
                    product_name=product.name,
                    kind=product.kind,
                    unit_price=product.price_amount,
                    quantity=1,
                    line_total=product.price_amount,
                )
                for order, product in zip(created, chosen_products, strict=True)
            ),
            batch_size=2000,
        )
        return created

    # History: older paid orders of other shoppers (the bulk of the table) and of the bench's customers.
    strangers = [
        {"email": f"s{i}-{tag}@example.org", "ip": public_ip(), "device": f"sdev{i}-{tag}", "card": f"s{i}-{tag}"}
        for i in range(history)
    ]
    past_products = [rng.choice(products) for _ in range(history)]
    past = create(
        [
            order_for(c, p, paid_at=now - timedelta(days=rng.randint(2, 300)))
            for c, p in zip(strangers, past_products, strict=True)
        ],
        past_products,
    )
    own_products = [rng.choice(products) for _ in customers for _ in range(2)]
    own = create(
        [
            order_for(c, own_products[2 * i + k], paid_at=now - timedelta(days=rng.randint(2, 60)))
            for i, c in enumerate(customers)
            for k in range(2)
        ],
        own_products,
    )
    # An order's history as the shop writes it (created, paid, delivered), dated when it happened.
    OrderEvent.objects.bulk_create(
        (
            OrderEvent(order=order, type=kind, actor="bench")
            for order in past + own
            for kind in ("order_created", "status_changed", "status_changed")
        ),
        batch_size=5000,
    )
    Order.objects.filter(pk__in=[o.pk for o in past + own]).update(created_at=F("paid_at"))
    OrderEvent.objects.filter(order__in=past + own).update(
        created_at=Subquery(Order.objects.filter(pk=OuterRef("order_id")).values("paid_at")[:1])
    )
    FraudLabel.objects.bulk_create(
        FraudLabel(order=order, source="dispute", is_fraud=True) for order in rng.sample(own, len(own) // 20)
    )
    FraudLabel.objects.bulk_create(
        FraudLabel(order=order, source="dispute", is_fraud=True) for order in rng.sample(past, len(past) // 100)
    )
    # The orders to assess: just paid, one per (customer, slot), some with failed attempts before.
    fresh_products = [rng.choice(products) for _ in range(n)]
    fresh_customers = [rng.choice(customers) for _ in range(n)]
    fresh = create(
        [order_for(c, p, paid_at=now) for c, p in zip(fresh_customers, fresh_products, strict=True)], fresh_products
    )
    OrderEvent.objects.bulk_create(
        OrderEvent(order=order, type="payment_failed", actor="bench") for order in fresh if rng.random() < 0.2
    )
    radars = [
        {},
        {"outcome_type": "authorized", "risk_level": "normal", "risk_score": 12},
        {"outcome_type": "authorized", "risk_level": "normal", "risk_score": 30},
        {"outcome_type": "authorized", "risk_level": "elevated", "risk_score": 67},
    ]
    return [(order.pk, rng.choice(radars)) for order in fresh]


def warm_redis(*, order_ids: list[int], rng: random.Random) -> list[str]:
    """Velocity entries for the orders' identifiers, as checkout and payments would have left them."""
    from orders.models import Order
    from riskengine.signals import identifiers, signals_for_order
    from riskengine.velocity import _key, velocity_record

    keys: set[str] = set()
    now = time.time()
    for order in Order.objects.filter(pk__in=order_ids).prefetch_related("lines__product"):
        ids = identifiers(signals_for_order(order))
        velocity_record(metric="orders", ids=ids, member=str(order.pk), at=now - rng.randint(0, 3000))
        if rng.random() < 0.3:
            velocity_record(metric="failed_payments", ids=ids, member=f"{order.pk}:f", at=now - rng.randint(0, 3000))
        others = {k: v for k, v in ids.items() if k != "card"}
        velocity_record(metric="distinct_cards", ids=others, member=order.card_fingerprint, at=now)
        for metric in ("orders", "failed_payments", "distinct_cards"):
            keys.update(_key(metric, kind, value) for kind, value in ids.items())
    return sorted(keys)
