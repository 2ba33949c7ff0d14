"""`python manage.py worker_health`: exit 0 when a Celery worker answers a ping, 1 when none does.

For a container's or a process manager's health check of the worker: by default only the worker named
celery@<this host> counts (Celery's default name), so each worker container checks itself; `--any` accepts
any worker on the broker, `--destination` names others.
"""

import socket

from django.core.management.base import BaseCommand, CommandError

from storefront.health import celery_workers_answering


class Command(BaseCommand):
    help = "Exit 0 if a Celery worker answers a ping (this host's, unless told otherwise), else 1."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=5.0, help="Seconds to wait for answers (default 5).")
        who = parser.add_mutually_exclusive_group()
        who.add_argument("--any", action="store_true", dest="any_worker", help="Any worker on the broker will do.")
        who.add_argument("--destination", action="append", help="A worker's name (repeatable).")

    def handle(self, *args, timeout: float, any_worker: bool, destination: list[str] | None, **options):
        if not any_worker and not destination:
            destination = [f"celery@{socket.gethostname()}"]
        try:
            answering = celery_workers_answering(destination=None if any_worker else destination, timeout=timeout)
        except Exception as exc:  # the broker itself cannot be reached: the worker is not healthy either
            raise CommandError(f"no answer: the broker could not be reached ({type(exc).__name__})") from None
        if not answering:
            raise CommandError(f"no worker answered within {timeout:g} s: {', '.join(destination or ['any'])}")
        self.stdout.write(f"answering: {', '.join(answering)}")
