"""Honest customers: one function per pattern, each making one customer's orders of the month."""

from datetime import timedelta

from devtools.simulate.identities import Identities
from devtools.simulate.records import SimOrder
from devtools.simulate.shoppers import Maker


def good_oneoff(m: Maker) -> list[SimOrder]:
    people = m.people
    home = people.country()
    box, ip, device, card = people.mailbox(home), people.ip_in(home), people.device(), people.card()
    return [m.good_order(at=people.when(), box=box, home=home, ip=ip, device=device, card=card)]


def good_repeat(m: Maker) -> list[SimOrder]:
    """A regular: several orders over the month, some in bursts (gifts, a reseller restocking)."""
    people, rng = m.people, m.rng
    home = people.country()
    box = people.mailbox(home)
    laptop, phone = people.device(), people.device()
    usual_card, other_card = people.card(), people.card()
    home_ip = people.ip_in(home)
    sizes, weights = zip(*m.params.repeat_burst_sizes.items(), strict=True)
    orders = []
    for _ in range(rng.randint(1, 4)):
        at = people.when()
        for _ in range(rng.choices(sizes, weights=weights)[0]):
            orders.append(
                m.good_order(
                    at=at,
                    box=box,
                    home=home,
                    ip=home_ip if rng.random() < 0.7 else people.ip_in(home),
                    device=phone if rng.random() < 0.2 else laptop,
                    card=other_card if rng.random() < 0.15 else usual_card,
                    spare=other_card,
                    email=people.email(box, case=0.15, plus=0.07, dots=0.03),
                )
            )
            at += timedelta(seconds=rng.randint(120, 900))
    return sorted(orders, key=lambda o: o.at)


class SharedNetworks:
    """Offices and mobile carriers: one public IP with many honest shoppers behind it."""

    OFFICES = 40
    CARRIER_IPS_PER_COUNTRY = 8

    def __init__(self, people: Identities):
        rng = people.rng
        self.offices = []
        for _ in range(self.OFFICES):
            country = people.country()
            team_days = sorted(rng.sample(range(people.days), k=rng.randint(1, 3)))
            self.offices.append((country, people.ip_in(country), people.company_domain(), team_days))
        self.carriers: dict[str, list[str]] = {}

    def carrier_ip(self, people: Identities, country: str) -> str:
        if country not in self.carriers:
            self.carriers[country] = [people.ip_in(country) for _ in range(self.CARRIER_IPS_PER_COUNTRY)]
        return people.rng.choice(self.carriers[country])


def good_shared_ip(m: Maker) -> list[SimOrder]:
    """An office worker behind the office's one IP, or a phone behind a carrier's CGNAT."""
    people, rng = m.people, m.rng
    networks = people.shared.get("networks")
    if networks is None:
        networks = people.shared["networks"] = SharedNetworks(people)
    device, card, spare = people.device(), people.card(), people.card()
    count = rng.choices((1, 2, 3), weights=(70, 20, 10))[0]
    orders = []
    if rng.random() < 0.5:
        home, ip, domain, team_days = rng.choice(networks.offices)
        box = people.mailbox(home, domain=domain)
        for _ in range(count):
            team_day = rng.random() < m.params.office_team_day_share
            at = people.work_hours(rng.choice(team_days) if team_day else rng.randrange(people.days))
            orders.append(m.good_order(at=at, box=box, home=home, ip=ip, device=device, card=card, spare=spare))
    else:
        home = people.country()
        box = people.mailbox(home)
        for _ in range(count):
            ip = networks.carrier_ip(people, home)
            at = people.when()
            orders.append(m.good_order(at=at, box=box, home=home, ip=ip, device=device, card=card, spare=spare))
    return sorted(orders, key=lambda o: o.at)


def good_traveller(m: Maker) -> list[SimOrder]:
    """Buying abroad: the IP's country is not the card's (nor the billing address's)."""
    people, rng = m.people, m.rng
    home = people.country()
    box, device, card, spare = people.mailbox(home), people.device(), people.card(), people.card()
    abroad, _ = people.ip_elsewhere(home)
    at = people.when()
    orders = []
    for _ in range(rng.choices((1, 2), weights=(75, 25))[0]):
        orders.append(m.good_order(at=at, box=box, home=home, ip=abroad, device=device, card=card, spare=spare))
        at += timedelta(days=rng.uniform(0.5, 3))
    return orders


def good_disposable(m: Maker) -> list[SimOrder]:
    """An honest buyer who gives a throwaway address (privacy, not fraud)."""
    people = m.people
    home = people.country()
    box = people.throwaway_mailbox(disposable=True)
    ip, device, card = people.ip_in(home), people.device(), people.card()
    return [m.good_order(at=people.when(), box=box, home=home, ip=ip, device=device, card=card)]


def good_radar_elevated(m: Maker) -> list[SimOrder]:
    """An honest payment that Stripe Radar calls "elevated" (moderate score)."""
    people = m.people
    home = people.country()
    box, ip, device, card = people.mailbox(home), people.ip_in(home), people.device(), people.card()
    return [
        m.good_order(at=people.when(), box=box, home=home, ip=ip, device=device, card=card, radar=m.radar_elevated())
    ]
