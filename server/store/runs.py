"""SQL of the actions feature: run rows, and the device, alert and state reads that runs and verification need."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import NamedTuple, TypedDict

from sqlalchemy import ColumnElement, Connection, Row, exists, insert, select, update

from server.keys.secretbox import SecretBox
from server.store.alerts import record_event
from server.store.devices import DeviceRow, load_device
from server.store.jsontypes import JsonObject
from server.store.metrics import clean_json, clean_text
from server.store.outbox import enqueue
from server.store.schema import action_runs, alert_states, alerts, device_status, devices


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device as actions see it: its row (with secrets), effective kind, last facts and state."""

    row: DeviceRow
    kind: str | None
    facts: JsonObject
    state: str
    tables: JsonObject = field(default_factory=dict)  # the last poll's tables: ports, disks, services
    parent: str | None = None  # the parent device's name

    @property
    def host_key_changed(self) -> bool:
        """The last SSH poll met a host key other than the pinned one."""
        return self.facts.get("ssh_host_key_problem") == "changed"


def effective_kind(row: DeviceRow, facts: JsonObject) -> str | None:
    """The configured kind, else the SNMP-detected one, else 'linux' when SSH saw a Linux kernel."""
    if row.kind:
        return row.kind
    detected = facts.get("kind")
    if isinstance(detected, str) and detected:
        return detected
    return "linux" if str(facts.get("os") or "").lower().startswith("linux") else None


def device_info(conn: Connection, box: SecretBox, device_id: int) -> DeviceInfo | None:
    """A device with secrets, its effective kind, last facts and state; None if there is no such device."""
    row = load_device(conn, box, device_id)
    if row is None:
        return None
    query = select(device_status.c.facts, device_status.c.state, device_status.c.tables).where(
        device_status.c.device_id == device_id
    )
    status = conn.execute(query).first()
    facts = dict(status.facts or {}) if status is not None else {}
    tables = dict(status.tables or {}) if status is not None else {}
    parent = None
    if row.parent_id is not None:
        parent = conn.execute(select(devices.c.name).where(devices.c.id == row.parent_id)).scalar()
    state = status.state if status is not None else "unknown"
    return DeviceInfo(row, effective_kind(row, facts), facts, state, tables, str(parent) if parent else None)


@dataclass(frozen=True, slots=True)
class AlertBrief:
    """What actions need of an alert: its rule, device and labels (`key` is their stored text), and its state."""

    id: int
    device_id: int
    rule: str
    title: str
    status: str
    key: str
    labels: dict[str, str]
    flapping: bool
    resolved_at: float | None
    held: bool  # its condition is clear but the flapping guard holds it open


class AlertRef(NamedTuple):
    """An alert named by id and title."""

    id: int
    title: str


class NewRun(TypedDict):
    """A run as it starts: what, where, for whom, why and exactly what runs."""

    action_id: str
    title: str
    kind: str
    danger: str
    device_id: int
    device_name: str
    alert_id: int | None
    user_id: int
    username: str
    reason: str
    params: JsonObject
    command: str


class RunEnd(TypedDict):
    """How a run ended (output as [[stream, text], ...])."""

    status: str
    exit_code: int | None
    error: str | None
    output: list[list[str]]
    truncated: bool
    finished_at: float
    duration: float | None


class RunSummary(TypedDict):
    """A run as listed (every column but its output)."""

    id: int
    action_id: str
    title: str
    kind: str
    danger: str
    device_id: int | None
    device_name: str
    alert_id: int | None
    user_id: int | None
    username: str
    reason: str
    params: JsonObject
    command: str
    status: str
    exit_code: int | None
    error: str | None
    truncated: bool
    started_at: float
    finished_at: float | None
    duration: float | None
    verification: str | None
    verification_detail: str | None
    verified_at: float | None


class RunDetail(RunSummary):
    """A run with its output: merged chunks, and each stream's text."""

    output: list[list[str]]
    stdout: str
    stderr: str


