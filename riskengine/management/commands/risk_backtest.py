from django.core.management.base import BaseCommand, CommandError

from riskengine.backtest import backtest_run
from riskengine.models import RiskRule


class Command(BaseCommand):
    help = (
        "Replay the paid orders of the last N days through the current rules and show which decisions "
        "would change. Read-only. Velocity rules read today's counters, not those at the time of each order."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=30, help="How far back to replay (default 30).")
        parser.add_argument(
            "--rule",
            dest="rules",
            action="append",
            metavar="NAME",
            help="Use only this rule (repeatable; enabled or not). Default: every enabled rule.",
        )
        parser.add_argument(
            "--active-only",
            action="store_true",
            help="Let shadow rules stay shadow (evaluated, never deciding). Default: count them as active.",
        )

    def handle(self, *args, days: int, rules: list[str] | None, active_only: bool, **options):
        if days < 1:
            raise CommandError("--days must be at least 1.")
        chosen = None
        if rules:
            found = {rule.name: rule for rule in RiskRule.objects.filter(name__in=rules)}
            unknown = [name for name in rules if name not in found]
            if unknown:
                raise CommandError(f"No rule named: {', '.join(unknown)}")
            chosen = [found[name] for name in dict.fromkeys(rules)]
        report = backtest_run(days=days, rules=chosen, treat_shadow_as_active=not active_only)

        which = f"{len(chosen)} chosen rule(s): {', '.join(r.name for r in chosen)}" if chosen else "all enabled rules"
        shadow = "shadow rules stay shadow" if active_only else "shadow rules counted as active"
        out = self.stdout
        out.write(f"Risk backtest: {report.orders} paid order(s) from the last {days} day(s), {which} ({shadow}).")
        out.write("Velocity rules read today's counters, not those at the time of each order.\n")
        out.write(f"{'decision':<10}{'before':>8}{'after':>8}{'change':>8}")
        for decision, before in report.counts_before.items():
            after = report.counts_after[decision]
            out.write(f"{decision:<10}{before:>8}{after:>8}{after - before:>+8}")
        if not report.changed:
            out.write("\nNo decision would change.")
            return
        out.write(f"\n{len(report.changed)} order(s) would be decided differently:")
        out.write(f"{'order':<14}{'before':<9}{'after':<9}score")
        for number, before, after, before_score, after_score in report.changed:
            out.write(f"{number:<14}{before:<9}{after:<9}{before_score} -> {after_score}")
