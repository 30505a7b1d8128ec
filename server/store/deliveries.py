"""Delivery attempts on record before they are sent: a crash mid-send leaves a trace, and a repeat says so."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, insert, select, update

from server.store.notify_records import Message, Receipt
from server.store.schema import notify_deliveries, notify_messages

SENDING = "sending"  # a receipt written (committed) before its send; still so if the sender died mid-send
UNKNOWN = "unknown"  # such an attempt, found by the next one: the receiver may have it
POSSIBLE_DUPLICATE = "possible duplicate"
# Earlier attempts that may have reached the receiver: a later attempt of the same message may be a duplicate.
MAY_HAVE_ARRIVED = frozenset({SENDING, UNKNOWN, "ok"})


def start_attempts(conn: Connection, rows: Sequence[Message], now: float) -> dict[int, int]:
    """Count one attempt per claimed message and write its 'sending' receipt, in the claim's transaction.

    Returns each message's receipt id (the result updates it). An earlier receipt still 'sending' is an attempt cut
    off before its answer (a crash, a lost lease): it becomes 'unknown' — possibly delivered, so this is a repeat.
    """
    ids = [int(r.id) for r in rows]
    if not ids:
        return {}
    d, m = notify_deliveries, notify_messages
    conn.execute(
        update(d).where(d.c.message_id.in_(ids), d.c.result == SENDING).values(
            result=UNKNOWN, status=POSSIBLE_DUPLICATE,
            detail="the sender stopped before an answer came: the receiver may have it (same dedup key)")
    )
    conn.execute(update(m).where(m.c.id.in_(ids)).values(attempts=m.c.attempts + 1))
    conn.execute(insert(d), [{"message_id": i, "ts": now, "result": SENDING, "status": "sending", "detail": "", "ms": None}
                             for i in ids])
    found = conn.execute(select(d.c.message_id, d.c.id).where(d.c.message_id.in_(ids), d.c.result == SENDING))
    return {int(r.message_id): int(r.id) for r in found}


_RECEIPT_UPDATE = (
    update(notify_deliveries)
    .where(notify_deliveries.c.id == bindparam("b_id"))
    .values(ts=bindparam("v_ts"), result=bindparam("v_result"), status=bindparam("v_status"),
            detail=bindparam("v_detail"), ms=bindparam("v_ms"))
)


def finish_receipts(conn: Connection, results: list[dict[str, object]]) -> None:
    """Fill in receipts written before their sends (keys b_id, v_ts, v_result, v_status, v_detail, v_ms)."""
    if results:
        conn.execute(_RECEIPT_UPDATE, results)


def possible_duplicate(receipts: Sequence[Receipt]) -> bool:
    """Was this message maybe delivered more than once? (an attempt followed one that may have arrived)"""
    return any(r["result"] in MAY_HAVE_ARRIVED for r in receipts[:-1])


def extend_claims(conn: Connection, claims: dict[int, float], until: float) -> set[int]:
    """Extend the claims of messages whose send is still running (message id -> its claim's locked_until) to `until`,
    so a slow send is never claimed again and sent twice. Only a claim still held — unchanged since it was taken or
    last extended — moves (the claim is the fence finishing the message); returns the ids extended. A sender that died
    extends nothing: its claims run out and the messages are claimed again."""
    m = notify_messages
    return {mid for mid, lock in claims.items()
            if conn.execute(update(m).where(m.c.id == mid, m.c.status == "pending", m.c.locked_until == lock)
                            .values(locked_until=until)).rowcount == 1}