def _held() -> ColumnElement[bool]:
    """Whether an alert's condition is clear but it is held open by the flapping guard (a correlated EXISTS)."""
    return exists().where(alert_states.c.alert_id == alerts.c.id, alert_states.c.status == "held")


def alert_brief(conn: Connection, alert_id: int) -> AlertBrief | None:
    """An alert's id, device, rule, title, status, labels (a dict), flapping flag, and whether its condition is
    clear (held open by the flapping guard), or None."""
    held = _held()
    row = conn.execute(
        select(
            alerts.c.id,
            alerts.c.device_id,
            alerts.c.rule,
            alerts.c.title,
            alerts.c.status,
            alerts.c.labels,
            alerts.c.flapping,
            alerts.c.resolved_at,
            held.label("held"),
        ).where(alerts.c.id == alert_id)
    ).first()
    if row is None:
        return None
    key = str(row.labels or "")
    try:
        labels = json.loads(key) if key else {}
    except ValueError:
        labels = {}
    return AlertBrief(
        id=row.id,
        device_id=row.device_id,
        rule=row.rule,
        title=row.title,
        status=row.status,
        key=key,
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        flapping=bool(row.flapping),
        resolved_at=row.resolved_at,
        held=bool(row.held),
    )


def firing_titles(conn: Connection, device_id: int) -> list[str]:
    """Titles of the device's firing alerts (not those whose condition cleared and wait to settle)."""
    held = _held()
    query = (select(alerts.c.title).where(alerts.c.device_id == device_id, alerts.c.status == "firing", ~held)
             .order_by(alerts.c.id))
    return [str(t) for t in conn.execute(query).scalars()]


def device_state(conn: Connection, device_id: int) -> tuple[str, str | None]:
    """The device's state and last error now."""
    row = conn.execute(
        select(device_status.c.state, device_status.c.last_error).where(device_status.c.device_id == device_id)
    ).first()
    return (str(row.state), row.last_error) if row is not None else ("unknown", None)


