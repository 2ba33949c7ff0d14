"""Run localstripe (a stateful fake Stripe) on 127.0.0.1 with its state where we choose.

localstripe itself binds every interface and keeps its state in /tmp; this wrapper binds
loopback only, keeps state in --state-dir (or in memory), and can register the shop's
webhook at start. Used by `make demo` and the test suite; never in production.

    python -m payments.localstripe_server --port 8420 --state-dir .cache/localstripe \
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
