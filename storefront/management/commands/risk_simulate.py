import json

from django.core.management.base import BaseCommand, CommandError

from devtools.simulate import PopulationParams, SimulationError, report_table, simulate_month
from orders.models import Order


class Command(BaseCommand):
    help = (
        "Generate a labelled month of orders (honest customers and attackers, with delayed feedback) and drive "
        "the real shop through it in simulated time, then report what the risk engine caught, held and declined, "
        "per pattern. Writes orders, keys, blocklist entries and labels: for a throwaway database only."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=1, help="Random seed: the same seed, the same month.")
        parser.add_argument("--orders", type=int, default=11_000, help="Orders in the month (default 11,000).")
        parser.add_argument("--fraud-share", type=float, default=None, help="Fraudulent share of orders (0.03).")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--throwaway-ok",
            action="store_true",
            help="Run even though the database holds orders (it will hold the simulated ones too, and its "
            "lists and labels change the figures).",
        )

    def handle(self, *args, seed: int, orders: int, fraud_share: float | None, json: bool, throwaway_ok: bool, **_):
        if orders < 1:
            raise CommandError("--orders must be at least 1.")
        existing = Order.objects.count()
        if existing and not throwaway_ok:
            raise CommandError(
                f"This database holds {existing} order(s). The simulation adds orders, keys, blocklist entries and "
                "fraud labels, so run it on a throwaway database (a test database, the bench's), or pass "
                "--throwaway-ok if this one is throwaway."
            )
        params = PopulationParams() if fraud_share is None else PopulationParams(fraud_share=fraud_share)
        try:
            report = simulate_month(seed=seed, orders=orders, params=params).report
        except SimulationError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(_json_dumps(report) if json else report_table(report))


def _json_dumps(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=str)
