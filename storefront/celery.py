import os

import redis
from celery import Celery
from celery.signals import task_postrun, task_prerun
from django.db import connections
from kombu.transport import redis as kombu_redis

from storefront.logs import celery_log_context_connect

os.environ["DJANGO_SETTINGS_MODULE"] = os.environ.get("DJANGO_SETTINGS_MODULE") or "storefront.settings"


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, minus a crash that took the worker down for good when Redis died under load.

    When the consumer loses Redis it closes its connection twice (Connection.collect, then close). If the first
    pass stops early (the task channel's BRPOP in flight, the control channel's auto-delete queue unreachable),
    the second finds the transport already detached and, restoring the unacknowledged tasks, reads
    `conninfo.hostname` off None: an AttributeError that Celery does not treat as a connection error, so the
    worker exits with "Unrecoverable error" (kombu 5.7; cf. celery/kombu#582). Raising the connection error it
    really is lets the consumer reconnect. The unacknowledged tasks stay in Redis's unacked set (redelivered
    after the visibility timeout), or were lost with an empty Redis: the sweepers re-enqueue that work.
    """

    def _connparams(self, asynchronous=False):
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.exceptions.ConnectionError("the broker connection was closed; reconnecting")
        return super()._connparams(asynchronous=asynchronous)


class RedisTransport(kombu_redis.Transport):
    """The broker transport when REDIS_URL is set (CELERY_BROKER_TRANSPORT): kombu's, with RedisChannel."""

    Channel = RedisChannel


app = Celery("storefront")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # each app's tasks module
app.autodiscover_tasks(["storefront.flow"], related_name="tasks")  # the flow layer's tasks and beat jobs
app.autodiscover_tasks(["storefront.flow"], related_name="jobs")
celery_log_context_connect()  # a task logs the request id and order of the request that queued it


def redbeat_settings_restate(sender: Celery, **kwargs) -> None:
    """celery-redbeat tells a setting it was given from one it falls back for by the bare name (`redbeat_*`), which
    the CELERY_ namespace hides: restated here, its Redis options reach its client and it warns of no fallback."""
    for name in ("redbeat_redis_url", "redbeat_redis_options", "redbeat_key_prefix", "redbeat_lock_timeout"):
        sender.conf[name] = sender.conf[name]


app.on_after_configure.connect(redbeat_settings_restate)


@task_prerun.connect
@task_postrun.connect
def _database_connections_as_a_request_has_them(task=None, **kwargs) -> None:
    """Keep the worker's database connection between tasks, as gunicorn keeps its own between requests: closed
    only when it errored and no longer answers, or reached CONN_MAX_AGE (its health checked again before the next
    query, CONN_HEALTH_CHECKS). Celery would otherwise open a new PostgreSQL connection for every task; its own
    closing is switched off by CELERY_DB_REUSE_MAX (settings)."""
    if task is None or getattr(task.request, "is_eager", False):
        return  # run inside the caller's own request or transaction (eager): its connection is not ours to close
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
