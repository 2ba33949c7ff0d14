"""What every simulated order is built from: one actor's draws of Radar, feedback, review and habits.

The patterns themselves (one function per pattern, each making one actor's orders) are in customers.py
(honest) and attackers.py.
"""

import math
import random
from datetime import datetime, timedelta

from devtools.simulate.identities import Identities, Mailbox, pick
from devtools.simulate.records import (
    FRAUD_BASKET,
    FRAUD_PATTERNS,
    GOOD_BASKET,
    PRICES,
    Attempt,
    Feedback,
    PopulationParams,
    ReviewPlan,
    SimOrder,
)
from orders.geo import ip_country


class Maker:
    """Builds one actor's orders: the shared draws (Radar, feedback, review) in one place."""

    def __init__(self, people: Identities, params: PopulationParams, pattern: str, actor: str):
        self.people, self.params, self.pattern, self.actor = people, params, pattern, actor
        self.rng = people.rng
        self.fraud = pattern in FRAUD_PATTERNS

    def order(
        self,
        *,
        at: datetime,
        email: str,
        ip: str,
        device: str,
        card: str,
        card_country: str,
        product: str,
        quantity: int = 1,
        billing: str = "",
        radar: tuple[str, int] | None = None,
        failed: list[tuple[str, str, str]] = (),  # (card, card country, decline code) before the one that works
        gap: tuple[int, int] = (60, 300),
    ) -> SimOrder:
        rng = self.rng
        attempts, moment = [], at + timedelta(seconds=rng.randint(30, 180))
        for fail_card, fail_country, code in failed:
            attempts.append(Attempt(moment, fail_card, fail_country, False, code))
            moment += timedelta(seconds=rng.randint(*gap))
        attempts.append(Attempt(moment, card, card_country, True))
        level, score = radar or self.radar_normal()
        return SimOrder(
            index=self.people.serial(),
            at=at,
            pattern=self.pattern,
            fraud=self.fraud,
            actor=self.actor,
            email=email,
            ip=ip,
            ip_country=ip_country(ip),
            device_id=device,
            card_fingerprint=card,
            card_country=card_country,
            billing_country=billing or card_country,
            product=product,
            quantity=quantity,
            amount=PRICES[product].price * quantity,
            high_risk=PRICES[product].high_risk,
            radar_level=level,
            radar_score=score,
            attempts=tuple(attempts),
            feedback=self.feedback(moment),
            review=self.review(),
        )

    # --- Radar: normal < 65 <= elevated < 75 <= highest ------------------------------------------------

    def radar_normal(self, low: int = 0, mode: int | None = None) -> tuple[str, int]:
        mode = self.params.good_radar_score_mode if mode is None else mode
        return "normal", int(self.rng.triangular(low, 64, max(low, min(64, mode))))

    def radar_elevated(self) -> tuple[str, int]:
        return "elevated", self.rng.randint(65, 74)

    def radar_fraud(self, *, elevated: float, highest: float, low: int = 30) -> tuple[str, int]:
        roll = self.rng.random()
        if roll < highest:
            return "highest", self.rng.randint(75, 95)
        if roll < highest + elevated:
            return self.radar_elevated()
        return self.radar_normal(low, mode=55)

    # --- what follows the payment ----------------------------------------------------------------------

    def feedback(self, paid_at: datetime) -> tuple[Feedback, ...]:
        if not self.fraud:
            return ()
        rng, p = self.rng, self.params
        found = []
        friendly = self.pattern == "friendly_fraud"
        if rng.random() < (p.early_fraud_warning_rate / 2 if friendly else p.early_fraud_warning_rate):
            days = _skewed(rng, *p.early_fraud_warning_days)
            found.append(Feedback("early_fraud_warning", paid_at + timedelta(days=days), "made_with_stolen_card"))
        if friendly or rng.random() < p.dispute_rate:
            days = _skewed(rng, *(p.friendly_dispute_days if friendly else p.dispute_days))
            reason = rng.choice(("fraudulent", "fraudulent", "product_not_received")) if friendly else "fraudulent"
            found.append(Feedback("dispute", paid_at + timedelta(days=days), reason))
        return tuple(sorted(found, key=lambda f: f.at))

    def review(self) -> ReviewPlan:
        rng, p = self.rng, self.params
        wrong = p.reviewer_approves_fraud if self.fraud else p.reviewer_rejects_good
        approve = (rng.random() < wrong) if self.fraud else (rng.random() >= wrong)
        hours = min(48.0, rng.lognormvariate(math.log(p.review_median_hours), 0.9))
        return ReviewPlan(approve=approve, delay=timedelta(seconds=round(hours * 3600)))

    # --- honest habits -----------------------------------------------------------------------------------

    def good_basket(self) -> tuple[str, int]:
        quantity = self.rng.choices((1, 2, 3), weights=(90, 8, 2))[0]
        return pick(self.rng, GOOD_BASKET), quantity

    def fraud_basket(self) -> tuple[str, int]:
        return pick(self.rng, FRAUD_BASKET), self.rng.choices((1, 2, 3, 4, 5), weights=(55, 25, 10, 5, 5))[0]

    def good_failures(self, home: str, spare: str) -> list[tuple[str, str, str]]:
        """Now and then an honest shopper's first card (one of their own) is declined: funds, a bank's caution."""
        if self.rng.random() >= self.params.good_card_declined:
            return []
        return [(spare, home, self.rng.choice(("insufficient_funds", "do_not_honor", "expired_card")))]

    def good_order(
        self, *, at, box: Mailbox, home: str, ip: str, device: str, card: str, spare: str = "", **overrides
    ) -> SimOrder:
        """An honest order: the shopper's usual basket, email as usually typed, and their own cards."""
        product, quantity = self.good_basket()
        fields = {"email": self.people.email(box, case=0.1, plus=0.03), "product": product, "quantity": quantity}
        return self.order(
            at=at,
            ip=ip,
            device=device,
            card=card,
            card_country=home,
            failed=self.good_failures(home, spare or self.people.card()),
            **(fields | overrides),
        )


def _skewed(rng: random.Random, low: float, high: float) -> float:
    """Days between low and high, most of them early (a triangle leaning to the low end)."""
    return rng.triangular(low, high, low + (high - low) * 0.2)
