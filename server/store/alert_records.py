"""Alerts and silences as they leave the store: the records the API, the pages and the engine read."""

from __future__ import annotations

from typing import NamedTuple, TypedDict

from server.store.jsontypes import JsonObject


class NewSilence(TypedDict):
    """A maintenance window as stored: by device, tag or everything; `recurrence` as Recurrence dumps it."""

    comment: str
    device_id: int | None
    tag: str | None
    everything: bool
    starts_at: float
    ends_at: float | None
    recurrence: JsonObject | None


class Silence(NewSilence):
    """A stored maintenance window."""

    id: int
    created_by: str | None
    created_at: float


class SilenceView(Silence):
    """A maintenance window as listed: whether it is in force, and its device's name."""

    active: bool
    device: str | None


class DeviceRef(TypedDict):
    """A device named by id and name."""

    id: int
    name: str | None


class AlertEvent(TypedDict):
    """One entry of an alert's history."""

    ts: float
    kind: str
    user: str | None
    text: str


class AlertView(TypedDict):
    """An alert as the API and the pages show it (`state` is what people see; `status` is firing or resolved)."""

    id: int
    rule: str
    device: DeviceRef
    labels: dict[str, str]
    severity: str
    title: str
    state: str
    status: str
    started_at: float
    resolved_at: float | None
    last_value: float | None
    episode: int
    acked_by: str | None
    acked_at: float | None
    snoozed_until: float | None
    suppressed_by: DeviceRef | None
    flapping: bool
    silenced: bool
    hidden: int


class AlertDetail(AlertView):
    """An alert with its history."""

    events: list[AlertEvent]


class AlertList(TypedDict):
    """A page of alerts, the total that matched, and (for open alerts) the count per state."""

    items: list[AlertView]
    total: int
    limit: int
    offset: int
    counts: dict[str, int]


class OpenAlert(NamedTuple):
    """A firing alert as outage dependencies see it."""

    id: int
    device_id: int
    rule: str
    suppressed_by: int | None
