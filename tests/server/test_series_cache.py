"""The writer's series ids: read once per device, new series' ids from their insert, another writer's series found."""

from __future__ import annotations

import json

from server.config.inventory import DeviceSpec
from server.keys.secretbox import SecretBox
from server.store.db import Engine, json_text, json_value
from server.store.devices import create_device
from server.store.diagnostics import statements
from server.store.metrics import SeriesCache, write_samples
from tests import sql


def _device(engine: Engine, box: SecretBox, name: str) -> int:
    with engine.begin() as conn:
        return create_device(conn, DeviceSpec.model_validate({"name": name, "address": "192.0.2.10"}), box, 60)


def _stored(engine: Engine) -> dict[tuple[int, str, str], int]:
    return {(r.device_id, r.metric, r.labels): r.id for r in sql.rows(engine, "SELECT id, device_id, metric, labels FROM series")}


def _series_reads(seen: list[str]) -> list[str]:
    """SELECTs of the series table among the statements an engine sent."""
    return [statement for statement in seen if statement.lstrip().upper().startswith("SELECT") and " series" in statement]


def test_new_series_of_a_known_device_take_their_ids_from_the_insert(engine: Engine, box: SecretBox) -> None:
    first, second = _device(engine, box, "sw1"), _device(engine, box, "sw2")
    cache = SeriesCache()
    with engine.begin() as conn:  # first poll: both devices read (none stored yet) and their series created
        write_samples(conn, cache, [(first, "if_in_octets", '{"ifIndex":"1"}', 60, 1.0), (second, "cpu_load_pct", "", 60, 2.0)])
    with statements(engine) as seen, engine.begin() as conn:  # second poll brings rate series: inserted, ids returned, none read
        written = write_samples(conn, cache, [
            (first, "if_in_octets", '{"ifIndex":"1"}', 120, 1.5),
            (first, "if_in_bps", '{"ifIndex":"1"}', 120, 8.0),
            (first, "if_out_bps", '{"ifIndex":"1"}', 120, 9.0),
            (second, "cpu_load_pct", "", 120, 3.0),
        ])
    assert written == 4
    assert _series_reads(seen) == []
    stored = _stored(engine)
    assert len(stored) == 4
    for key, series_id in stored.items():
        assert cache.get(*key) == series_id
    rows = {(r.series_id, r.ts): r.value for r in sql.rows(engine, "SELECT series_id, ts, value FROM samples")}
    assert rows[(stored[(first, "if_in_bps", '{"ifIndex":"1"}')], 120)] == 8.0
    assert rows[(stored[(second, "cpu_load_pct", "")], 120)] == 3.0


def test_a_series_another_writer_created_first_is_found_not_duplicated(engine: Engine, box: SecretBox) -> None:
    device = _device(engine, box, "sw1")
    mine, theirs = SeriesCache(), SeriesCache()
    with engine.begin() as conn:
        write_samples(conn, mine, [(device, "cpu_load_pct", "", 60, 1.0)])
    with engine.begin() as conn:  # a queue worker that took the device over made the rate series first
        write_samples(conn, theirs, [(device, "cpu_load_pct", "", 120, 1.0), (device, "mem_used_pct", "", 120, 40.0)])
    with engine.begin() as conn:  # this writer still knows the device: its insert skips the row, then reads it
        assert write_samples(conn, mine, [(device, "mem_used_pct", "", 180, 41.0)]) == 1
    stored = _stored(engine)
    assert len(stored) == 2
    assert mine.get(device, "mem_used_pct", "") == stored[(device, "mem_used_pct", "")]
    mem = stored[(device, "mem_used_pct", "")]
    values = sorted(sql.scalars(engine, "SELECT value FROM samples WHERE series_id = :s", s=mem))
    assert values == [40.0, 41.0]


def test_json_columns_round_trip_what_json_would_and_refuse_nothing_it_took() -> None:
    value = {"name": "sw\u00e9 \u2603", "n": 2**70, "rows": [(1, 2.5)], "bad": float("nan"), 3: "int key"}
    text = json_text(value)  # orjson refuses the 70-bit integer and the int key: json writes it, NaN as null
    assert json.loads(text) == {"name": "sw\u00e9 \u2603", "n": 2**70, "rows": [[1, 2.5]], "bad": None, "3": "int key"}
    assert json_value(json_text({"a": [1.5, None, True]})) == {"a": [1.5, None, True]}
    assert json_value('{"old": NaN}')["old"] != json_value('{"old": NaN}')["old"]  # written by json before: still read
