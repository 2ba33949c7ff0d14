"""The risk engine's figures on the project's own yardstick: simulated months replayed through the real shop.

Each seed runs on an emptied database of its own (the bench's), with the shipped rules and thresholds, so
the figures are the ones a new shop gets. `make bench` calls `risk_figures`; run alone for a quick look:

    .venv/bin/python tests/load/risk_figures.py --seeds 1 2 --orders 11000
"""

import argparse
import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def month_on_fresh_database(*, seed: int, orders: int) -> dict:
    """One simulated month on an emptied database holding only what the migrations give a new shop."""
    from django.core.management import call_command

    from payments.models import PaymentChannel
    from riskengine.defaults import shipped_rules_install
    from riskengine.simulate import simulate_month

    call_command("flush", interactive=False, verbosity=0)
    for fields in importlib.import_module("payments.migrations.0003_default_channels").CHANNELS:
        PaymentChannel.objects.get_or_create(code=fields["code"], defaults=fields)
    shipped_rules_install()
    return simulate_month(seed=seed, orders=orders).report


def risk_figures(*, seeds: tuple[int, ...] = (1, 2), orders: int = 11_000) -> dict:
    """Caught, good held and good declined for each seed (and the whole report of each)."""
    reports = {seed: month_on_fresh_database(seed=seed, orders=orders) for seed in seeds}
    return {"orders": orders, "reports": reports}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--orders", type=int, default=11_000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront.settings_test")
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/storefront")
    name = f"storefront_risk_{os.getpid()}"
    os.environ["DATABASE_URL"] = base.rsplit("/", 1)[0] + "/" + name
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    import psycopg

    admin = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        import logging

        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connections

        from riskengine.simulate import report_table

        logging.getLogger().setLevel(logging.ERROR)
        call_command("migrate", verbosity=0)
        for seed in args.seeds:
            print(report_table(month_on_fresh_database(seed=seed, orders=args.orders)), flush=True)
        connections.close_all()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
