import os

import redis
from celery import Celery
from kombu.transport import redis as kombu_redis

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
