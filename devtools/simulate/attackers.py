"""Attackers: one function per pattern, each making one attacker's (or ring's) orders of the month."""

from datetime import timedelta

from devtools.simulate.identities import ATTACKER_COUNTRIES, VICTIM_COUNTRIES, pick
from devtools.simulate.records import TESTING_BASKET, SimOrder
from devtools.simulate.shoppers import Maker


def _attacker_ip(m: Maker, victim: str, *, in_victim_country: float) -> str:
    people = m.people
    if m.rng.random() < in_victim_country:
        return people.ip_in(victim)  # a residential proxy near the cardholder
    return people.ip_in(people.country(ATTACKER_COUNTRIES))


def card_testing(m: Maker) -> list[SimOrder]:
    """Small orders, card after card declined until one goes through, over a few sessions.

    Most testers keep their device and mailbox (with a +tag per session); the careful ones change every
    identifier between sessions, try only a few cards each time and wait hours.
    """
    people, rng = m.people, m.rng
    careful = rng.random() < m.params.card_testing_careful_share
    box = people.throwaway_mailbox(disposable=rng.random() < 0.4)
    device = people.device()
    ip = ""
    at = people.when()
    orders = []
    for session in range(rng.randint(1, 4)):
        victim = people.country(VICTIM_COUNTRIES)
        if careful:
            box, device = people.throwaway_mailbox(disposable=rng.random() < 0.4), people.device()
        if careful or not ip or rng.random() < 0.5:
            ip = _attacker_ip(m, victim, in_victim_country=0.5 if careful else 0.2)
        codes = ("card_declined", "incorrect_cvc", "do_not_honor", "stolen_card")
        failed = [
            (people.card(), people.country(VICTIM_COUNTRIES), rng.choice(codes))
            for _ in range(rng.randint(1, 3) if careful else rng.randint(3, 12))
        ]
        orders.append(
            m.order(
                at=at,
                email=people.email(box) if careful else people.email(box, tag=str(session + 1)),
                ip=ip,
                device=device if careful or rng.random() < 0.7 else people.device(),
                card=people.card(),
                card_country=victim,
                product=pick(rng, TESTING_BASKET),
                radar=m.radar_fraud(elevated=0.35, highest=0.1, low=40),
                failed=failed,
                gap=(15, 60),
            )
        )
        at += timedelta(hours=rng.uniform(3, 30)) if careful else timedelta(minutes=rng.uniform(10, 360))
    return orders


def stolen_card(m: Maker) -> list[SimOrder]:
    """One order with a stolen card that Radar does not flag."""
    people, rng = m.people, m.rng
    victim = people.country(VICTIM_COUNTRIES)
    roll = rng.random()
    if roll < 0.25:
        box = people.throwaway_mailbox(disposable=True)
    elif roll < 0.4:
        box = people.mailbox(victim)  # the cardholder's name, a new mailbox
    else:
        box = people.throwaway_mailbox(disposable=False)
    product, quantity = m.fraud_basket()
    failed = [(people.card(), victim, "incorrect_cvc")] if rng.random() < 0.2 else []
    return [
        m.order(
            at=people.when(),
            email=people.email(box),
            ip=_attacker_ip(m, victim, in_victim_country=0.45),
            device=people.device(),
            card=people.card(),
            card_country=victim,
            product=product,
            quantity=quantity,
            radar=m.radar_normal(20, mode=50),
            failed=failed,
        )
    ]


def fraud_ring(m: Maker) -> list[SimOrder]:
    """A few devices shared across many emails and cards, in sessions over days; a Gmail box with dots."""
    people, rng = m.people, m.rng
    devices = [people.device() for _ in range(rng.randint(2, 4))]
    base = people.country(ATTACKER_COUNTRIES)
    ips = [people.ip_in(base) for _ in range(rng.randint(3, 6))]
    gmail = people.mailbox(domain="gmail.com")  # every dotted spelling arrives in the one box
    at = people.when()
    orders = []
    for _ in range(rng.randint(8, 24)):
        product, quantity = m.fraud_basket()
        if rng.random() < 0.3:
            email = people.email(gmail, dots=1.0)
        else:
            email = people.email(people.throwaway_mailbox(disposable=rng.random() < 0.2))
        orders.append(
            m.order(
                at=at,
                email=email,
                ip=rng.choice(ips),
                device=rng.choice(devices),
                card=people.card(),
                card_country=people.country(VICTIM_COUNTRIES),
                product=product,
                quantity=quantity,
                radar=m.radar_fraud(elevated=0.25, highest=0.05),
            )
        )
        at += timedelta(minutes=rng.uniform(5, 25)) if rng.random() < 0.6 else timedelta(hours=rng.uniform(6, 40))
    return orders


def card_many_emails(m: Maker) -> list[SimOrder]:
    """One stolen card behind many email addresses, over days."""
    people, rng = m.people, m.rng
    victim = people.country(VICTIM_COUNTRIES)
    card, device = people.card(), people.device()
    at = people.when()
    orders = []
    for _ in range(rng.randint(5, 14)):
        product, quantity = m.fraud_basket()
        orders.append(
            m.order(
                at=at,
                email=people.email(people.throwaway_mailbox(disposable=rng.random() < 0.3)),
                ip=_attacker_ip(m, victim, in_victim_country=0.5),
                device=device if rng.random() < 0.4 else people.device(),
                card=card,
                card_country=victim,
                product=product,
                quantity=quantity,
                radar=m.radar_fraud(elevated=0.25, highest=0.0),
            )
        )
        at += timedelta(hours=rng.uniform(2, 60))
    return orders


def slow_rotator(m: Maker) -> list[SimOrder]:
    """Every order from new identifiers, days apart, from the cardholder's own country."""
    people, rng = m.people, m.rng
    at = people.when()
    orders = []
    for _ in range(rng.randint(3, 8)):
        victim = people.country(VICTIM_COUNTRIES)
        product, quantity = m.fraud_basket()
        orders.append(
            m.order(
                at=at,
                email=people.email(people.mailbox(victim)),
                ip=_attacker_ip(m, victim, in_victim_country=0.7),
                device=people.device(),
                card=people.card(),
                card_country=victim,
                product=product,
                quantity=quantity,
                radar=m.radar_normal(15, mode=40),
            )
        )
        at += timedelta(days=rng.uniform(1, 4))
    return orders


def friendly_fraud(m: Maker) -> list[SimOrder]:
    """An ordinary-looking customer who disputes the charge once the key was delivered."""
    people, rng = m.people, m.rng
    home = people.country()
    box, device, card, ip = people.mailbox(home), people.device(), people.card(), people.ip_in(home)
    spare = people.card()
    at = people.when()
    orders = []
    for _ in range(rng.choices((1, 2), weights=(80, 20))[0]):
        orders.append(m.good_order(at=at, box=box, home=home, ip=ip, device=device, card=card, spare=spare))
        at += timedelta(days=rng.uniform(1, 6))
    return orders
