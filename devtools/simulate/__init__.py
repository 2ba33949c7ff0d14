"""The project's own yardstick: a labelled month of orders driven through the real shop in simulated time.

records.py says what an order of the month is; identities.py draws people, devices, cards and addresses;
customers.py and attackers.py are the patterns (honest and not), built on shoppers.py, with their feedback;
population.py puts the month together; events.py writes the Stripe events; replay.py drives checkout, the
pre-payment screen, Stripe's signed webhooks, delivery, reviews and feedback through the real services;
report.py reads back what the engine did with each order and sums it up per pattern.

Run it on a throwaway database only (a test database, the bench's): it creates products, keys, orders,
blocklist entries and fraud labels. `manage.py risk_simulate` refuses a database that holds orders.
"""

import time
from dataclasses import dataclass

from devtools.simulate.population import population_generate
from devtools.simulate.records import FRAUD_PATTERNS, GOOD_PATTERNS, PATTERNS, PopulationParams, SimOrder
from devtools.simulate.replay import USER_AGENT, SimulationError, Trace, replay_run
from devtools.simulate.report import Outcome, outcomes_read, report_build, report_table

__all__ = [
    "FRAUD_PATTERNS",
    "GOOD_PATTERNS",
    "PATTERNS",
    "USER_AGENT",
    "Outcome",
    "PopulationParams",
    "SimOrder",
    "Simulation",
    "SimulationError",
    "Trace",
    "population_generate",
    "report_table",
    "simulate_month",
]


@dataclass(frozen=True)
class Simulation:
    population: list[SimOrder]
    traces: list[Trace]  # what the replay did, one per simulated order
    outcomes: list[Outcome]  # what became of each, read back from the database
    report: dict


def simulate_month(*, seed: int, orders: int, params: PopulationParams | None = None) -> Simulation:
    """Generate the month for this seed, replay it through the shop, and read back what the engine did."""
    params = params or PopulationParams()
    population = population_generate(seed=seed, orders=orders, params=params)
    started = time.perf_counter()
    traces = replay_run(population)
    outcomes = outcomes_read(traces)
    seconds = time.perf_counter() - started
    report = report_build(seed=seed, params=params.as_dict(), outcomes=outcomes, traces=traces, seconds=seconds)
    return Simulation(population=population, traces=traces, outcomes=outcomes, report=report)
