"""Tasks of the project package: the shopper's sign-in link (storefront.accounts), made and mailed by the worker."""

from smtplib import SMTPException

from celery import shared_task

from storefront.accounts import sign_in_link_send


@shared_task(
    autoretry_for=(SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
    acks_late=True,
)
def send_sign_in_link(email: str, locale: str) -> None:
    """Mail a new sign-in link to the address (nothing for staff, or past the per-address limit). The token is
    made here and never leaves the worker but in the email: not in the broker, a result or a log line."""
    sign_in_link_send(email=email, locale=locale)
