"""Tables of sharded queue polling: each worker's share of the devices (written by the scheduling leader).

Also one index on check_runs: a (device, check, slot) is applied at most once, whichever worker ran it.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, String, Table

from server.store.columns import at, counter, flag
from server.store.schema import check_runs, metadata

worker_shards = Table(
    "worker_shards",
    metadata,
    Column("name", String(64), primary_key=True),  # the worker's name (rendezvous hashing is over names)
    Column("site", String(32)),
    counter("devices"),  # devices assigned to it now
    counter("checks"),
    Column("weight", Float, nullable=False, default=1.0),  # < 1 while it sheds devices because it fell behind
    flag("behind"),
    at("updated_at"),
)

ix_check_runs_slot = Index(
    "ux_check_runs_slot",
    check_runs.c.device_id,
    check_runs.c.check_name,
    check_runs.c.slot,
    unique=True,
    postgresql_where=check_runs.c.slot.is_not(None),
    sqlite_where=check_runs.c.slot.is_not(None),
)
