import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from payments.localstripe_process import localstripe_start

PAYPAL_DEMO_PORT = 8421


class Command(BaseCommand):
    help = "Migrate, seed, start localstripe and a fake PayPal with the shop's webhooks, and serve the demo shop."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-paypal", action="store_true", help="offer the card only")

    def handle(self, *args, port: int, no_paypal: bool, **options):
        if not settings.STRIPE_API_BASE.startswith("http://127.0.0.1:"):
            raise CommandError("The demo talks to a local localstripe; unset STRIPE_SECRET_KEY/STRIPE_API_BASE.")
        stripe_port = int(settings.STRIPE_API_BASE.rsplit(":", 1)[1])
        settings.SITE_URL = f"http://127.0.0.1:{port}"  # links in emails and PayPal's return address
        call_command("migrate", interactive=False, verbosity=0)
        call_command("seed_demo")
        cache = settings.CACHE_DIR
        cache.mkdir(exist_ok=True)
        try:
            stripe = localstripe_start(
                port=stripe_port,
                state_dir=str(cache / "localstripe"),
                webhook_url=f"http://127.0.0.1:{port}/payments/stripe/webhook/",
                webhook_secret=settings.STRIPE_WEBHOOK_SECRET,
                log_path=cache / "localstripe.log",
            )
        except RuntimeError as exc:
            raise CommandError(f"{exc}. Is something else using port {stripe_port}?") from exc
        paypal = None if no_paypal else self._start_fake_paypal(port)
        self.stdout.write(self.style.SUCCESS(f"\nShop:   http://127.0.0.1:{port}/"))
        self.stdout.write(f"Admin:  http://127.0.0.1:{port}/admin/  (merchant / merchant-demo-pass)")
        self.stdout.write(f"API:    http://127.0.0.1:{port}/api/docs/")
        self.stdout.write(f"Stripe: localstripe at {stripe.url} (test card 4242 4242 4242 4242)")
        if paypal is not None:
            self.stdout.write(f"PayPal: the test suite's fake PayPal at {paypal.url} (approve on its own page)\n")
        try:
            call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)
        finally:
            stripe.stop()
            if paypal is not None:
                paypal.stop()

    def _start_fake_paypal(self, port: int):
        """The project's fake PayPal (tests/paypal_fake.py), trusted for webhooks in this process only."""
        try:
            from tests.paypal_fake import paypal_fake_start
        except ImportError:  # a tree without the tests (a deployment image): card only
            self.stdout.write("PayPal: tests/paypal_fake.py is not here; the demo offers the card only.")
            return None
        from payments.models import PaymentChannel

        try:
            fake = paypal_fake_start(webhook_id="WH-DEMO", port=PAYPAL_DEMO_PORT)
        except OSError as exc:
            self.stdout.write(f"PayPal: port {PAYPAL_DEMO_PORT} is busy ({exc}); the demo offers the card only.")
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
