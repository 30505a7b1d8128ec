"""SQL of notification targets: channels (URLs sealed), push subscriptions (sealed), recipients, action tokens, meta."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict

from sqlalchemy import Connection, Row, delete, insert, select, update

from server.keys.secretbox import SecretBox
from server.store import meta
from server.store.jsontypes import JsonObject
from server.store.schema import notify_channels, notify_tokens, push_subscriptions, users


class TargetError(ValueError):
    """A channel or subscription change that cannot be made."""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# ---------------------------------------------------------------- channels


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """A notify_channels row: the URL sealed in `secret`, its masked form in `display`."""

    id: int
    name: str
    kind: str
    secret: bytes
    display: str
    user_id: int | None
    enabled: bool
    allow_unsafe: bool
    source: str
    status: str
    failures: int
    broken_since: float | None
    last_ok: float | None
    last_attempt: float | None
    last_error: str | None
    created_at: float
    updated_at: float


def _channel(row: Row[Any]) -> ChannelRow:
    return ChannelRow(**row._mapping)


# What a viewer sees of a channel: its name, kind and health, never where it points or what it last answered.
VIEWER_FIELDS = ("id", "name", "kind", "enabled", "status", "failures", "broken_since", "last_ok", "last_attempt")


class ChannelValues(TypedDict):
    """A channel to store: `url` is sealed, `display` is its masked form."""

    name: str
    kind: str
    url: str
    display: str
    user_id: int | None
    enabled: bool
    allow_unsafe: bool
    source: str


def channel_view(row: ChannelRow, owner: str | None = None, full: bool = True) -> JsonObject:
    """A channel as the API shows it: never the URL; its masked form only when `full` (operators and admins)."""
    view: JsonObject = {
        "id": row.id,
        "name": row.name,
        "kind": row.kind,
        "url": row.display,
        "user": owner,
        "enabled": bool(row.enabled),
        "allow_unsafe": bool(row.allow_unsafe),
        "source": row.source,
        "status": row.status,
        "failures": row.failures,
        "broken_since": row.broken_since,
        "last_ok": row.last_ok,
        "last_attempt": row.last_attempt,
        "last_error": row.last_error,
    }
    return view if full else {key: view[key] for key in VIEWER_FIELDS}


def list_channels(conn: Connection, full: bool = True) -> list[JsonObject]:
    """All channels, masked (`full=False`: a viewer's view, name, kind and health only)."""
    names = dict(conn.execute(select(users.c.id, users.c.name)).all())
    rows = conn.execute(select(notify_channels).order_by(notify_channels.c.name))
    return [channel_view(_channel(r), names.get(r.user_id), full) for r in rows]


def set_display(conn: Connection, channel_id: int, display: str) -> None:
    """Store a channel's masked URL again (after the masking rule changed)."""
    conn.execute(update(notify_channels).where(notify_channels.c.id == channel_id).values(display=display[:300]))


def channel_rows(conn: Connection, ids: list[int] | None = None) -> list[ChannelRow]:
    """Channel rows (with sealed URLs), all or by id."""
    query = select(notify_channels)
    if ids is not None:
        query = query.where(notify_channels.c.id.in_(ids))
    return [_channel(r) for r in conn.execute(query)]


def channel_url(box: SecretBox, row: ChannelRow) -> str:
    """The real URL of a channel (decrypted)."""
    return str(box.open(row.secret).get("url", ""))


def save_channel(conn: Connection, box: SecretBox, values: ChannelValues, now: float, channel_id: int | None = None) -> int:
    """Create (or replace the URL and settings of) a channel; the URL is sealed."""
    row: dict[str, object] = {key: value for key, value in values.items() if key != "url"}
    row["secret"] = box.seal({"url": values["url"]})
    row["updated_at"] = now
    if channel_id is None:
        clash = conn.execute(select(notify_channels.c.id).where(notify_channels.c.name == row["name"])).first()
        if clash is not None:
            raise TargetError(f"a channel named {row['name']!r} exists")
        result = conn.execute(insert(notify_channels).values(created_at=now, status="ok", failures=0, **row))
        return int(result.inserted_primary_key[0])  # type: ignore[index]
    conn.execute(update(notify_channels).where(notify_channels.c.id == channel_id).values(
        status="ok", failures=0, broken_since=None, last_error=None, **row))
    return channel_id


def delete_channel(conn: Connection, channel_id: int) -> ChannelRow | None:
    """Remove a channel; returns the removed row (None when there was none)."""
    row = conn.execute(select(notify_channels).where(notify_channels.c.id == channel_id)).first()
    if row is None:
        return None
    conn.execute(delete(notify_channels).where(notify_channels.c.id == channel_id))
    return _channel(row)


def mark_channel(
    conn: Connection, row: ChannelRow, ok: bool, detail: str, now: float, broken_after: int, count: int = 1
) -> str | None:
    """Count channel attempts (`count` failures, or a success); returns "broken" or "recovered" on a change of health."""
    if ok:
        conn.execute(update(notify_channels).where(notify_channels.c.id == row.id).values(
            status="ok", failures=0, broken_since=None, last_ok=now, last_attempt=now, last_error=None))
        return "recovered" if row.status == "broken" else None
    current = conn.execute(select(notify_channels.c.failures, notify_channels.c.status)
                           .where(notify_channels.c.id == row.id)).first()
    if current is None:
        return None
    failures = int(current.failures) + count
    broken = failures >= broken_after
    conn.execute(update(notify_channels).where(notify_channels.c.id == row.id).values(
        failures=failures, status="broken" if broken else "failing", last_attempt=now, last_error=detail[:2000],
        broken_since=(now if broken and current.status != "broken" else notify_channels.c.broken_since)))
    return "broken" if broken and current.status != "broken" else None


# ---------------------------------------------------------------- recipients


class Recipient(NamedTuple):
    """An enabled user as routing sees them."""

    id: int
    name: str
    role: str


def recipients(conn: Connection, names: list[str]) -> list[Recipient]:
    """Enabled users by name ("*" = every enabled user)."""
    query = select(users.c.id, users.c.name, users.c.role).where(users.c.disabled.is_(False))
    if "*" not in names:
        query = query.where(users.c.name.in_(names))
    return [Recipient(int(r.id), str(r.name), str(r.role)) for r in conn.execute(query)]


def user_ids(conn: Connection) -> dict[str, int]:
    """Every user's id by name."""
    return {str(name): int(uid) for name, uid in conn.execute(select(users.c.name, users.c.id))}


def user_role(conn: Connection, user_id: int) -> tuple[str, bool] | None:
    """A user's role and whether they are disabled."""
    row = conn.execute(select(users.c.role, users.c.disabled).where(users.c.id == user_id)).first()
    return (str(row.role), bool(row.disabled)) if row is not None else None


# ---------------------------------------------------------------- push subscriptions


def add_subscription(conn: Connection, box: SecretBox, user_id: int, sub: dict[str, str], service: str, label: str,
                     now: float) -> int:
    """Store a browser's push subscription (sealed); a known endpoint moves to this user and is refreshed."""
    digest = _digest(sub["endpoint"])
    sealed = box.seal({"endpoint": sub["endpoint"], "p256dh": sub["p256dh"], "auth": sub["auth"]})
    found = conn.execute(select(push_subscriptions.c.id).where(push_subscriptions.c.endpoint_hash == digest)).first()
    if found is not None:
        conn.execute(update(push_subscriptions).where(push_subscriptions.c.id == found.id).values(
            user_id=user_id, secret=sealed, label=label, service=service, failures=0, last_error=None))
        return int(found.id)
    result = conn.execute(insert(push_subscriptions).values(
        user_id=user_id, endpoint_hash=digest, secret=sealed, service=service, label=label, created_at=now, failures=0))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    """A push_subscriptions row: endpoint and keys sealed in `secret`."""

    id: int
    user_id: int
    endpoint_hash: str
    secret: bytes
    service: str
    label: str
    created_at: float
    last_ok: float | None
    last_error: str | None
    failures: int


class SubscriptionView(TypedDict):
    """A subscribed device as its owner sees it."""

    id: int
    label: str
    service: str
    created_at: float
    last_ok: float | None
    last_error: str | None
    failures: int


class PushKeys(TypedDict):
    """The browser's keys of a push subscription."""

    p256dh: str
    auth: str


class PushSubscriptionInfo(TypedDict):
    """pywebpush's subscription_info."""

    endpoint: str
    keys: PushKeys


def subscription_view(row: SubscriptionRow) -> SubscriptionView:
    """A subscription as its owner sees it (the endpoint is a capability: never shown)."""
    return {"id": row.id, "label": row.label, "service": row.service, "created_at": row.created_at, "last_ok": row.last_ok,
            "last_error": row.last_error, "failures": row.failures}


def list_subscriptions(conn: Connection, user_id: int) -> list[SubscriptionView]:
    """One user's subscribed devices."""
    rows = conn.execute(select(push_subscriptions).where(push_subscriptions.c.user_id == user_id)
                        .order_by(push_subscriptions.c.id))
    return [subscription_view(SubscriptionRow(**r._mapping)) for r in rows]


def subscription_rows(conn: Connection, ids: list[int] | None = None, user_ids: list[int] | None = None) -> list[SubscriptionRow]:
    """Subscription rows (sealed) by id or by user."""
    query = select(push_subscriptions)
    if ids is not None:
        query = query.where(push_subscriptions.c.id.in_(ids))
    if user_ids is not None:
        query = query.where(push_subscriptions.c.user_id.in_(user_ids))
    return [SubscriptionRow(**r._mapping) for r in conn.execute(query)]


def subscription_keys(box: SecretBox, row: SubscriptionRow) -> PushSubscriptionInfo:
    """pywebpush's subscription_info of a stored subscription."""
    data = box.open(row.secret)
    return {"endpoint": str(data["endpoint"]), "keys": {"p256dh": str(data["p256dh"]), "auth": str(data["auth"])}}


def delete_subscription(conn: Connection, sub_id: int, user_id: int | None = None) -> bool:
    """Remove a subscription (only the owner's, when user_id is given)."""
    query = delete(push_subscriptions).where(push_subscriptions.c.id == sub_id)
    if user_id is not None:
        query = query.where(push_subscriptions.c.user_id == user_id)
    return bool(conn.execute(query).rowcount)


def mark_subscription(conn: Connection, sub_id: int, ok: bool, detail: str, now: float) -> None:
    """Count a push attempt for the device list."""
    s = push_subscriptions
    if ok:
        conn.execute(update(s).where(s.c.id == sub_id).values(last_ok=now, failures=0, last_error=None))
    else:
        conn.execute(update(s).where(s.c.id == sub_id).values(failures=s.c.failures + 1, last_error=detail[:500]))


# ---------------------------------------------------------------- action tokens


def issue_token(conn: Connection, message_id: int, user_id: int, alert_id: int, now: float, ttl: float) -> str:
    """A fresh single-use token for a push message (the message's earlier tokens stop working)."""
    conn.execute(delete(notify_tokens).where(notify_tokens.c.message_id == message_id, notify_tokens.c.used_at.is_(None)))
    token = secrets.token_urlsafe(32)
    conn.execute(insert(notify_tokens).values(id=_digest(token), message_id=message_id, user_id=user_id, alert_id=alert_id,
                                              created_at=now, expires_at=now + ttl))
    return token


class ActionToken(NamedTuple):
    """A notify_tokens row (spent): whose it was and which alert it acts on."""

    id: str
    message_id: int
    user_id: int
    alert_id: int
    created_at: float
    expires_at: float
    used_at: float | None


def use_token(conn: Connection, token: str, now: float) -> ActionToken | None:
    """Spend a token: its row when it was valid and unused (it is used up now), else None."""
    if not token or len(token) > 200:
        return None
    digest = _digest(token)
    t = notify_tokens
    spent = conn.execute(update(t).where(t.c.id == digest, t.c.used_at.is_(None), t.c.expires_at > now).values(used_at=now))
    if spent.rowcount != 1:
        return None
    row = conn.execute(select(t).where(t.c.id == digest)).first()
    return ActionToken(**row._mapping) if row is not None else None


# ---------------------------------------------------------------- meta (VAPID key, heartbeat state)


meta_get = meta.get
meta_put = meta.put
meta_get_or_create = meta.get_or_create
