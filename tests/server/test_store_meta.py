"""The meta table when two processes start together: a value made by each is kept once, and both use that one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from server.keys.secretbox import SecretBox
from server.notify.webpush import load_keys
from server.store import meta
from server.store.db import Engine, make_engine, migrate
from tests import sql


def _lock_waits(engine: Engine) -> int:
    waiting = sql.scalar(engine, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock'")  # fmt: skip
    return int(waiting or 0)


@pytest.mark.pg
def test_two_sessions_making_one_value_at_once_both_get_the_first_kept(pg_url: str) -> None:
    engine = make_engine(pg_url)
    got: dict[str, object] = {}

    def second() -> None:
        try:
            with engine.begin() as conn:
                got["b"] = meta.get_or_create(conn, "engine_id", "made-by-b")
                meta.put(conn, "heartbeat", "from-b")
        except Exception as exc:  # what the test asserts against: the unique violation of a check-then-insert
            got["error"] = exc

    try:
        with engine.begin() as conn:
            assert meta.get_or_create(conn, "engine_id", "made-by-a") == "made-by-a"
            meta.put(conn, "heartbeat", "from-a")
            other = threading.Thread(target=second)
            other.start()
            deadline = time.monotonic() + 20
            while not _lock_waits(engine):  # b found no value and now waits on a's uncommitted row
                assert other.is_alive() and time.monotonic() < deadline, got
                time.sleep(0.02)
        other.join(20)
        assert "error" not in got, got
        assert got["b"] == "made-by-a"
        with engine.connect() as conn:
            assert meta.get(conn, "engine_id") == "made-by-a"
            assert meta.get(conn, "heartbeat") == "from-b"  # a put replaces: the later one stays
    finally:
        engine.dispose()


def test_a_kept_value_is_returned_and_not_replaced(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    migrate(engine)
    with engine.begin() as conn:
        assert meta.get_or_create(conn, "k", "first") == "first"
        assert meta.get_or_create(conn, "k", "second") == "first"
        meta.put(conn, "k", "third")
        assert meta.get(conn, "k") == "third"
    engine.dispose()


def test_the_push_key_is_made_once_and_read_back(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'push.db'}")
    migrate(engine)
    box = SecretBox.from_file(tmp_path / "key")
    first = load_keys(engine, box, "mailto:noc@example.org")
    again = load_keys(engine, box, "mailto:noc@example.org")
    assert first.public_key == again.public_key
    engine.dispose()
