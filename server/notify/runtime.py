"""The notification service of one app: its config, VAPID keys, file channels synced into the database, the worker."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, tzinfo
from typing import TYPE_CHECKING

from server.keys.secretbox import SecretBox
from server.notify import deadman
from server.notify.channels import ChannelError, build
from server.notify.config import NotifyConfig, load_notify_config
from server.notify.webpush import VapidKeys, load_keys
from server.notify.worker import Worker
from server.store import notify_targets as targets
from server.store.db import SYNC_CHANNELS, Connection, serialise_sync

if TYPE_CHECKING:
    from server.runtime import Services

log = logging.getLogger("pocketnoc.notify")


class Notify:
    """Config (reloadable), keys, and the worker when the pipeline runs."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.config: NotifyConfig = load_notify_config(svc.settings.channels_file)
        self.worker: Worker | None = None
        self.monitor = deadman.Monitor(svc.engine)
        self.started = time.time()
        self.problems: list[str] = []
        self._keys: VapidKeys | None = None
        self._lock = threading.Lock()

    def keys(self) -> VapidKeys:
        """The VAPID keys (made on first use and kept sealed)."""
        with self._lock:
            if self._keys is None:
                self._keys = load_keys(self.svc.engine, self.svc.box, self.config.push.subject)
            return self._keys

    def reload(self) -> int:
        """Re-read the notifications file and re-sync its channels; ConfigError keeps the config in force."""
        config = load_notify_config(self.svc.settings.channels_file)
        self.config = config
        with self._lock:
            if self._keys is not None:
                self._keys.subject = config.push.subject
        self.sync_channels()
        return len(config.channels)

    def sync_channels(self) -> None:
        """Make the database's file channels match the file (API channels are left alone)."""
        with self.svc.engine.begin() as conn:
            self.problems = sync_file_channels(conn, self.svc.box, self.config, time.time())
            remask_channels(conn, self.svc.box)
        for problem in self.problems:
            log.warning("notifications file: %s", problem)

    def kick(self) -> None:
        """Wake the worker (after queueing a test message from a request)."""
        if self.worker is not None:
            self.worker.kick()


def sync_file_channels(conn: Connection, box: SecretBox, config: NotifyConfig, now: float) -> list[str]:
    """Upsert the file's channels by name and drop file channels no longer in it; returns the problems found."""
    problems: list[str] = []
    serialise_sync(conn, SYNC_CHANNELS)  # serve processes starting together: one after the other
    existing = {r.name: r for r in targets.channel_rows(conn)}
    wanted: set[str] = set()
    user_ids = targets.user_ids(conn)
    for spec in config.channels:
        row = existing.get(spec.name)
        if row is not None and row.source != "config":
            problems.append(f"channel {spec.name!r}: the name is taken by a channel made through the API")
            continue
        try:
            channel = build(spec.url, spec.allow_unsafe)
        except ChannelError as exc:
            problems.append(f"channel {spec.name!r}: {exc}")
            continue
        user_id = None
        if spec.user is not None:
            user_id = user_ids.get(spec.user)
            if user_id is None:
                problems.append(f"channel {spec.name!r}: no user named {spec.user!r} yet (skipped until there is)")
                continue
        wanted.add(spec.name)
        values: targets.ChannelValues = {"name": spec.name, "kind": channel.kind, "url": spec.url, "display": channel.display(),
                                         "user_id": user_id, "enabled": spec.enabled, "allow_unsafe": spec.allow_unsafe,
                                         "source": "config"}
        if row is None:
            targets.save_channel(conn, box, values, now)
        elif (targets.channel_url(box, row), row.user_id, bool(row.enabled), bool(row.allow_unsafe)) != (
            spec.url, user_id, spec.enabled, spec.allow_unsafe
        ):
            targets.save_channel(conn, box, values, now, row.id)
    for name, row in existing.items():
        if row.source == "config" and name not in wanted and not any(p.startswith(f"channel {name!r}") for p in problems):
            targets.delete_channel(conn, row.id)
    return problems


def remask_channels(conn: Connection, box: SecretBox) -> None:
    """Store every channel's masked URL as today's masking rule makes it (rows written under an older rule)."""
    for row in targets.channel_rows(conn):
        try:
            display = build(targets.channel_url(box, row), bool(row.allow_unsafe)).display()
        except ChannelError:
            display = f"{row.kind}://…"  # no longer parses: show nothing of it
        if display != row.display:
            targets.set_display(conn, row.id, display)


def runtime(svc: Services) -> Notify:
    """The app's notification service (created on first use; the worker runs only with the pipeline)."""
    if svc.notify is None:
        svc.notify = Notify(svc)
    return svc.notify


def silent_label(svc: Services, conn: Connection, zone: tzinfo = UTC) -> str:
    """'14:05 UTC' while monitoring has been silent (the banner of notify_silent.html on the app's pages), else ''."""
    notify = runtime(svc)
    since = deadman.silent_since(conn, time.time(), notify.config.deadman.silent_after_seconds, notify.started)
    return deadman.label(since, zone=zone)


def start(svc: Services) -> None:
    """Sync file channels, make the VAPID keys on first start, and start the worker on the running loop."""
    notify = runtime(svc)
    notify.sync_channels()
    notify.keys()
    if not svc.settings.base_url:
        log.warning("base_url is not set: notifications carry no link back to pocketnoc (set base_url, e.g. https://noc.example.net)")
    notify.worker = Worker(svc.engine, svc.box, lambda: notify.config, notify.keys, svc.settings.base_url, notify.monitor,
                           lease_seconds=svc.settings.lease_seconds)
    notify.worker.start()


async def stop(svc: Services) -> None:
    """Stop the worker (sends in flight get a moment to finish)."""
    notify = svc.notify
    if notify is not None and notify.worker is not None:
        await notify.worker.stop()
        notify.worker = None
