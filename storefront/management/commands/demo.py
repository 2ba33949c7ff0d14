"""`make demo`: migrate the SQLite file, seed, start localstripe and the fake PayPal, print how to use them, serve.

localstripe is a child process, so it is stopped however the command ends: Ctrl-C, SIGTERM, SIGHUP (the
terminal closed) or an exception. Without that a SIGTERM left it on its port and the next `make demo` failed.
"""

import contextlib
import os
import signal
import socket

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from devtools.localstripe_process import localstripe_start
from payments.models import PaymentChannel
from storefront.management.commands.seed_demo import MERCHANT_LOGIN, REVIEWER_LOGIN

PAYPAL_DEMO_PORT = 8421
# The cards localstripe knows (Stripe's test numbers); the README promises the same three.
DEMO_CARDS = [
    ("4242 4242 4242 4242", "pays"),
    ("4000 0025 0000 3155", "asks for 3-D Secure (confirm or fail it in the dialog)"),
    ("4000 0000 0000 0341", "is declined"),
]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _port_in_use(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (a socket left in TIME_WAIT does not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as runserver and localstripe bind
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops the children


@contextlib.contextmanager
def _stopped_on_any_exit():
    """An ExitStack for the children's stop callbacks, run on every way out, SIGTERM and SIGHUP included.

    Those two end a Python process without unwinding it; here they raise SystemExit instead. While the
    children are being stopped, further signals are ignored so a second Ctrl-C cannot cut that short.
    """
    previous = {signal.SIGINT: signal.getsignal(signal.SIGINT)}
    previous |= {signum: signal.signal(signum, _exit_on_signal) for signum in STOP_SIGNALS}
    try:
        with contextlib.ExitStack() as children:
            try:
                yield children
            finally:
                for signum in (*STOP_SIGNALS, signal.SIGINT):
                    signal.signal(signum, signal.SIG_IGN)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Command(BaseCommand):
    help = "Migrate, seed, start localstripe and a fake PayPal with the shop's webhooks, and serve the demo shop."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="the shop's port (default 8000)")
        parser.add_argument(
            "--stripe-port", type=int, default=None, help="localstripe's port (default: STRIPE_API_BASE's, 8420)"
        )
        parser.add_argument(
            "--paypal-port",
            type=int,
            default=PAYPAL_DEMO_PORT,
            help=f"the fake PayPal's port (default {PAYPAL_DEMO_PORT})",
        )
        parser.add_argument("--no-paypal", action="store_true", help="offer the card only")

    def handle(self, *args, port: int, stripe_port: int | None, paypal_port: int, no_paypal: bool, **options):
        if not settings.DEBUG or not settings.STRIPE_API_BASE.startswith("http://127.0.0.1:"):
            raise CommandError(
                "The demo runs with its own settings: unset DJANGO_SETTINGS_MODULE (manage.py demo picks "
                "storefront.settings_demo) or set it to storefront.settings_demo."
            )
        stripe_port = stripe_port or int(settings.STRIPE_API_BASE.rsplit(":", 1)[1])
        busy = [f"{p} ({what})" for what, p in (("the shop", port), ("localstripe", stripe_port)) if _port_in_use(p)]
        if busy:  # checked first: runserver ends the process with os._exit on a busy port, skipping every cleanup
            raise CommandError(
                f"In use on 127.0.0.1: port {' and '.join(busy)}. Is another demo still running? "
                "Stop it, or choose other ports with --port and --stripe-port."
            )
        with _stopped_on_any_exit() as children:
            self._run(children, port=port, stripe_port=stripe_port, paypal_port=None if no_paypal else paypal_port)

    def _run(self, children: contextlib.ExitStack, *, port: int, stripe_port: int, paypal_port: int | None) -> None:
        shop = f"http://127.0.0.1:{port}"
        settings.SITE_URL = shop  # links in emails and PayPal's return address
        call_command("migrate", interactive=False, verbosity=0)
        call_command("seed_demo")
        cache = settings.CACHE_DIR
        cache.mkdir(parents=True, exist_ok=True)
        try:
            stripe = localstripe_start(
                port=stripe_port,
                state_dir=str(cache / "localstripe"),
                webhook_url=f"{shop}/payments/stripe/webhook/",
                webhook_secret=settings.STRIPE_WEBHOOK_SECRET,
                log_path=cache / "localstripe.log",
            )
        except RuntimeError as exc:
            raise CommandError(f"{exc}. Is something else using port {stripe_port}?") from exc
        children.callback(stripe.stop)
        settings.STRIPE_API_BASE = stripe.url  # the pay page loads localstripe's Stripe.js from here too
        settings.STRIPE_JS_URL = f"{stripe.url}/js.stripe.com/v3/"
        paypal = None if paypal_port is None else self._start_fake_paypal(port, paypal_port)
        if paypal is not None:
            children.callback(paypal.stop)
        self._print_banner(shop, stripe_url=stripe.url, paypal_url=paypal.url if paypal else "")
        call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)

    def _print_banner(self, shop: str, *, stripe_url: str, paypal_url: str) -> None:
        write = self.stdout.write
        write(self.style.SUCCESS(f"\nShop:    {shop}/"))
        write(f"Admin:   {shop}/admin/   {MERCHANT_LOGIN[0]} / {MERCHANT_LOGIN[1]}  (the merchant)")
        write(f"Review:  {shop}/review/  {REVIEWER_LOGIN[0]} / {REVIEWER_LOGIN[1]}  (the risk review queue)")
        write(f"API:     {shop}/api/docs/")
        for index, (number, what) in enumerate(DEMO_CARDS):
            write(f"{'Cards:' if index == 0 else '':<9}{number}  {what}")
        write(f"{'':<9}any future expiry, any CVC, any postal code")
        write(f"Stripe:  localstripe at {stripe_url}")
        if paypal_url:
            write(f"PayPal:  the test suite's fake PayPal at {paypal_url} (approve on its own page)")
        write("Emails:  printed here, below")
        write("Stop:    Ctrl-C (localstripe and the fake PayPal stop with the shop)\n")

    def _start_fake_paypal(self, port: int, paypal_port: int):
        """The project's fake PayPal (devtools/paypal_fake.py), trusted for webhooks in this process only."""
        try:
            from devtools.paypal_fake import paypal_fake_start
        except ImportError:  # a tree without the tests (a deployment image): card only
            self.stdout.write("PayPal: devtools/paypal_fake.py is not here; the demo offers the card only.")
            return None

        try:
            fake = paypal_fake_start(webhook_id="WH-DEMO", port=paypal_port)
        except OSError as exc:
            self.stdout.write(f"PayPal: port {paypal_port} is busy ({exc}); the demo offers the card only.")
            return None
        trust = settings.CACHE_DIR / "paypal-fake-ca.pem"
        trust.write_bytes(fake.ca_pem)
        settings.PAYPAL_CERT_HOSTS = [*settings.PAYPAL_CERT_HOSTS, "127.0.0.1"]
        settings.PAYPAL_CERT_ALLOW_HTTP = True
        settings.PAYPAL_CERT_TRUST = str(trust)
        os.environ.update(
            PAYPAL_DEMO_CLIENT_ID=fake.client_id,
            PAYPAL_DEMO_CLIENT_SECRET=fake.client_secret,
            PAYPAL_DEMO_WEBHOOK_ID=fake.webhook_id,
        )
        PaymentChannel.objects.filter(code="paypal").update(
            enabled=True,
            api_base=fake.url,
            public_key_env="PAYPAL_DEMO_CLIENT_ID",
            secret_env="PAYPAL_DEMO_CLIENT_SECRET",
            webhook_env="PAYPAL_DEMO_WEBHOOK_ID",
        )
        fake.register_webhook(f"http://127.0.0.1:{port}/payments/webhook/paypal/")
        return fake
