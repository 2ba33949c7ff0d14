"""docs/benchmarks.md, written by `make bench` from the figures it just measured."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PATH = ROOT / "docs" / "benchmarks.md"

FAULTS = {
    "worker_killed": "Celery worker killed with SIGKILL mid-delivery, then restarted",
    "redis_restarted": "Redis (broker, cache, velocity counters) stopped while webhooks arrive, then restarted empty",
    "redis_killed": "Redis killed with SIGKILL mid-burst, back empty 2 s later; beat's sweeper and the worker alone",
    "database_connections_dropped": "every PostgreSQL connection of the shop terminated, twice, during the run",
    "provider_timeouts": "Stripe stops answering (the charge fetch of each webhook times out)",
    "webhooks_twice_out_of_order": "every webhook (a failure and a success per order) delivered twice, shuffled",
}


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


STAGES = ("checkout", "webhook", "deliver_task", "email_task")


def _stage_rows(cost: dict) -> list[str]:
    rows = ["| stage | CPU | SQL statements | transactions | Redis commands |", "|---|---|---|---|---|"]
    for stage, c in [*((s, cost["stages"][s]) for s in STAGES), ("total", cost["total"])]:
        rows.append(
            f"| {stage} | {_ms(c['cpu_ms'])} | {c['statements']:.1f} | {c['transactions']:.1f} | "
            f"{c['redis_commands']:.0f} |"
        )
    return rows


def _order_cost(figures: dict) -> list[str]:
    to_key, scaled = figures["to_key"], figures["at_scale_to_key"]
    claim, view = figures["ceiling_claim"], figures["ceiling_view"]
    return [
        "",
        "## One paid order (in process)",
        "",
        "Checkout through the API (order, keys held, payment opened at localstripe), the signed webhook (charge",
        "fetched, risk scored, key delivered), the tasks left (only the email). CPU of this process, its",
        "PostgreSQL backend, Redis and localstripe; statements and transactions counted on the connection",
        f"(`tests/load/order_cost.py`); mean of {figures['cost']['orders']} orders.",
        "",
        *_stage_rows(figures["cost"]),
        "",
        f"Checkout to key delivered and email queued: **{to_key['statements']:.1f} SQL statements** (ceiling 25), "
        f"**{_ms(to_key['cpu_ms'])} CPU** (ceiling 60 ms), {to_key['transactions']:.1f} transactions.",
        f"Floors measured in the same run: a SKIP LOCKED key claim in plain SQL {_ms(claim['cpu_ms'])} CPU; a bare",
        f"one-query Django view {_ms(view['cpu_ms'])} CPU. A paid order costs {to_key['cpu_ms'] / view['cpu_ms']:.0f}"
        " bare views.",
        "",
        "The same with 100,000 keys in stock and a million provider calls in the health window:",
        "",
        *_stage_rows(figures["at_scale"]),
        "",
        f"Checkout to key delivered at scale: {scaled['statements']:.1f} statements, {_ms(scaled['cpu_ms'])} CPU "
        f"({100 * (scaled['cpu_ms'] / to_key['cpu_ms'] - 1):+.0f}% CPU; nothing on the hot path grows with the data).",
    ]


def _stack_cost(load: dict) -> list[str]:
    lines = []
    cost = load.get("stack_cost")
    if cost:
        by_process = ", ".join(f"{name} {_ms(ms)}" for name, ms in cost["by_process_ms"].items())
        lines += [
            "",
            f"One paid order at a time ({cost['orders']} orders), every process of the stack counted from /proc:",
            f"**{_ms(cost['cpu_ms'])} CPU** from checkout to key delivered and email queued, "
            f"{_ms(cost['cpu_ms_with_email'])} with the email sent ({by_process}; localstripe's share includes",
            "the shopper's own confirmation).",
        ]
    nodes = load.get("two_nodes")
    if nodes:
        lines += [
            "",
            f"Two nodes (a second gunicorn and worker on the same PostgreSQL and Redis): {nodes['orders']} orders,"
            f" {nodes['webhooks']} webhooks spread over both (a fifth sent to both), "
            f"{nodes['orders_per_s']:.0f} orders/s, {nodes['statuses']}, {nodes['emails']} emails. "
            "Exactly once: passed.",
        ]
    return lines


def _bare_view(load: dict) -> list[str]:
    bare = load.get("bare_view")
    if not bare:
        return []
    page = load["product_page"]
    return [
        f"The ceiling beside it, the same client against a bare one-query Django view on a second gunicorn of the "
        f"same shape, settings and middleware (`tests/load/bare_settings.py`): {bare['requests_per_s']:.0f} "
        f"requests/s, p50 {_ms(bare['p50_ms'])}; the product page runs at "
        f"{page['requests_per_s'] / bare['requests_per_s']:.0%} of it. Both share the two cores with the Python load "
        "generator.",
    ]


def write_report(results: dict) -> Path:
    lines = [
        "# Benchmarks",
        "",
        f"Measured {results['when']} by `make bench` on {results['machine']}. Regenerated on every run;",
        "figures vary 5-20% from run to run on a shared 2-core machine. The load generator runs on the same",
        "machine as the shop, so every throughput below is shared with the client's own CPU use.",
        "",
        "Only the exactly-once checks are pass/fail: each run below ends with one, and `make bench` stops with",
        "the reason if it fails (every paid order delivered once, or honestly waiting: for stock, or held by the",
        "risk engine for review; no key in two order lines, every key sold once in the audit trail, one",
        "successful payment per order).",
        "",
    ]
    load = results.get("load")
    if load:
        lines += [
            "## The real stack",
            "",
            "gunicorn (2 workers x 4 threads, production settings), one Celery worker (2 processes) on Redis,",
            "PostgreSQL, localstripe. A webhook is signed and POSTed to gunicorn (redelivered on any non-2xx, as",
            "Stripe does); the shop fetches the charge from localstripe, scores risk and delivers in the same",
            "transaction; the worker sends the email. Latency is from the webhook POST until the key comes back",
            "from the order's reveal API.",
            "",
            "| shoppers at once | orders | orders/s | p50 | p99 |",
            "|---|---|---|---|---|",
        ]
        for level, row in load["pipeline"].items():
            p50, p99 = _ms(row["p50_ms"]), _ms(row["p99_ms"])
            lines.append(f"| {level} | {row['orders']} | {row['orders_per_s']:.1f} | {p50} | {p99} |")
        lines += _stack_cost(load)
        page = load["product_page"]
        lines += [
            "",
            f"Product page, {page['clients']} concurrent clients for 10 s: "
            f"**{page['requests_per_s']:.0f} requests/s**, "
            f"p50 {_ms(page['p50_ms'])}, p99 {_ms(page['p99_ms'])}, {page['errors']} errors.",
            *_bare_view(load),
            "",
            "## Contention",
            "",
        ]
        c = load["contention"]
        lines += [
            f"{c['buyers']} buyers paid at once (32 concurrent webhooks) for the last {c['keys']} keys of one product:",
            f"{c['statuses'].get('fulfilled', 0)} delivered, {c['statuses'].get('awaiting_stock', 0)} awaiting stock,"
            f" {c['check']['keys_sold']} distinct keys sold, in {c['seconds']:.1f} s. Exactly once: passed.",
            "",
            "## Faults",
            "",
            "| fault | orders | outcome | exactly once |",
            "|---|---|---|---|",
        ]
        for name, result in load["faults"].items():
            extra = []
            if "recovery_s" in result:
                extra.append(
                    f"Redis back to last order delivered {result['recovery_s']:.1f} s, worker {result['worker']}, "
                    f"{result['paid_before_kill']} paid before the kill"
                )
            if "delivered_before_kill" in result:
                extra.append(f"{result['delivered_before_kill']} delivered before the kill")
            if "connections_dropped" in result:
                extra.append(f"{result['connections_dropped']} connections terminated")
            if "webhook_attempts" in result:
                extra.append(f"{result['webhook_attempts']} webhook deliveries needed")
            if "fetch_timeouts" in result:
                extra.append(f"{result['fetch_timeouts']} provider timeouts recorded, {result['seconds']:.1f} s")
            if "webhooks" in result:
                extra.append(f"{result['webhooks']} webhooks")
            statuses = ", ".join(f"{n} {status}" for status, n in sorted(result["statuses"].items()))
            outcome = statuses + (f" ({'; '.join(extra)})" if extra else "")
            lines.append(f"| {FAULTS[name]} | {result['orders']} | {outcome} | passed |")
    renewals = results.get("renewals")
    if renewals:
        lines += [
            "## Subscription renewals",
            "",
            f"{renewals['subscriptions']:,} monthly subscriptions due at the same minute; the sweep claims them in "
            f"rounds of 1,000 and {renewals['workers']} workers renew them (a saved card charged off-session at "
            "localstripe, the renewal order scored and delivered): "
            f"**{renewals['renewals_per_s']:.1f} renewals/s**, {renewals['seconds']:.0f} s in all, "
            f"claimed and handed out in {renewals['sweep_s']:.1f} s. Every one renewed once: one paid order and one "
            "successful payment per subscription, none left due (`tests/load/renewals.py`).",
            "",
        ]
    inprocess = results.get("inprocess")
    if inprocess and "order_cost" in inprocess:
        lines += _order_cost(inprocess["order_cost"])
    if inprocess:
        imported, webhook, risk = inprocess["import"], inprocess["webhook"], inprocess["risk"]
        lines += [
            "",
            "## In process (no HTTP server; Celery eager)",
            "",
            f"- Key import: **{imported['keys_per_s']:.0f} keys/s** ({imported['keys']} keys in "
            f"{imported['seconds']:.1f} s), duplicates found by fingerprint.",
            f"- Webhook to key visible, sequential, through Django's test client: p50 {_ms(webhook['p50_ms'])}, "
            f"p99 {_ms(webhook['p99_ms'])} ({webhook['orders']} orders).",
        ]
        for row in inprocess["claims"]:
            what = "whole paid-order deliveries" if row["full"] else "key claims alone"
            lines.append(
                f"- {what}, {row['buyers']} threads, {row['products']} product(s): {row['keys_per_s']:.0f}/s "
                f"({row['orders']} in {row['seconds']:.1f} s)."
            )
        r, d, h = risk["redis"], risk["database"], risk["hung"]
        lines += [
            "",
            f"Risk scoring, `risk_assess_order` with {risk['rules']} active rules over {risk['history_orders']} past "
            "orders, stored with its reasons and committed:",
            "",
            "| Redis | orders | p50 | p99 | evaluation alone p50 / p99 |",
            "|---|---|---|---|---|",
            f"| up | {r['orders']} | {_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | "
            f"{_ms(r['evaluate']['p50_ms'])} / {_ms(r['evaluate']['p99_ms'])} |",
            f"| refusing (counts from PostgreSQL) | {d['orders']} | {_ms(d['p50_ms'])} | {_ms(d['p99_ms'])} | "
            f"{_ms(d['evaluate']['p50_ms'])} / {_ms(d['evaluate']['p99_ms'])} |",
            f"| hung (50 ms timeouts, then the breaker) | {h['orders']} | {_ms(h['p50_ms'])} | {_ms(h['p99_ms'])} | |",
        ]
    PATH.parent.mkdir(exist_ok=True)
    PATH.write_text("\n".join(lines) + "\n")
    return PATH
