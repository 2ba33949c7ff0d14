from celery import shared_task

from payments.health import call_log_flush


@shared_task
def flush_provider_calls() -> int:
    """Beat job, every few seconds: the provider calls' audit rows queued in Redis, written in bulk."""
    return call_log_flush()
