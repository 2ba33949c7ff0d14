"""The moment the risk engine's reads are taken at: now in production, an earlier one in the backtest.

Inside `with as_of(moment):` every read the rules make answers as it would have at that moment:
velocity is counted from PostgreSQL over the window ending then (never from Redis, which only knows now),
and lists, fraud labels, linked orders and the customer's history hold only what had arrived by then.
Outside one, `as_of_now()` is None and every read is the production read, unchanged.

What "had arrived by then" means, per kind of row (riskengine.velocity, config, selectors):
- an order counts from its checkout (created_at <= moment); its card only from its payment (paid_at <= moment),
  because the card is written on the order when the payment clears;
- a failed payment, a list entry and a fraud label count only when written strictly before the moment: the
  read happens first at that moment (the screen runs before its own attempt can fail; a declined order's
  own refund or dispute comes after its assessment).

Each block has a cache, so a count asked twice at one moment (two configurations compared) is counted once;
a backtest also passes one `shared` cache for its whole run, so what does not depend on the moment (the
timeline of fraud labels, the IP list entries) is loaded once.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from django.utils import timezone

T = TypeVar("T")


@dataclass(frozen=True)
class Moment:
    at: datetime
    cache: dict = field(default_factory=dict, compare=False, repr=False)  # this moment's reads
    shared: dict = field(default_factory=dict, compare=False, repr=False)  # what holds for every moment


_current: ContextVar[Moment | None] = ContextVar("riskengine_as_of", default=None)


@contextmanager
def as_of(moment: datetime, *, shared: dict | None = None) -> Iterator[datetime]:
    """Read as of `moment` (an aware datetime) inside the block; `shared` outlives it (one backtest run)."""
    if timezone.is_naive(moment):
        raise ValueError("as_of needs an aware datetime")
    token = _current.set(Moment(moment, {}, {} if shared is None else shared))
    try:
        yield moment
    finally:
        _current.reset(token)


def as_of_now() -> datetime | None:
    """The moment reads are taken at, or None: now, the production reads."""
    current = _current.get()
    return None if current is None else current.at


def as_of_cache(*, shared: bool = False) -> dict | None:
    """The as-of block's cache, or the one shared by its run (None outside a block)."""
    current = _current.get()
    if current is None:
        return None
    return current.shared if shared else current.cache


def as_of_cached(key: tuple, compute: Callable[[], T], *, shared: bool = False) -> T:
    """compute(), kept under `key` in the block's cache (or the run's, `shared`); outside a block, not kept."""
    cache = as_of_cache(shared=shared)
    if cache is None:
        return compute()
    if key not in cache:
        cache[key] = compute()
    return cache[key]