def create_run(conn: Connection, values: NewRun) -> int:
    """Insert a run (status running) and return its id."""
    result = conn.execute(
        insert(action_runs).values(status="running", output=[], truncated=False, started_at=time.time(), **values)
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def finish_run(conn: Connection, run_id: int, values: RunEnd) -> None:
    """Record how a run ended (status, exit code, output, duration); device text is stored made visible."""
    cleaned = clean_json(dict(values))
    if isinstance(cleaned, dict):
        conn.execute(update(action_runs).where(action_runs.c.id == run_id).values(**cleaned))


def set_verification(conn: Connection, run_id: int, verdict: str, detail: str) -> None:
    """Record the verification verdict of a run."""
    conn.execute(
        update(action_runs)
        .where(action_runs.c.id == run_id)
        .values(verification=verdict, verification_detail=clean_text(detail[:2000]), verified_at=time.time())
    )


def note_on_alert(conn: Connection, alert_id: int, user: str, text: str) -> None:
    """Add the run to the alert's history (kind 'action'), if the alert still exists."""
    if alert_brief(conn, alert_id) is not None:
        record_event(conn, alert_id, "action", user, text)


def _summary(row: Row[tuple[object, ...]]) -> RunSummary:
    m = row._mapping
    return RunSummary(
        id=m["id"], action_id=m["action_id"], title=m["title"], kind=m["kind"], danger=m["danger"],
        device_id=m["device_id"], device_name=m["device_name"], alert_id=m["alert_id"], user_id=m["user_id"],
        username=m["username"], reason=m["reason"], params=m["params"], command=m["command"], status=m["status"],
        exit_code=m["exit_code"], error=m["error"], truncated=m["truncated"], started_at=m["started_at"],
        finished_at=m["finished_at"], duration=m["duration"], verification=m["verification"],
        verification_detail=m["verification_detail"], verified_at=m["verified_at"],
    )  # fmt: skip


def _view(row: Row[tuple[object, ...]]) -> RunDetail:
    output: list[list[str]] = row._mapping["output"] or []
    return RunDetail(
        **_summary(row),
        output=row._mapping["output"],
        stdout="".join(text for stream, text in output if stream == "stdout"),
        stderr="".join(text for stream, text in output if stream == "stderr"),
    )


def get_run(conn: Connection, run_id: int) -> RunDetail | None:
    """One run with its output, or None."""
    row = conn.execute(select(action_runs).where(action_runs.c.id == run_id)).first()
    return _view(row) if row is not None else None


def list_runs(
    conn: Connection, device_id: int | None = None, alert_id: int | None = None, limit: int = 50, before: int | None = None
) -> list[RunSummary]:
    """Runs newest first (without output), for one device, one alert, or all."""
    columns = [c for c in action_runs.c if c.name != "output"]
    query = select(*columns).order_by(action_runs.c.id.desc()).limit(limit)
    if device_id is not None:
        query = query.where(action_runs.c.device_id == device_id)
    if alert_id is not None:
        query = query.where(action_runs.c.alert_id == alert_id)
    if before is not None:
        query = query.where(action_runs.c.id < before)
    return [_summary(r) for r in conn.execute(query)]


def interrupt_unfinished(conn: Connection) -> int:
    """Runs a previous server process left running: mark them interrupted (their outcome is unknown)."""
    now = time.time()
    done = conn.execute(
        update(action_runs)
        .where(action_runs.c.status == "running")
        .values(status="interrupted", error="the server stopped while this ran; its outcome is unknown", finished_at=now)
    ).rowcount
    conn.execute(
        update(action_runs)
        .where(action_runs.c.verification == "checking")
        .values(verification="unverified", verification_detail="the server stopped during verification", verified_at=now)
    )
    return int(done or 0)


def newer_open_alert(conn: Connection, alert: AlertBrief | None) -> AlertRef | None:
    """A later open alert of the same rule, device and labels (the problem came back as a new episode), or None."""
    if alert is None:
        return None
    row = conn.execute(
        select(alerts.c.id, alerts.c.title)
        .where(
            alerts.c.rule == alert.rule,
            alerts.c.device_id == alert.device_id,
            alerts.c.labels == alert.key,
            alerts.c.id > alert.id,
            alerts.c.status != "resolved",
        )
        .order_by(alerts.c.id)
        .limit(1)
    ).first()
    return AlertRef(row.id, row.title) if row is not None else None


def reopen_alert(conn: Connection, alert_id: int, now: float, text: str) -> None:
    """A fix that failed again inside its stability window: the alert it answered is open again.

    When the engine already fired the problem again as a new episode, that alert is folded into this one (resolved
    with a note saying where it continues: whoever was told about it hears it resolved) and the label set's state
    points back here, so one alert tells the story. The reopened alert notifies as a fired one does (same dedup key,
    its track starts again), and the engine resolves it when the problem clears.
    """
    alert = alert_brief(conn, alert_id)
    if alert is None:
        return
    again = newer_open_alert(conn, alert)
    if alert.status == "resolved":
        conn.execute(
            update(alerts)
            .where(alerts.c.id == alert_id)
            .values(status="firing", resolved_at=None, acked_at=None, acked_by=None, updated_at=now)
        )
        record_event(conn, alert_id, "reopened", None, text)
        if again is not None:
            conn.execute(
                update(alerts).where(alerts.c.id == again.id).values(status="resolved", resolved_at=now, updated_at=now)
            )
            record_event(conn, again.id, "resolved", None, f"continues as alert #{alert_id} (reopened: the fix did not hold)")
            conn.execute(update(alert_states).where(alert_states.c.alert_id == again.id).values(alert_id=alert_id))
        else:  # the engine has not seen it fail yet: its state for this label set points here, so it resolves this one
            conn.execute(
                update(alert_states)
                .where(alert_states.c.rule == alert.rule, alert_states.c.device_id == alert.device_id,
                       alert_states.c.labels == alert.key)
                .values(alert_id=alert_id, status="firing", since=now)
            )  # fmt: skip
        enqueue(conn, alert_id, "fired", None, now)
    else:
        record_event(conn, alert_id, "action", None, text)
