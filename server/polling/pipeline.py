"""Wiring of the polling pipeline: inventory sync, writer, poller, dispatcher; start, stop, reschedule."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from agents.base import SnmpCredentials
from agents.traps import TrapReceiver
from server.alerts.hostkey_events import host_key_hook
from server.alerts.rules import DEFAULT_RULES, Rule
from server.alerts.rules import load_rules as load_rules_file
from server.alerts.writer_hook import Alerting, flap_of
from server.config.loader import LoadedConfig
from server.config.settings import Settings
from server.notify import runtime as notify_runtime
from server.polling.dispatch import InProcessDispatcher
from server.polling.jobs import CheckJob, jobs_for
from server.polling.poller import Poller
from server.polling.writer import Writer
from server.runtime import Services
from server.store import meta
from server.store import rules as stored_rules
from server.store.devices import load_devices, sync_config_devices
from server.store.space import Storage
from server.store.status import CheckOutcome, Hook

log = logging.getLogger("pocketnoc.pipeline")


def sync_inventory(svc: Services, config: LoadedConfig) -> None:
    """Make config-managed devices match the config file."""
    with svc.engine.begin() as conn:
        counts = sync_config_devices(conn, config.devices, svc.box, svc.settings.default_interval)
    if any(counts.values()):
        log.info("inventory from config: %(created)d created, %(updated)d updated, %(removed)d removed", counts)


def all_jobs(svc: Services) -> list[CheckJob]:
    """Every check of every enabled device."""
    with svc.reader.connect() as conn:
        rows = load_devices(conn, svc.box, enabled_only=True)
    return [job for row in rows for job in jobs_for(row, svc.settings)]


def load_rules(svc: Services, reread_file: bool = True) -> list[Rule]:
    """Rules in force: the rules file (or the built-in defaults) plus rules added through the API."""
    if reread_file or not svc.file_rules_loaded:
        path = svc.settings.rules_file
        svc.file_rules = list(DEFAULT_RULES) if path is None else load_rules_file(path)
        svc.file_rules_loaded = True
    rules = list(svc.file_rules)
    names = {r.name for r in rules}
    with svc.reader.connect() as conn:
        for definition in stored_rules.definitions(conn):
            rule = Rule.model_validate(definition)
            if rule.name not in names:
                rules.append(rule)
    return rules


def reload_rules(svc: Services, reread_file: bool = True) -> int:
    """Re-read the rules; on an error (ConfigError) the rules in force stay."""
    rules = load_rules(svc, reread_file)
    if svc.alerting is not None:
        svc.alerting.set_rules(rules)
    return len(rules)


Role = Literal["serve", "scheduler", "worker"]
Submit = Callable[[CheckOutcome], None]


@dataclass(frozen=True)
class PollingParts:
    """What one process runs of the pipeline: the alert engine, the writer and (unless it only schedules) the poller."""

    alerting: Alerting
    writer: Writer
    poller: Poller | None


def build_pipeline(
    role: Role,
    svc: Services,
    *,
    hooks: Sequence[Hook] = (),
    submit: Callable[[Submit], Submit] = lambda s: s,
    alerting: Alerting | None = None,
    storage: Storage | None = None,
) -> PollingParts:
    """The one wiring of writer, alert engine and poller for `serve` (polls), a queue `scheduler` and a `worker`.

    Starts the writer; needs a running event loop. `hooks` run after the built-in ones in the writer's
    transaction; `submit` wraps what the poller hands to the writer (a worker's run log); `storage` watches the
    disk the writes go to (the serve process's own by default).
    """
    settings = svc.settings
    alerting = alerting or Alerting(load_rules(svc), settings.down_after_failures, flap_of(settings))
    writer = Writer(svc.engine, settings, hooks=[host_key_hook, alerting.hook, *hooks], storage=storage or svc.storage)
    writer.maintenance_enabled = role != "worker"  # the leading serve process does rollups and retention
    writer.start()
    if role == "scheduler":
        return PollingParts(alerting, writer, None)
    # SSH and other blocking calls run in the default executor: give it room for many at once.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="pocketnoc-io"))
    return PollingParts(alerting, writer, Poller(settings, submit(writer.submit), writer.has_room))


def _serve_role(settings: Settings) -> Role:
    return "scheduler" if settings.scheduler == "queue" else "serve"


def start(svc: Services) -> None:
    """Start writer, poller and dispatcher (needs a running event loop)."""
    parts = build_pipeline(_serve_role(svc.settings), svc)
    svc.alerting, svc.writer = parts.alerting, parts.writer
    if parts.poller is None:  # scaled out: `pocketnoc worker` processes poll, this process schedules
        from server.polling.dispatch_queue import QueueDispatcher

        queued = QueueDispatcher(svc, lambda: all_jobs(svc))
        svc.dispatcher = queued
        queued.sync(all_jobs(svc))
        queued.start()
        log.info("queue mode: %d checks scheduled for the workers", len(queued.jobs))
    else:
        svc.poller = parts.poller
        dispatcher = InProcessDispatcher(parts.poller)
        svc.dispatcher = dispatcher
        dispatcher.sync(all_jobs(svc))
        dispatcher.start()
        log.info("polling %d checks", len(dispatcher.jobs))
    notify_runtime.start(svc)  # the notification worker: outbox -> channels and phones


def reschedule(svc: Services, removed_device: int | None = None) -> None:
    """Re-read the inventory after a change made through the API."""
    if removed_device is not None:
        if svc.poller:
            svc.poller.forget(removed_device)
        if svc.writer:
            svc.writer.forget_device(removed_device)
    if svc.writer is not None:
        svc.writer.inventory_changed()
    if svc.dispatcher is not None:
        svc.dispatcher.sync(all_jobs(svc))


def _engine_id(svc: Services) -> bytes:
    """The trap receiver's SNMPv3 engine id, made once and kept (devices may pin it for informs)."""
    with svc.engine.begin() as conn:
        found = meta.get_or_create(conn, "trap_engine_id", (bytes.fromhex("80001f8805") + os.urandom(8)).hex())
    return bytes.fromhex(found)


async def start_traps(svc: Services) -> None:
    """Listen for SNMP traps and informs when a trap port is configured."""
    s = svc.settings
    if s.trap_port is None or svc.writer is None:
        return
    users = [
        SnmpCredentials(
            version="3",
            user=u.user,
            auth_protocol=u.auth_protocol,
            auth_key=u.auth_key,
            priv_protocol=u.priv_protocol,
            priv_key=u.priv_key,
        )
        for u in s.trap_v3_users
    ]
    receiver = TrapReceiver(s.trap_host, s.trap_port, s.trap_communities, users, svc.writer.submit, engine_id=_engine_id(svc))
    try:
        await receiver.start()
    except OSError as exc:
        log.error("cannot receive traps on %s:%s: %s", s.trap_host, s.trap_port, exc)
        return
    svc.traps = receiver
    log.info("receiving SNMP traps on %s:%d", s.trap_host, receiver.port)


async def stop(svc: Services) -> None:
    """Stop scheduling, close collectors, commit what is queued."""
    await notify_runtime.stop(svc)
    receiver, svc.traps = svc.traps, None
    if receiver is not None:
        await receiver.stop()
    if svc.dispatcher is not None:
        await svc.dispatcher.stop()
        svc.dispatcher = None
    if svc.poller is not None:
        await svc.poller.close()
        svc.poller = None
    if svc.writer is not None:
        svc.writer.stop()
        svc.writer = None
