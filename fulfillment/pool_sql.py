"""The key pool's two busiest moves on PostgreSQL, each with its audit rows, in one statement.

Holding keys for an order at checkout and selling the held keys when it is paid each take the keys and write
their KeyEvent rows in the same statement (a data-modifying WITH), so the audit trail can never miss a move and
the move costs one round trip. The rows are picked in a MATERIALIZED step, locked once: a LIMIT in a subquery of
the UPDATE itself may be run again per row and take more keys than asked for. SQLite (the demo) has no such
statement: fulfillment.keys moves keys there with the ORM, a few statements each, under SQLite's single writer.
"""

from datetime import datetime

from django.db import connection

from fulfillment.models import KeyEvent, KeyEventType, LicenseKey

KEYS, EVENTS = LicenseKey._meta.db_table, KeyEvent._meta.db_table

_RESERVE = f"""
WITH picked AS MATERIALIZED (
  SELECT id FROM {KEYS}
   WHERE product_id = %(product)s AND status = 'available'
   ORDER BY id LIMIT %(count)s FOR UPDATE SKIP LOCKED
), taken AS (
  UPDATE {KEYS} k
     SET status = 'reserved', reserved_for_id = %(order)s, reserved_until = %(until)s
    FROM picked
   WHERE k.id = picked.id
  RETURNING k.id
)
INSERT INTO {EVENTS} (key_id, type, actor, order_id, created_at)
SELECT id, %(type)s, %(actor)s, %(order)s, %(now)s FROM taken
RETURNING key_id
"""

_SELL_HELD = f"""
WITH held AS MATERIALIZED (
  SELECT id FROM {KEYS}
   WHERE product_id = %(product)s AND status = 'reserved' AND reserved_for_id = %(order)s
   ORDER BY id LIMIT %(count)s FOR UPDATE
), numbered AS (
  SELECT id, row_number() OVER (ORDER BY id) AS n FROM held
), sold AS (
  UPDATE {KEYS} k
     SET status = 'sold', order_line_id = %(line)s, unit_index = (%(units)s::int[])[numbered.n],
         sold_at = %(now)s, reserved_for_id = NULL, reserved_until = NULL
    FROM numbered
   WHERE k.id = numbered.id
  RETURNING k.id
)
INSERT INTO {EVENTS} (key_id, type, actor, order_id, created_at)
SELECT id, %(type)s, %(actor)s, %(order)s, %(now)s FROM sold
RETURNING key_id
"""


def pool_reserve(
    *, product_id: int, order_id: int, count: int, until: datetime, actor: str, now: datetime
) -> list[int]:
    """Hold up to `count` available keys of the product for the order (skipping keys other buyers are taking),
    audited as 'reserved'. Returns their ids. Call inside a transaction."""
    params = {
        "product": product_id,
        "order": order_id,
        "count": count,
        "until": until,
        "type": KeyEventType.RESERVED.value,
        "actor": actor,
        "now": now,
    }
    with connection.cursor() as cursor:
        cursor.execute(_RESERVE, params)
        return [row[0] for row in cursor.fetchall()]


def pool_sell_held(*, line_id: int, product_id: int, order_id: int, units: list[int], actor: str, now) -> list[int]:
    """Sell the keys the order holds for the product to the line, one per unit index in order, audited as
    'sold'. Returns their ids (fewer than the units when fewer are held). Call inside a transaction."""
    params = {
        "line": line_id,
        "product": product_id,
        "order": order_id,
        "count": len(units),
        "units": list(units),
        "type": KeyEventType.SOLD.value,
        "actor": actor,
        "now": now,
    }
    with connection.cursor() as cursor:
        cursor.execute(_SELL_HELD, params)
        return [row[0] for row in cursor.fetchall()]
