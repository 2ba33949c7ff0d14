"""Who shops in the simulated month: labelled honest customers and attackers, each order with what follows it.

`population_generate` is pure (no database): a seed and a size give the same list of orders every time.
Each order carries its shopper's identifiers as they would reach the shop (the email as typed, with
capitals, +tags or Gmail dots; the IP and its country; device; the card that pays and the cards that
failed before it; billing country), the product and amount, what Stripe Radar says about the payment,
its label and pattern, and its feedback: an early fraud warning days later, a dispute weeks later, and
what a human reviewer would decide (and after how long) if the engine held it.

Rates are parameters (PopulationParams) with defaults meant to look like a month of a small key shop:
about 3% of orders fraudulent by count.
"""

import math
import random
from collections.abc import Callable
from dataclasses import replace

from devtools.simulate import attackers, customers
from devtools.simulate.identities import Identities
from devtools.simulate.records import GOOD_PATTERNS, PATTERNS, PopulationParams, SimOrder
from devtools.simulate.shoppers import Maker

MAKERS: dict[str, Callable[[Maker], list[SimOrder]]] = {
    "good_oneoff": customers.good_oneoff,
    "good_repeat": customers.good_repeat,
    "good_shared_ip": customers.good_shared_ip,
    "good_traveller": customers.good_traveller,
    "good_disposable": customers.good_disposable,
    "good_radar_elevated": customers.good_radar_elevated,
    "card_testing": attackers.card_testing,
    "stolen_card": attackers.stolen_card,
    "fraud_ring": attackers.fraud_ring,
    "card_many_emails": attackers.card_many_emails,
    "slow_rotator": attackers.slow_rotator,
    "friendly_fraud": attackers.friendly_fraud,
}


def population_generate(*, seed: int, orders: int, params: PopulationParams | None = None) -> list[SimOrder]:
    """`orders` labelled orders over the month, in time order, the same for the same seed and params."""
    params = params or PopulationParams()
    rng = random.Random(seed)
    people = Identities(rng, start=params.start, days=params.days)
    drafts: list[SimOrder] = []
    for pattern, quota in population_quotas(orders, params).items():
        made: list[SimOrder] = []
        while len(made) < quota:
            actor = f"{pattern}-{people.serial()}"
            made += [o for o in MAKERS[pattern](Maker(people, params, pattern, actor)) if o.at < people.end()]
        drafts += made[:quota]
    drafts.sort(key=lambda o: (o.at, o.index))
    return [replace(order, index=i) for i, order in enumerate(drafts)]


def population_quotas(orders: int, params: PopulationParams) -> dict[str, int]:
    """Orders per pattern: the mixes applied to the size; every pattern at least one order when there is room."""
    fraud_total = round(orders * params.fraud_share)
    quotas = _split(fraud_total, params.fraud_mix)
    good = {pattern: round(orders * share) for pattern, share in params.good_mix.items()}
    if orders - fraud_total > len(GOOD_PATTERNS):
        good = {pattern: max(1, n) for pattern, n in good.items()}
    good["good_oneoff"] = max(0, orders - fraud_total - sum(good.values()))
    quotas |= good
    return {pattern: quotas.get(pattern, 0) for pattern in PATTERNS}


def _split(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Largest remainders; one each first when the total allows it."""
    if total <= 0:
        return dict.fromkeys(shares, 0)
    floor = 1 if total >= len(shares) else 0
    rest = total - floor * len(shares)
    weight = sum(shares.values())
    exact = {p: rest * s / weight for p, s in shares.items()}
    counts = {p: floor + math.floor(x) for p, x in exact.items()}
    leftover = total - sum(counts.values())
    for p in sorted(exact, key=lambda p: (-(exact[p] - math.floor(exact[p])), p))[:leftover]:
        counts[p] += 1
    return counts
