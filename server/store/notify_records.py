"""Typed records of the notification tables, as the store hands them to the notification worker and the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, TypeAlias, TypedDict

from server.store.jsontypes import JsonObject, JsonValue


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """A notify_outbox row: an alert change that may notify."""

    id: int
    alert_id: int
    kind: str
    username: str | None
    ts: float
    done_at: float | None


@dataclass(frozen=True, slots=True)
class NotifyAlert:
    """What routing, holds and payloads read of an alert: its state, its times, its device's name and tags."""

    id: int
    rule: str
    severity: str
    title: str
    status: str
    episode: int
    device_id: int
    device_name: str
    device_tags: list[str] | None
    started_at: float
    resolved_at: float | None
    acked_at: float | None
    snoozed_until: float | None
    suppressed_by: int | None
    flapping: bool


@dataclass(frozen=True, slots=True)
class Track:
    """A notify_tracks row: an alert's escalation state."""

    alert_id: int
    episode: int
    status: str
    notified: bool
    plan: list[dict[str, JsonValue]]
    next_at: float | None
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMessage:
    """A notify_messages row to insert: what to send to whom, and when (a new message waits, unsent)."""

    created_at: float
    next_at: float
    kind: str
    dedup_key: str
    target_type: str
    target_id: int
    user_id: int | None
    payload: JsonObject
    alert_id: int | None = None
    episode: int | None = None
    status: str = "pending"
    attempts: int = 0
    summary_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Message(NewMessage):
    """A notify_messages row (as claimed: locked_until is the claim, the fence finishing it checks)."""

    id: int
    locked_until: float | None
    sent_at: float | None
    last_status: str | None
    last_error: str | None


class NotifiedTarget(NamedTuple):
    """A target that was sent (or will be sent) a firing message about an incident."""

    target_type: str
    target_id: int
    user_id: int | None


class Attempt(NamedTuple):
    """One finished send of a claimed message: result is ok, retry, dead, gone or skipped."""

    row: Message
    now: float
    result: str
    status: str
    detail: str
    ms: float | None
    next_at: float | None


class Receipt(TypedDict):
    """A delivery receipt as the API shows it."""

    ts: float
    result: str
    status: str | None
    detail: str | None
    ms: float | None


# A message as the API and pages show it: the row's columns, in table order, then "deliveries" (its Receipts) and
# "possible_duplicate" (whether an attempt followed one that may have arrived).
MessageView: TypeAlias = dict[str, object]
