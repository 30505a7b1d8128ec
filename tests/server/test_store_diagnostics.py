"""What the benchmarks measure through the store: the serving backend, the samples' size and count, scratch devices."""

from __future__ import annotations

import os
import time

from server.store import diagnostics
from server.store.db import Engine
from server.store.metrics import SeriesCache, write_samples
from server.store.overview import state_counts


def test_scratch_devices_samples_and_the_backend_on_both_databases(engine: Engine) -> None:
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as conn:
        ids = diagnostics.add_quiet_devices(conn, ["a", "b", "c"], state="down")
        assert ids == sorted(ids) and len(set(ids)) == 3
        write_samples(conn, SeriesCache(), [(ids[0], "if_in_bps", '{"if":"1"}', int(time.time()) - i, 1.0) for i in range(5)])
    with engine.connect() as conn:
        assert state_counts(conn) == {"down": 3}  # each with its status row
        assert diagnostics.count_samples(conn) == 5
        size = diagnostics.samples_bytes(conn)
        pid = diagnostics.backend_pid(conn)
        assert diagnostics.backend_pid(conn) == pid  # one connection, one backend
    if postgres:
        assert size is not None and size > 0 and pid > 0 and pid != os.getpid()
        assert os.path.exists(f"/proc/{pid}")  # the server runs here: its CPU can be read
    else:
        assert size is None and pid == 0
