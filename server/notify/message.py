"""What a notification says: payloads built from alerts, rendered as plain text, HTML (escaped) or push JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from server.logsafe import finalize, visible, visible_data

MAX_TITLE = 160
MAX_LINE = 300
MAX_LINES = 25
_INVISIBLE = re.compile(r"[\u200b-\u200f]")  # zero-width characters: dropped (controls are made visible)
_TEMPLATES = Path(__file__).resolve().parent.parent.parent / "web" / "templates"
_ENV = Environment(loader=FileSystemLoader(str(_TEMPLATES)), autoescape=select_autoescape(default=True), auto_reload=False,
                   finalize=finalize)
SEVERITY_WORD = {"critical": "CRITICAL", "warning": "WARNING", "info": "INFO"}


def clean(text: object, limit: int = MAX_LINE, one_line: bool = True) -> str:
    """Device text made safe to show anywhere: controls and bidi characters visible (\\x1b), bounded, one line unless
    asked."""
    value = str(text if text is not None else "")[: limit * 4]
    value = visible(_INVISIBLE.sub("", value.replace("\t", " ")), multiline=True)
    if one_line:
        value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def when(ts: float | None) -> str:
    """A UTC time stamp for messages."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else "–"


def dedup_key(alert_id: int, episode: int) -> str:
    """The stable key of one incident: every message about it carries this."""
    return f"pocketnoc-{alert_id}-{episode}"


@dataclass(frozen=True, slots=True)
class Note:
    """One message ready for a channel: heading, plain text, HTML, and the facts channels may map to fields."""

    kind: str
    heading: str
    text: str
    html: str
    severity: str
    dedup_key: str
    link: str
    payload: dict[str, Any]


def alert_payload(kind: str, alert: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON kept with a message about an alert (bounded, cleaned text only)."""
    return {
        "kind": kind,
        "alert_id": int(alert.id),
        "episode": int(alert.episode),
        "severity": str(alert.severity),
        "title": clean(alert.title, MAX_TITLE),
        "device": clean(alert.device_name, 64),
        "rule": clean(alert.rule, 64),
        "started_at": float(alert.started_at),
        "resolved_at": float(alert.resolved_at) if alert.resolved_at else None,
        "path": f"/alerts/{int(alert.id)}",
        **({"flapping": True} if kind in ("trigger", "reminder", "escalate") and getattr(alert, "flapping", False) else {}),
        **(extra or {}),
    }


def heading(payload: dict[str, Any]) -> str:
    """The one-line title of a message."""
    kind = payload.get("kind", "")
    sev = SEVERITY_WORD.get(str(payload.get("severity")), "ALERT")
    title = clean(payload.get("title", ""), MAX_TITLE)
    if kind == "resolve":
        if payload.get("flapping"):
            return f"Stable again · {title}"
        back = int(payload.get("recovered_count") or 0)
        return f"Resolved · {title}" + (f" (+{back} behind it)" if back else "")
    if kind == "flapping":
        return f"{sev} · {title} (flapping)"
    if kind == "escalate":
        return f"{sev} · {title} (escalated)"
    if kind == "reminder":
        return f"{sev} · {title} (still firing)"
    if kind in ("summary", "test", "system"):
        return title
    hidden = int(payload.get("dependents_count") or 0)
    flap = " (flapping)" if payload.get("flapping") else ""  # a trigger sent after the flap began says it itself
    if hidden:
        return f"{sev} · {title}{flap} (+{hidden} behind it)"
    return f"{sev} · {title}{flap}"


def lines(payload: dict[str, Any]) -> list[str]:
    """The body of a message as lines of text."""
    kind = payload.get("kind")
    if kind in ("summary", "test", "system"):
        return [clean(x) for x in payload.get("lines", [])][:MAX_LINES]
    out = [
        f"Device: {clean(payload.get('device'), 64)}",
        f"Severity: {clean(payload.get('severity'), 16)}",
        f"Rule: {clean(payload.get('rule'), 64)}",
        f"Since: {when(payload.get('started_at'))}",
    ]
    if kind == "resolve":
        out.append(f"Resolved: {when(payload.get('resolved_at'))}")
    out += dependents_lines(payload)
    if kind == "flapping":
        out.append("Flapping: it keeps failing and recovering; one alert stays open, the next message says when it is stable")
    if payload.get("step"):
        out.append(f"Escalation step {int(payload['step'])}: not acknowledged yet")
    return out


def _names(names: object, count: int) -> str:
    listed = [clean(n, 64) for n in (names if isinstance(names, list) else [])]
    more = count - len(listed)
    return ", ".join(listed) + (f" and {more} more (see the link)" if more > 0 else "")


def dependents_lines(payload: dict[str, Any]) -> list[str]:
    """What a parent's message says about the devices behind it (hidden by its outage, recovered with it)."""
    out = []
    hidden = int(payload.get("dependents_count") or 0)
    if hidden:
        out.append(f"Unreachable behind it ({hidden}): {_names(payload.get('dependents'), hidden)}")
    back = int(payload.get("recovered_count") or 0)
    if back:
        out.append(f"Recovered with it ({back}): {_names(payload.get('recovered'), back)}")
    down = int(payload.get("still_down_count") or 0)
    if down:
        out.append(f"Still down behind it ({down}, reported on their own): {_names(payload.get('still_down'), down)}")
    return out


def build_note(payload: dict[str, Any], key: str, base_url: str | None) -> Note:
    """Render a stored payload for delivery (plain text and escaped HTML)."""
    # Without base_url there is no absolute address to link to: a relative "/alerts/7" is useless in a chat
    # or a mail, so the link is left out (channels omit an empty link; the start log and the channels page say why).
    link = base_url.rstrip("/") + str(payload.get("path") or "/alerts") if base_url else ""
    payload = visible_data(payload)  # webhooks carry the payload as it is: device text in it shows ESC as \x1b
    head = heading(payload)
    body = lines(payload)
    text = "\n".join([*body, "", *([f"Open: {link}"] if link else []), f"Key: {key}"])
    html = _ENV.get_template("notify_email.html").render(heading=head, lines=body, link=link, key=key,
                                                         severity=str(payload.get("severity") or ""))
    return Note(str(payload.get("kind")), head, text, html, str(payload.get("severity") or "info"), key, link, payload)


def push_json(note: Note, token: str | None, can_act: bool) -> dict[str, Any]:
    """The decrypted push payload the service worker reads (kept well under the 4 KB push limit)."""
    alert_id = note.payload.get("alert_id")
    actionable = can_act and token is not None and note.kind in ("trigger", "escalate", "reminder")
    return {
        "v": 1,
        "kind": note.kind,
        "title": clean(note.heading, MAX_TITLE),
        "body": clean(" · ".join(lines(note.payload)[:3]), 400),
        "device": clean(note.payload.get("device", ""), 64),
        "severity": note.severity,
        "tag": note.dedup_key,
        "url": str(note.payload.get("path") or "/alerts"),
        "alert_id": alert_id,
        "token": token if actionable else None,
        "actions": [{"action": "ack", "title": "Acknowledge"}, {"action": "snooze", "title": "Snooze 1 h"}] if actionable else [],
        "renotify": note.kind != "resolve",
        "silent": note.kind == "resolve",
    }
