from datetime import datetime, time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from riskengine.backtest import backtest_compare, backtest_run, configuration_build, configuration_current
from riskengine.backtest_report import comparison_table, patterns_load
from riskengine.models import RiskRule, RuleMode

MODES = (RuleMode.ACTIVE.value, RuleMode.SHADOW.value, "off")


class Command(BaseCommand):
    help = (
        "Replay the paid orders of the last N days, each as of its payment (counters, lists and labels as they "
        "stood then), through the current rules and show which decisions would change; with --compare, replay "
        "the screens too and compare the current configuration with a proposed one against the labels. Read-only."
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
        compare = parser.add_argument_group("comparing with a proposed configuration")
        compare.add_argument("--compare", action="store_true", help="Current against proposed, with the figures.")
        compare.add_argument("--review-threshold", type=int, help="Proposed review threshold (default: current).")
        compare.add_argument("--decline-threshold", type=int, help="Proposed decline threshold (default: current).")
        compare.add_argument(
            "--mode", action="append", default=[], metavar="NAME=MODE", help="Proposed mode: active, shadow or off."
        )
        compare.add_argument("--points", action="append", default=[], metavar="NAME=N", help="Proposed points.")
        compare.add_argument("--shadow-as-active", action="store_true", help="The proposal's shadow rules decide.")
        compare.add_argument("--from", dest="start", help="Window start, YYYY-MM-DD (instead of --days).")
        compare.add_argument("--to", dest="end", help="Window end, YYYY-MM-DD, exclusive (default: now).")
        compare.add_argument("--patterns", help="JSON of order number -> pattern (a simulated month's).")

    def handle(self, *args, days: int, rules: list[str] | None, active_only: bool, compare: bool, **options):
        if days < 1:
            raise CommandError("--days must be at least 1.")
        if compare:
            self._compare(days=days, **options)
            return
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
        out.write("Each order is replayed as of its payment: counters, lists and labels as they stood then.\n")
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

    def _compare(self, *, days: int, **options) -> None:
        current = configuration_current()
        every = {rule.name: rule for rule in RiskRule.objects.order_by("name")}
        modes = _pairs(options["mode"], "--mode", every)
        points = _pairs(options["points"], "--points", every)
        bad_modes = [f"{name}={mode}" for name, mode in modes.items() if mode not in MODES]
        if bad_modes:
            raise CommandError(f"--mode takes {', '.join(MODES)}: {', '.join(bad_modes)}")
        proposed = []
        for name, rule in every.items():
            mode = modes.get(name, rule.mode if rule.enabled else "off")
            if mode == "off":
                continue
            copy = RiskRule(**{f.attname: getattr(rule, f.attname) for f in RiskRule._meta.concrete_fields})
            copy.mode = mode
            if name in points:
                if not points[name].isdigit() or not 0 <= int(points[name]) <= 100:
                    raise CommandError(f"--points for {name} must be a whole number from 0 to 100.")
                copy.points = int(points[name])
            proposed.append(copy)
        review = options["review_threshold"] or current.review_threshold
        decline = options["decline_threshold"] or current.decline_threshold
        if not 0 < review < decline <= 100:
            raise CommandError(f"Thresholds must satisfy 0 < review < decline <= 100 (got {review}, {decline}).")
        proposal = configuration_build(
            name="proposed",
            rules=proposed,
            review_threshold=review,
            decline_threshold=decline,
            shadow_as_active=options["shadow_as_active"],
        )
        try:
            patterns = patterns_load(options["patterns"]) if options["patterns"] else None
        except (OSError, ValueError) as exc:
            raise CommandError(f"--patterns: {exc}") from exc
        start, end = _day(options["start"], "--from"), _day(options["end"], "--to")
        comparison = backtest_compare(
            configurations=[current, proposal], days=days, start=start, end=end, patterns=patterns
        )
        self.stdout.write(comparison_table(comparison))


def _pairs(values: list[str], option: str, rules: dict) -> dict[str, str]:
    found = {}
    for value in values:
        name, sep, setting = value.rpartition("=")
        if not sep or not name:
            raise CommandError(f"{option} takes NAME=VALUE, not {value!r}.")
        if name not in rules:
            raise CommandError(f"No rule named: {name}")
        found[name] = setting.strip()
    return found


def _day(text: str | None, option: str) -> datetime | None:
    if not text:
        return None
    try:
        return timezone.make_aware(datetime.combine(datetime.strptime(text, "%Y-%m-%d").date(), time()))
    except ValueError as exc:
        raise CommandError(f"{option} takes a date as YYYY-MM-DD, not {text!r}.") from exc
