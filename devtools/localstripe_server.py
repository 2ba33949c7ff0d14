"""Run localstripe (a stateful fake Stripe) on 127.0.0.1 with its state where we choose.

localstripe itself binds every interface and keeps its state in /tmp; this wrapper binds
loopback only, keeps state in --state-dir (or in memory), and can register the shop's
webhook at start. Used by `make demo` and the test suite; never in production.

It also fills gaps of localstripe where Stripe's behaviour is documented and the shop depends on it
(see _fill_gaps): payment intents listed by `created` (reconciliation), `off_session` on confirm
(subscription renewals), the fee on a charge's balance transaction (Stripe's standard 2.9% + 30;
localstripe says 0), and disputes
(`/v1/disputes`, created by `POST /_config/disputes` with a signed `charge.dispute.created` webhook,
evidence submitted by `POST /v1/disputes/{id}`).

    python -m devtools.localstripe_server --port 8420 --state-dir .cache/localstripe \
        --webhook-url http://127.0.0.1:8000/payments/stripe/webhook/ --webhook-secret whsec_...
"""

import argparse
import logging
import pickle
import socket
import sys
from pathlib import Path


def _patch_store(state_file: Path | None) -> None:
    from localstripe import resources

    def dump_to_disk(self) -> None:
        if state_file is None:
            return
        tmp = state_file.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(dict(self), f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(state_file)

    def try_load_from_disk(self) -> None:
        if state_file is None or not state_file.exists():
            return
        with open(state_file, "rb") as f:
            old = pickle.load(f)
        self.clear()
        dict.update(self, old)

    resources.Store.dump_to_disk = dump_to_disk
    resources.Store.try_load_from_disk = try_load_from_disk


def _fill_gaps(app) -> None:
    from localstripe import resources
    from localstripe.errors import UserError
    from localstripe.resources import BalanceTransaction, Charge, PaymentIntent, StripeObject, try_convert_to_int
    from localstripe.server import api_extra, api_retrieve, get_post_data, json_response
    from localstripe.webhooks import schedule_webhook

    listed = PaymentIntent._api_list_all.__func__

    def list_intents(cls, url, created=None, limit=None, starting_after=None, **kwargs):
        since = None
        if isinstance(created, dict):
            since = try_convert_to_int(created.get("gte", created.get("gt")))
        elif created is not None:
            since = try_convert_to_int(created)
        result = listed(cls, url, limit=limit, starting_after=starting_after, **kwargs)
        if since is not None:
            result._list = [intent for intent in result._list if intent.created >= since]
        result._list.sort(key=lambda intent: intent.created, reverse=True)
        return result

    PaymentIntent._api_list_all = classmethod(list_intents)

    plain_init = BalanceTransaction.__init__

    def with_fee(self, *args, **kwargs):
        plain_init(self, *args, **kwargs)
        if self.type == "charge" and self.amount > 0:
            self.fee = round(self.amount * 0.029) + 30
            self.fee_details = [{"amount": self.fee, "currency": self.currency, "type": "stripe_fee"}]

    BalanceTransaction.__init__ = with_fee

    confirm = PaymentIntent._api_confirm.__func__

    def confirm_off_session(cls, id, off_session=None, **kwargs):
        """Stripe takes `off_session` on confirm (the shopper is away: a bank that wants them fails the payment
        as requires_action); localstripe refuses the parameter. Its outcome is the same here either way."""
        return confirm(cls, id, **kwargs)

    PaymentIntent._api_confirm = classmethod(confirm_off_session)
    for route in app.router.routes():  # the route holds the function it was made with
        if route.method == "POST" and route.resource.canonical == "/v1/payment_intents/{id}/confirm":
            route._handler = api_extra(PaymentIntent._api_confirm, route.resource.canonical)

    class Dispute(StripeObject):
        object = "dispute"
        _id_prefix = "dp_"

        def __init__(self, charge=None, amount=None, reason="fraudulent", **kwargs):
            charge_obj = Charge._api_retrieve(charge)
            super().__init__()
            self.charge = charge_obj.id
            self.payment_intent = charge_obj.payment_intent
            self.amount = try_convert_to_int(amount) or charge_obj.amount
            self.currency = charge_obj.currency
            self.reason = reason
            self.status = "needs_response"
            self.evidence = {}
            self.evidence_details = {
                "due_by": self.created + 7 * 24 * 3600,
                "has_evidence": False,
                "past_due": False,
                "submission_count": 0,
            }
            self.is_charge_refundable = False
            self.metadata = {}

        @classmethod
        def _api_update(cls, id, evidence=None, submit=None, metadata=None, **data):
            if data:
                raise UserError(400, "Unexpected " + ", ".join(data))
            dispute = cls._api_retrieve(id)
            if dispute.status not in ("needs_response", "warning_needs_response"):
                raise UserError(400, "This dispute is already closed or under review")
            dispute.evidence.update(evidence or {})
            dispute.evidence_details["has_evidence"] = bool(dispute.evidence)
            if str(submit).lower() == "true":
                dispute.status = "under_review"
                dispute.evidence_details["submission_count"] += 1
            return dispute

    resources.Dispute = Dispute
    Dispute.__module__, Dispute.__qualname__ = __name__, "Dispute"  # so a saved state can be pickled
    globals()["Dispute"] = Dispute

    async def update_dispute(request):
        data = await get_post_data(request) or {}
        return json_response(Dispute._api_update(request.match_info["id"], **data)._export())

    async def open_dispute(request):
        data = await get_post_data(request) or {}
        dispute = Dispute(**data)
        schedule_webhook(resources.Event("charge.dispute.created", dispute))
        return json_response(dispute._export())

    async def remove_webhook(request):
        """Stop sending events to a registered endpoint (localstripe can only add them): a test's own server
        stops with the test, and the next tests' events must not be posted at its port."""
        from localstripe import webhooks

        webhooks._webhooks.pop(request.match_info["id"], None)
        return json_response({"deleted": True})

    app.router.add_route("DELETE", "/_config/webhooks/{id}", remove_webhook)
    app.router.add_route("GET", "/v1/disputes/{id}", api_retrieve(Dispute, "/v1/disputes/{id}"))
    app.router.add_route("POST", "/v1/disputes/{id}", update_dispute)
    app.router.add_route("POST", "/_config/disputes", open_dispute)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420, help="0 picks a free port")
    parser.add_argument("--state-dir", default="", help="keep state here; empty keeps it in memory only")
    parser.add_argument("--from-scratch", action="store_true")
    parser.add_argument("--port-file", default="", help="write the bound port here once listening")
    parser.add_argument("--webhook-url", default="")
    parser.add_argument("--webhook-secret", default="")
    args = parser.parse_args(argv)

    state_file = None
    if args.state_dir:
        Path(args.state_dir).mkdir(parents=True, exist_ok=True)
        state_file = Path(args.state_dir) / "localstripe.pickle"
    _patch_store(state_file)

    from aiohttp import web
    from localstripe.resources import store
    from localstripe.server import app
    from localstripe.webhooks import register_webhook

    _fill_gaps(app)
    if not args.from_scratch:
        store.try_load_from_disk()
    if args.webhook_url:
        if not args.webhook_secret:
            parser.error("--webhook-url needs --webhook-secret")
        register_webhook("shop", args.webhook_url, args.webhook_secret, None)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sys.exit(f"localstripe: cannot bind {args.host}:{args.port}: {exc}")
    port = sock.getsockname()[1]
    if args.port_file:
        Path(args.port_file).write_text(str(port))
    logging.basicConfig(level=logging.WARNING)
    print(f"localstripe listening on http://{args.host}:{port}", flush=True)
    web.run_app(app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
