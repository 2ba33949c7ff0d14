from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from payments.localstripe_process import localstripe_start


class Command(BaseCommand):
    help = "Migrate, seed, start localstripe with the shop's webhook, and serve the demo shop."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, port: int, **options):
        if not settings.STRIPE_API_BASE.startswith("http://127.0.0.1:"):
            raise CommandError("The demo talks to a local localstripe; unset STRIPE_SECRET_KEY/STRIPE_API_BASE.")
        stripe_port = int(settings.STRIPE_API_BASE.rsplit(":", 1)[1])
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
        self.stdout.write(self.style.SUCCESS(f"\nShop:   http://127.0.0.1:{port}/"))
        self.stdout.write(f"Admin:  http://127.0.0.1:{port}/admin/  (merchant / merchant-demo-pass)")
        self.stdout.write(f"API:    http://127.0.0.1:{port}/api/docs/")
        self.stdout.write(f"Stripe: localstripe at {stripe.url} (test card 4242 4242 4242 4242)\n")
        try:
            call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)
        finally:
            stripe.stop()
