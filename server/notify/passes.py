"""What the parts of one planning pass share: its transaction, the delivery settings and the pass's time."""

from __future__ import annotations

from server.notify.config import Delivery
from server.store.db import Connection


class PassPart:
    """A part of one planning pass (the dependency rules, the message grouper): it reads through the pass's
    transaction and decides at the pass's time, so one pass sees one consistent moment."""

    def __init__(self, conn: Connection, delivery: Delivery, now: float) -> None:
        self.conn = conn
        self.delivery = delivery
        self.now = now
