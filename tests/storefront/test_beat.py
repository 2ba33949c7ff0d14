"""Two beats (two nodes, or a restart overlapping the old process) never send a scheduled job twice.

Each beat here is what `celery -A storefront beat` builds, the scheduler the settings name, against the real Redis:
it starts as a beat starts (`beat_init`, where celery-redbeat takes its lock) in a thread of its own, and then
ticks as its loop would, through a clock time-machine moves a second at a time. Every job it sends is a real
message on a queue of the test's own in Redis, read back with the clock time it was sent at.
"""

import json
import queue
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import redis
import time_machine
from celery import Celery
from celery.beat import Service
from celery.signals import beat_init
from django.conf import settings

from storefront.celery import redbeat_settings_restate

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WINDOW = 600  # seconds of schedule each beat is ticked through


class Beat:
    """One beat process in a thread of its own, as `celery beat` runs: the scheduler is built and `beat_init` sent
    (celery-redbeat takes the lock there, or waits for it), then each tick the test asks for runs in that thread."""

    def __init__(self, app: Celery) -> None:
        self.service = Service(app=app, scheduler_cls=app.conf.beat_scheduler)
        self.built, self.started, self.stopped = threading.Event(), threading.Event(), threading.Event()
        self._commands: queue.Queue[str] = queue.Queue()
        self._answers: queue.Queue[BaseException | None] = queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()
        assert self.built.wait(30)

    def _run(self) -> None:
        self.service.scheduler  # noqa: B018 (Service.start builds it first: the schedule is stored in Redis)
        self.built.set()
        beat_init.send(sender=self.service)
        self.started.set()
        while not self.stopped.is_set():
            command = self._commands.get()
            try:
                if command == "tick":
                    self.service.scheduler.tick()
                else:
                    self.service.sync()  # what beat does on SIGTERM: close the scheduler, releasing the lock
                    self.stopped.set()
            except BaseException as exc:  # handed to the test's thread
                self._answers.put(exc)
            else:
                self._answers.put(None)

    def _ask(self, command: str) -> None:
        self._commands.put(command)
        failure = self._answers.get(timeout=30)
        if failure is not None:
            raise failure

    def tick(self) -> None:
        """A tick, if this beat is past its start (holds the lock) and still running."""
        if self.started.is_set() and not self.stopped.is_set():
            self._ask("tick")

    def stop(self) -> None:
        self._ask("stop")


@pytest.fixture
def beat_app():
    """The shop's Celery configuration, sending to a queue and keeping its schedule under keys of this test only."""
    run = uuid.uuid4().hex[:12]
    apps = []

    def make() -> Celery:
        app = Celery(f"beat-test-{run}", set_as_current=False)
        app.config_from_object("django.conf:settings", namespace="CELERY")
        app.on_after_configure.connect(redbeat_settings_restate)
        app.conf.update(
            task_always_eager=False,
            task_default_queue=f"beat-test-{run}",
            redbeat_key_prefix=f"beat-test-{run}:",
            beat_max_loop_interval=0.2,  # how often a waiting beat asks for the lock again (real seconds)
        )
        apps.append(app)
        return app

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield make
    for key in client.scan_iter(f"beat-test-{run}*"):
        client.delete(key)
    for app in apps:
        app.close()


def drain(client: redis.Redis, queue_name: str, now: datetime, sent: dict[str, list[datetime]]) -> None:
    """Take every message off the queue, noting the task each one asks for and the clock time it was sent at."""
    while (raw := client.rpop(queue_name)) is not None:
        sent[json.loads(raw)["headers"]["task"]].append(now)


def run_clock(traveller, beats: list[Beat], client, queue_name, sent, *, seconds: int) -> None:
    for _ in range(seconds):
        traveller.shift(timedelta(seconds=1))
        for beat in beats:
            beat.tick()
        drain(client, queue_name, datetime.now(UTC), sent)


def assert_each_job_sent_once_per_interval(sent: dict[str, list[datetime]], *, seconds: int) -> None:
    """Every job of the shop's schedule went out at the end of each of its intervals since START, and at no other time
    (a job sent twice shows as a repeated time, one skipped as a missing one)."""
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        if not isinstance(entry["schedule"], timedelta):  # a crontab: at least never twice at one moment
            times = sent.get(entry["task"], [])
            assert len(set(times)) == len(times), entry["task"]
            continue
        every = int(entry["schedule"].total_seconds())
        expected = [START + timedelta(seconds=every * n) for n in range(1, seconds // every + 1)]
        times = sent.get(entry["task"], [])
        assert times == expected, f"{entry['task']} every {every} s: sent {len(times)} times, expected {len(expected)}"


@pytest.mark.django_db
def test_two_beats_started_together_send_each_job_once(beat_app):
    assert settings.CELERY_BEAT_SCHEDULER == "redbeat.RedBeatScheduler"
    first_app, second_app = beat_app(), beat_app()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue_name = first_app.conf.task_default_queue
    sent: dict[str, list[datetime]] = defaultdict(list)

    with time_machine.travel(START, tick=False) as traveller:
        # Given two beats started on two nodes against the same Redis
        first = Beat(first_app)
        assert first.started.wait(10)
        second = Beat(second_app)

        # When both tick through ten minutes of schedule
        run_clock(traveller, [first, second], client, queue_name, sent, seconds=WINDOW)

        # Then the second waited for the lock the whole time, and every job went out exactly once per interval
        assert not second.started.is_set()
        assert_each_job_sent_once_per_interval(sent, seconds=WINDOW)
        first.stop()
        assert second.started.wait(10)  # (let the waiting beat go before the keys are cleaned up)
        second.stop()


@pytest.mark.django_db
def test_when_the_beat_holding_the_lock_stops_the_other_carries_on_the_same_schedule(beat_app):
    first_app, second_app = beat_app(), beat_app()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queue_name = first_app.conf.task_default_queue
    sent: dict[str, list[datetime]] = defaultdict(list)

    with time_machine.travel(START, tick=False) as traveller:
        first = Beat(first_app)
        assert first.started.wait(10)
        second = Beat(second_app)
        run_clock(traveller, [first, second], client, queue_name, sent, seconds=WINDOW // 2)

        # When the first beat stops (a deploy, its node drained), the waiting one takes the lock
        first.stop()
        assert second.started.wait(10)
        run_clock(traveller, [first, second], client, queue_name, sent, seconds=WINDOW // 2)

        # Then the schedule went on where it was: no job sent again early, none skipped
        assert_each_job_sent_once_per_interval(sent, seconds=WINDOW)
        second.stop()
