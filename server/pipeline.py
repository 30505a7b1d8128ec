"""Wiring of the polling pipeline: inventory sync, writer, poller, dispatcher; start, stop, reschedule."""

from __future__ import annotations

import logging

from server.config import LoadedConfig
from server.dispatch import InProcessDispatcher
from server.jobs import CheckJob, jobs_for
from server.poller import Poller
from server.security import host_key_hook
from server.services import Services
from server.store.devices import load_devices, sync_config_devices
from server.writer import Writer

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


def start(svc: Services) -> None:
    """Start writer, poller and dispatcher (needs a running event loop)."""
    svc.writer = Writer(svc.engine, svc.settings, hooks=[host_key_hook])
    svc.writer.start()
    svc.poller = Poller(svc.settings, svc.writer.submit)
    dispatcher = InProcessDispatcher(svc.poller)
    svc.dispatcher = dispatcher
    dispatcher.sync(all_jobs(svc))
    dispatcher.start()
    log.info("polling %d checks", len(dispatcher.jobs))


def reschedule(svc: Services, removed_device: int | None = None) -> None:
    """Re-read the inventory after a change made through the API."""
    if removed_device is not None:
        if svc.poller:
            svc.poller.forget(removed_device)
        if svc.writer:
            svc.writer.forget_device(removed_device)
    if svc.dispatcher is not None:
        svc.dispatcher.sync(all_jobs(svc))


async def stop(svc: Services) -> None:
    """Stop scheduling, close collectors, commit what is queued."""
    if svc.dispatcher is not None:
        await svc.dispatcher.stop()
        svc.dispatcher = None
    if svc.poller is not None:
        await svc.poller.close()
        svc.poller = None
    if svc.writer is not None:
        svc.writer.stop()
        svc.writer = None
