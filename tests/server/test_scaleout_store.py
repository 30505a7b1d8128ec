"""Scale-out building blocks on real databases: leases with fencing, concurrent writers, worker health, the queue leader."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from server.alerts import worker_health
from server.alerts.writer_hook import Alerting
from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.keys.secretbox import SecretBox
from server.notify.config import NotifyConfig
from server.notify.runtime import sync_file_channels
from server.polling.writer import Writer
from server.store import leases
from server.store import workers as store
from server.store.db import Connection, Engine, make_engine
from server.store.devices import create_device, sync_config_devices
from server.store.status import CheckOutcome
from tests import sql
from tests.server.conftest import AppEnv, make_app_env


def test_a_lease_has_one_holder_and_a_takeover_bumps_the_fence(engine: Engine) -> None:
    with engine.begin() as conn:
        assert leases.acquire(conn, "job", "a", ttl=0.5) == 1
        assert leases.acquire(conn, "job", "b", ttl=0.5) is None
        assert leases.acquire(conn, "job", "a", ttl=0.5) == 1  # renewal keeps the fence
        assert leases.fenced(conn, "job", "a", 1)
    time.sleep(0.7)
    with engine.begin() as conn:
        assert not leases.fenced(conn, "job", "a", 1)  # expired: work under it is refused
        assert leases.acquire(conn, "job", "b", ttl=5) == 2
        assert leases.fenced(conn, "job", "b", 2) and not leases.fenced(conn, "job", "a", 1)
        leases.release(conn, "job", "b")
        assert leases.acquire(conn, "job", "a", ttl=5) == 3  # a clean hand-over needs no waiting
        current = leases.current(conn, "job")
    assert current is not None and current.holder == "a" and current.live


@pytest.mark.pg
def test_a_new_holder_waits_for_work_committed_under_the_old_fence(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert leases.acquire(conn, "notify", "old", ttl=0.3) == 1
        time.sleep(0.4)
        took: list[float] = []
        with engine.begin() as conn:
            assert not leases.fenced(conn, "notify", "old", 1)  # expired: refused, and a fresh holder is not blocked
        with engine.begin() as conn:
            assert leases.acquire(conn, "notify", "new", ttl=5) == 2
            assert leases.fenced(conn, "notify", "new", 2)  # share-locks the row until this transaction ends

            def take_over() -> None:
                with engine.begin() as other:
                    leases.acquire(other, "notify", "third", ttl=5)
                    took.append(time.monotonic())

            thread = threading.Thread(target=take_over)
            thread.start()
            time.sleep(0.5)
            assert not took  # blocked behind the fenced transaction
            released = time.monotonic()
        thread.join(10)
        assert took and took[0] >= released
    finally:
        engine.dispose()


@pytest.mark.pg
def test_two_writers_on_one_device_lose_no_check_and_raise_one_alert(pg_url: str, tmp_path: Path) -> None:
    box = SecretBox.from_file(tmp_path / "k")
    engines = [make_engine(pg_url), make_engine(pg_url)]
    settings = Settings(data_dir=tmp_path, writer_batch_seconds=0.01, down_after_failures=1)
    spec = DeviceSpec.model_validate(
        {"name": "shared", "address": "192.0.2.1", "checks": [{"type": "tcp", "port": 1, "name": "a"}]}
    )
    with engines[0].begin() as conn:
        device_id = create_device(conn, spec, box, 60)
    writers = [Writer(e, settings, hooks=[Alerting(threshold=1).hook]) for e in engines]
    for w in writers:
        w.start()
    now = time.time()
    try:
        for step in range(40):
            ok = step < 10
            for check, w in zip(("a", "b"), writers, strict=True):  # each worker stores a different check of the device
                w.submit(CheckOutcome(device_id, check, "tcp", now + step, ok, ok, 1.0, None if ok else "refused"))
            time.sleep(0.003)
        assert all(w.flush(60) for w in writers)
    finally:
        for w in writers:
            w.stop()
    with engines[0].connect() as conn:
        (checks,) = sql.records(conn, "device_status", "device_id = :d", order="device_id", d=device_id)
        firing = sql.rows(conn, "SELECT id FROM alerts WHERE device_id = :d AND status = 'firing'", d=device_id)
        states = sql.rows(conn, "SELECT rule FROM alert_states WHERE device_id = :d", d=device_id)
    for e in engines:
        e.dispose()
    assert set(checks.checks) == {"a", "b"}  # neither writer overwrote the other's check
    assert checks.checks["a"]["ts"] == checks.checks["b"]["ts"] == now + 39
    assert checks.state == "unreachable"
    assert len(firing) == 1, firing  # one episode, not one per writer
    assert len(states) == len({r.rule for r in states})


@pytest.fixture
def pg_env(pg_url: str, tmp_path: Path) -> Iterator[AppEnv]:
    """An app on PostgreSQL in queue mode (its lifespan runs, polling off: the tests drive the pieces)."""
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url, scheduler="queue", worker_silent_seconds=30)
    yield from make_app_env(settings)


@pytest.mark.pg
def test_worker_health_raises_and_clears_silent_alerts_once(pg_env: AppEnv) -> None:
    engine = pg_env.svc.engine
    with engine.begin() as conn:
        for name, tags in (("hq1", []), ("branch1", ["site-b"]), ("branch2", ["site-b"])):
            create_device(
                conn, DeviceSpec.model_validate({"name": name, "address": "192.0.2.5", "tags": tags}), pg_env.svc.box, 60
            )
        b = store.register(conn, "wb", "b", "host-b", 10, "i1", 5, stale_after=30)
        store.register(conn, "wd", None, "host-d", 11, "i2", 5, stale_after=30)
        with pytest.raises(store.WorkerNameTaken):
            store.register(conn, "wb", "b", "elsewhere", 12, "other", 5, stale_after=30)
    worker_health.evaluate(engine, 30, armed=True)
    with engine.connect() as conn:
        assert not sql.rows(conn, "SELECT * FROM alerts WHERE rule LIKE '%-silent'")
    with engine.begin() as conn:  # wb stops reporting
        sql.run(conn, "UPDATE workers SET last_seen = last_seen - 100 WHERE id = :id", id=b)
    for _ in range(3):  # evaluated every few seconds: one alert each, no repeats
        worker_health.evaluate(engine, 30, armed=True)
    with engine.connect() as conn:
        rows = sql.rows(conn, "SELECT rule, labels, status, device_id FROM alerts")
        events = sql.scalars(conn, "SELECT kind FROM alert_events")
        branch1 = sql.scalar(conn, "SELECT id FROM devices WHERE name = 'branch1'")
    assert sorted((r.rule, r.labels, r.status) for r in rows) == [
        ("site-silent", '{"site":"b"}', "firing"),
        ("worker-silent", '{"worker":"wb"}', "firing"),
    ]
    assert {r.device_id for r in rows} == {branch1}
    assert events.count("fired") == 2 and "repeated" not in events
    # The API and the page show it.
    token = pg_env.token("vera", "viewer")
    body = pg_env.client.get("/api/v1/workers", headers={"Authorization": f"Bearer {token}"}).json()
    assert {w["name"]: w["state"] for w in body["items"]} == {"wb": "silent", "wd": "running"}
    assert {s["name"]: s["state"] for s in body["sites"]} == {"b": "silent", "default": "ok"}
    with engine.begin() as conn:  # it comes back
        store.heartbeat(conn, b, "i1", {"checks_per_min": 12.0})
    worker_health.evaluate(engine, 30, armed=True)
    with engine.connect() as conn:
        assert {r.status for r in sql.rows(conn, "SELECT status FROM alerts")} == {"resolved"}


@pytest.mark.pg
def test_an_admin_forgets_a_dead_worker_on_the_page(pg_env: AppEnv) -> None:
    from tests.server.conftest import form_csrf, sign_in

    with pg_env.svc.engine.begin() as conn:
        live = store.register(conn, "alive", None, "h", 1, "i1", 5, stale_after=30)
        dead = store.register(conn, "gone", None, "h", 2, "i2", 5, stale_after=30)
        sql.run(conn, "UPDATE workers SET last_seen = last_seen - 100 WHERE id = :id", id=dead)
    pg_env.user("ada", "admin")
    sign_in(pg_env.client, "ada")
    page = pg_env.client.get("/workers")
    assert page.status_code == 200 and "gone" in page.text and "alive" in page.text
    assert f'action="/workers/{dead}/forget"' in page.text and f'action="/workers/{live}/forget"' not in page.text
    refused = pg_env.client.post(f"/workers/{live}/forget", data={"csrf_token": form_csrf(page.text)})
    assert refused.status_code == 409
    done = pg_env.client.post(f"/workers/{dead}/forget", data={"csrf_token": form_csrf(page.text)})
    assert done.status_code == 303
    with pg_env.svc.engine.connect() as conn:
        assert sql.scalars(conn, "SELECT name FROM workers") == ["alive"]
        assert sql.scalar(conn, "SELECT count(*) FROM audit WHERE action = 'worker.forget' AND target = 'gone'") == 1
    viewer = pg_env.token("vic", "viewer")
    assert pg_env.client.delete(f"/api/v1/workers/{live}", headers={"Authorization": f"Bearer {viewer}"}).status_code == 403


@pytest.mark.pg
def test_the_page_shows_each_workers_heartbeat_checks_per_minute_and_lag(pg_env: AppEnv) -> None:
    from tests.server.conftest import sign_in

    engine = pg_env.svc.engine
    with engine.begin() as conn:
        create_device(
            conn, DeviceSpec.model_validate({"name": "b1", "address": "192.0.2.7", "tags": ["site-b"]}), pg_env.svc.box, 60
        )
        busy = store.register(conn, "busy", None, "host-1", 41, "i1", 100, stale_after=30)
        quiet = store.register(conn, "<b>quiet</b>", "b", "host-2", 42, "i2", 50, stale_after=30)
        store.heartbeat(conn, busy, "i1", {"checks_per_min": 120.0, "failed_per_min": 3.0, "lag_p50": 0.25, "lag_p95": 1.5,
                                           "in_flight": 7, "checks_total": 900})  # fmt: skip
        sql.run(conn, "UPDATE workers SET last_seen = last_seen - 300 WHERE id = :id", id=quiet)
    pg_env.user("val", "viewer")
    sign_in(pg_env.client, "val")
    page = pg_env.client.get("/workers")
    assert page.status_code == 200
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<li class="row wk-\w+">.*?<strong class="name">(.*?)</strong>.*?</li>',
                                                          page.text, re.S)}  # fmt: skip
    assert set(rows) == {"busy", "&lt;b&gt;quiet&lt;/b&gt;"}  # a name is text, never markup
    busy_row = rows["busy"]
    assert re.search(r"heartbeat \d+s ago", busy_row) and "120 checks/min (3 failed)" in busy_row
    assert "lag p50 0.25s, p95 1.5s" in busy_row and "7 in flight of 100" in busy_row and "wk-running" in busy_row
    quiet_row = rows["&lt;b&gt;quiet&lt;/b&gt;"]
    assert "heartbeat 5m ago" in quiet_row and "wk-silent" in quiet_row and "lag p50 –, p95 –" in quiet_row
    assert "site b" in quiet_row and ">nobody polls<" in page.text and "<title>(1) Workers" in page.text
    body = pg_env.client.get("/api/v1/workers", headers={"Authorization": f"Bearer {pg_env.token('vic', 'viewer')}"}).json()
    api = {w["name"]: w for w in body["items"]}
    assert api["busy"]["checks_per_min"] == 120.0 and api["busy"]["lag_p95"] == 1.5 and api["busy"]["state"] == "running"
    assert api["<b>quiet</b>"]["state"] == "silent" and api["<b>quiet</b>"]["age"] >= 299


def test_the_page_explains_in_process_polling(app_env: AppEnv) -> None:
    token = app_env.token("vera", "viewer")
    body = app_env.client.get("/api/v1/workers", headers={"Authorization": f"Bearer {token}"}).json()
    assert body["scheduler"] == "inprocess" and body["sites"] == []


@pytest.mark.pg
def test_one_of_two_servers_leads_and_queues_nothing_for_a_pool_without_a_live_worker(pg_url: str, tmp_path: Path) -> None:
    from contextlib import ExitStack

    from server.polling.dispatch_queue import QueueDispatcher

    engine = make_engine(pg_url)
    box = SecretBox.from_file(tmp_path / "secret.key")
    with engine.begin() as conn:
        for name, tags in (("hq", []), ("branch", ["site-b"])):
            create_device(
                conn, DeviceSpec.model_validate({"name": name, "address": "192.0.2.7", "tags": tags, "interval": 5}), box, 5
            )
        store.register(conn, "wb", "b", "h", 1, "i", 5, stale_after=60)  # registered, but no connection: not live
    settings = Settings(data_dir=tmp_path, database_url=pg_url, scheduler="queue", lease_seconds=2)
    with ExitStack() as stack:
        envs = [stack.enter_context(_polling_app(settings)) for _ in range(2)]
        dispatchers = [e.svc.dispatcher for e in envs]
        assert all(isinstance(d, QueueDispatcher) for d in dispatchers)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # a whole interval of both checks, or more
            if sum(d.router.stats.unowned for d in dispatchers if isinstance(d, QueueDispatcher)) >= 3:
                break
            time.sleep(0.2)
        leaders = [d for d in dispatchers if isinstance(d, QueueDispatcher) and d.leader]
        assert len(leaders) == 1
        assert leaders[0].stats.deferred == 0 and leaders[0].router.stats.unowned >= 2
        assert leaders[0].router.live == {}
    with engine.connect() as conn:
        queued = sql.scalar(conn, "SELECT count(*) FROM procrastinate_jobs")
    engine.dispose()
    assert queued == 0  # no backlog that would only be stale when a worker comes


def _polling_app(settings: Settings) -> object:
    from contextlib import contextmanager

    @contextmanager
    def run() -> Iterator[AppEnv]:
        yield from make_app_env(settings.model_copy(), poll=True)

    return run()


@pytest.mark.pg
def test_a_worker_refuses_sqlite_and_a_missing_key_with_one_line(tmp_path: Path, pg_url: str) -> None:
    from tests.server.conftest import assert_clean_error, run_cli

    assert_clean_error(run_cli("worker", "--data-dir", tmp_path), "a worker needs PostgreSQL")
    env = {"POCKETNOC_DATABASE_URL": pg_url, "POCKETNOC_SCHEDULER": "queue"}
    assert_clean_error(run_cli("worker", "--data-dir", tmp_path, env=env), "does not exist")  # never invents a key
    assert_clean_error(run_cli("worker", "--site", "no/slash", "--data-dir", tmp_path, env=env), "--site")


def _lock_waits(engine: Engine) -> int:
    """Sessions of this database waiting for a lock (a fresh transaction: pg_stat_activity is read once per one)."""
    return int(sql.scalar(engine, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND wait_event_type = 'Lock'") or 0)  # fmt: skip


def _sync_devices(conn: Connection, box: SecretBox) -> int:
    specs = [DeviceSpec.model_validate({"name": f"sw{i}", "address": "192.0.2.7"}) for i in range(3)]
    sync_config_devices(conn, specs, box, 60)
    return int(sql.scalar(conn, "SELECT count(*) FROM devices") or 0)


def _sync_channels(conn: Connection, box: SecretBox) -> int:
    config = NotifyConfig.model_validate({"channels": [{"name": "hook", "url": "json://127.0.0.1:9/hook"}]})
    assert sync_file_channels(conn, box, config, time.time()) == []
    return int(sql.scalar(conn, "SELECT count(*) FROM notify_channels") or 0)


@pytest.mark.pg
@pytest.mark.parametrize("sync", [_sync_devices, _sync_channels], ids=["devices", "channels"])
def test_serve_processes_starting_together_sync_the_config_files_one_after_the_other(
    pg_url: str, tmp_path: Path, sync: Callable[[Connection, SecretBox], int]
) -> None:
    # Two serve processes started at once both created the file's devices (and, later seen, its notification
    # channels): one start-up ended in a unique violation.
    box = SecretBox.from_file(tmp_path / "k")
    engine = make_engine(pg_url)
    second: list[int | BaseException] = []

    def other_process() -> None:
        try:
            with engine.begin() as conn:
                second.append(sync(conn, box))
        except BaseException as exc:
            second.append(exc)

    try:
        with engine.begin() as first:
            made = sync(first, box)
            assert made > 0
            # The other process (a second serve starting) syncs while this transaction is open: it waits for it.
            thread = threading.Thread(target=other_process)
            thread.start()
            deadline = time.monotonic() + 30
            while not _lock_waits(engine):
                assert not second and time.monotonic() < deadline, second
                time.sleep(0.05)
        thread.join(60)
        assert second == [made]  # it found what the first made: nothing created twice, no unique violation
    finally:
        engine.dispose()


@pytest.mark.pg
def test_a_worker_dead_to_the_leader_is_lost_on_the_page_and_metrics_at_once_and_can_be_forgotten(pg_env: AppEnv) -> None:
    # A trial: 26 s after a kill -9 the leader had moved the worker's devices, but the page said "2 of 2 reporting",
    # the worker "running", /metrics up 1, and Forget was refused (409) until worker_silent_seconds.
    from tests.server.conftest import form_csrf, sign_in

    beats = 3 * pg_env.svc.settings.worker_heartbeat_seconds
    with pg_env.svc.engine.begin() as conn:
        store.register(conn, "alive", None, "h1", 1, "i1", 5, stale_after=30)
        gone = store.register(conn, "gone", None, "<i>h2</i>", 2, "i2", 5, stale_after=30)
        store.heartbeat(conn, gone, "i2", {"checks_per_min": 13.0})
        sql.run(conn, "UPDATE workers SET last_seen = last_seen - :back WHERE id = :id", back=beats + 1, id=gone)
    pg_env.user("ada", "admin")
    sign_in(pg_env.client, "ada")
    page = pg_env.client.get("/workers").text
    row = re.search(r'<li class="row wk-(\w+)"><span class="main"><strong class="name">gone</strong>.*?</li>', page, re.S)
    assert row and row.group(1) == "lost" and "lost: not reporting" in row.group(0)
    assert "Its devices went to the other workers of its pool" in row.group(
        0
    ) and "on &lt;i&gt;h2&lt;/i&gt; (pid 2)" in row.group(0)
    assert "last report: 13 checks/min" in row.group(0) and "1 of 2 workers reporting" in page
    metrics = pg_env.client.get("/metrics", headers={"Authorization": f"Bearer {pg_env.token('m', 'viewer')}"}).text
    assert 'pocketnoc_worker_up{worker="gone",site="default"} 0' in metrics.splitlines()
    assert 'pocketnoc_worker_up{worker="alive",site="default"} 1' in metrics.splitlines()
    with pg_env.svc.engine.connect() as conn:  # not yet silent: no alert before worker_silent_seconds
        assert store.list_workers(conn, 30)[1]["state"] == "running"  # the alerts judge by silence alone
    done = pg_env.client.post(f"/workers/{gone}/forget", data={"csrf_token": form_csrf(page)})
    assert done.status_code == 303
