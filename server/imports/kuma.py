"""Uptime Kuma backup/export JSON -> devices with ping/TCP/HTTP checks, and channels where Apprise has them.

Monitors are grouped by the host they watch (one device per host, one check per monitor); Kuma groups become
tags; each notification a monitor used becomes a route matching a tag the device carries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from email.utils import parseaddr
from typing import Any
from urllib.parse import quote, urlsplit

from server.config.inventory import validate_address
from server.imports.common import Imported, ImportError_, items, safe_name, shown

DEFAULT_INTERVAL = 60
_REGEX_SPECIALS = set("\\.^$|?*+()[]{}")


def _q(value: object) -> str:
    return quote(str(value or ""), safe="")


def _host(url: object) -> tuple[str, bool]:
    parts = urlsplit(str(url or ""))
    return (parts.netloc or parts.path).strip("/"), parts.scheme.lower() != "http"


def _telegram(c: dict[str, Any]) -> str | None:
    token, chat = c.get("telegramBotToken"), c.get("telegramChatID")
    return f"tgram://{_q(token)}/{_q(chat)}/" if token and chat else None


def _discord(c: dict[str, Any]) -> str | None:
    parts = urlsplit(str(c.get("discordWebhookUrl") or "")).path.strip("/").split("/")
    return f"discord://{_q(parts[-2])}/{_q(parts[-1])}/" if len(parts) >= 2 and "webhooks" in parts else None


def _slack(c: dict[str, Any]) -> str | None:
    parts = urlsplit(str(c.get("slackwebhookURL") or "")).path.strip("/").split("/")
    if len(parts) != 4 or parts[0] != "services":
        return None
    channel = str(c.get("slackchannel") or "").lstrip("#")
    return f"slack://{'/'.join(_q(p) for p in parts[1:])}/" + (f"#{_q(channel)}" if channel else "")


def _smtp(c: dict[str, Any]) -> str | None:
    host, to = c.get("smtpHost"), c.get("smtpTo")
    if not host or not to:
        return None
    scheme = "smtps" if c.get("smtpSecure") else "smtp"
    login = f"{_q(c.get('smtpUsername'))}:{_q(c.get('smtpPassword'))}@" if c.get("smtpUsername") else ""
    port = f":{int(c['smtpPort'])}" if isinstance(c.get("smtpPort"), int) else ""
    sender_address = parseaddr(str(c.get("smtpFrom") or ""))[1]  # "Uptime Kuma <alerts@example.net>" -> the address
    sender = f"from={_q(sender_address)}&" if sender_address else ""
    return f"{scheme}://{login}{host}{port}/?{sender}to={_q(to)}"


def _webhook(c: dict[str, Any]) -> str | None:
    url = str(c.get("webhookURL") or "")
    return url if url.lower().startswith(("https://", "http://")) else None


def _ntfy(c: dict[str, Any]) -> str | None:
    host, tls = _host(c.get("ntfyserverurl") or "https://ntfy.sh")
    topic = c.get("ntfytopic")
    if not topic or not host:
        return None
    login = f"{_q(c.get('ntfyusername'))}:{_q(c.get('ntfypassword'))}@" if c.get("ntfyusername") else ""
    token = f"?token={_q(c['ntfyaccesstoken'])}" if c.get("ntfyaccesstoken") else ""
    return f"{'ntfys' if tls else 'ntfy'}://{login}{host}/{_q(topic)}{token}"


def _gotify(c: dict[str, Any]) -> str | None:
    host, tls = _host(c.get("gotifyserverurl"))
    token = c.get("gotifyapplicationToken")
    return f"{'gotifys' if tls else 'gotify'}://{host}/{_q(token)}" if host and token else None


def _pushover(c: dict[str, Any]) -> str | None:
    user, token = c.get("pushoveruserkey"), c.get("pushoverapptoken")
    return f"pover://{_q(user)}@{_q(token)}" if user and token else None


CHANNELS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "telegram": _telegram, "discord": _discord, "slack": _slack, "smtp": _smtp, "webhook": _webhook,
    "ntfy": _ntfy, "gotify": _gotify, "pushover": _pushover,
}  # fmt: skip


def _config(raw: dict[str, Any]) -> dict[str, Any]:
    """A notification's settings: a JSON string in backups, an object in some exports."""
    config = raw.get("config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except (ValueError, RecursionError):  # not JSON, or a number too long for Python
            config = None
    return config if isinstance(config, dict) else {}


def _channels(result: Imported, notifications: list[Any]) -> dict[int, str]:
    from server.notify.channels import ChannelError, build

    taken: set[str] = set()
    by_id: dict[int, str] = {}
    for raw in notifications:
        if not isinstance(raw, dict):
            result.skip("a notification", "not an object")
            continue
        config = _config(raw)
        label, kind = raw.get("name") or config.get("name") or f"notification {raw.get('id')}", str(config.get("type") or "")
        make = CHANNELS.get(kind)
        what = f"notification {label!r} ({shown(kind, 30) or 'no type'})"
        try:
            url = make(config) if make is not None else None
        except ValueError:  # a malformed server URL
            result.skip(what, "a malformed URL in its settings")
            continue
        if make is None:
            result.skip(what, "no Apprise channel for this type in the importer; add it by hand")
            continue
        if url is None:
            result.skip(what, "its settings are incomplete (no token, URL or recipient)")
            continue
        try:
            build(url)
        except ChannelError as exc:  # the message names the problem, never the URL (it holds the secret)
            result.skip(what, f"refused: {shown(exc, 200)}")
            continue
        name = safe_name(label, taken, "channel", lower=True)
        result.channels.append({"name": name, "url": url, **({} if raw.get("active", 1) else {"enabled": False})})
        if isinstance(raw.get("id"), int):
            by_id[raw["id"]] = name
    return by_id


def _expected(codes: object) -> list[int] | None:
    """Kuma's accepted codes ("200-299", "301") as a list; None for the default 2xx (or what cannot be listed)."""
    if not isinstance(codes, list) or codes in (["200-299"], []):
        return None
    out: list[int] = []
    for code in codes:
        low, _, high = str(code).partition("-")
        if not low.isdigit() or (high and not high.isdigit()) or int(high or low) - int(low) > 100:
            return None
        out.extend(range(int(low), int(high or low) + 1))
    return out[:200]


def _escape(text: str) -> str:
    return "".join("\\" + ch if ch in _REGEX_SPECIALS else ch for ch in text)


def _check(m: dict[str, Any], kind: str, result: Imported) -> tuple[str | None, dict[str, Any] | None]:
    """(host, check) for one monitor, or (None, None) after reporting why it cannot be imported."""
    every = m.get("interval")
    interval = min(max(every, 5), 86400) if isinstance(every, int) else DEFAULT_INTERVAL
    timeout = m.get("timeout")
    timeout = min(float(timeout), 120.0, interval - 1.0) if isinstance(timeout, int | float) and timeout > 0 else None
    check: dict[str, Any] = {"type": kind, "name": "", "interval": interval}
    if timeout:
        check["timeout"] = max(timeout, 1.0)
    if kind in ("http", "keyword"):
        url = str(m.get("url") or "")
        host = urlsplit(url).hostname if url.lower().startswith(("http://", "https://")) else None
        if not host:
            return None, None
        check.update(type="http", url=url)
        if str(m.get("method") or "GET").upper() in ("HEAD", "POST", "PUT", "OPTIONS"):
            check["method"] = str(m["method"]).upper()
        if (codes := _expected(m.get("accepted_statuscodes"))) is not None:
            check["expected_status"] = codes
        if m.get("maxredirects"):
            check["follow_redirects"] = True
        if m.get("ignoreTls"):
            check["verify_tls"] = False
        if kind == "keyword":
            if m.get("invertKeyword"):
                why = "an inverted keyword cannot be expressed; imported as a plain HTTP check"
                result.notes.append(f"monitor {shown(repr(m.get('name')))}: {why}")
            elif m.get("keyword"):
                check["body_regex"] = _escape(str(m["keyword"]))[:1000]
        return host, check
    host = str(m.get("hostname") or "").strip()
    if kind == "port":
        if not isinstance(m.get("port"), int) or not 1 <= m["port"] <= 65535:
            return None, None
        check.update(type="tcp", port=m["port"])
    return host or None, check


def convert(data: Any) -> Imported:
    """Map an Uptime Kuma backup (monitorList, notificationList) to devices and channels."""
    if not isinstance(data, dict) or "monitorList" not in data:
        raise ImportError_("not an Uptime Kuma backup: expected an object with monitorList (Settings > Backup > Export)")
    result = Imported()
    channel_of = _channels(result, items(data.get("notificationList") or [], "notificationList"))
    monitors = [m for m in items(data["monitorList"], "monitorList") if isinstance(m, dict)]
    groups = {m["id"]: m for m in monitors if m.get("type") == "group" and isinstance(m.get("id"), int | str)}
    devices: dict[str, dict[str, Any]] = {}
    device_names: set[str] = set()
    for m in monitors:
        kind, label = str(m.get("type") or ""), m.get("name") or f"monitor {m.get('id')}"
        what = f"monitor {label!r} ({shown(kind, 30)})"
        if kind == "group":
            continue
        if kind not in ("http", "keyword", "port", "ping"):
            result.skip(what, f"pocketnoc has no {shown(kind, 30) or 'such'} check; not imported")
            continue
        if m.get("upsideDown"):
            result.skip(what, "upside-down mode (down means ok) has no pocketnoc equivalent; not imported")
            continue
        try:
            host, check = _check(m, kind, result)
        except (ValueError, OverflowError):  # a malformed URL, a timeout too big for a float
            result.skip(what, "a malformed URL or number in it; not imported")
            continue
        try:
            address = validate_address(host or "")
        except ValueError:
            result.skip(what, "no usable host name or address")
            continue
        if check is None:
            result.skip(what, "incomplete (no URL or port)")
            continue
        device = devices.get(address)
        if device is None:
            name = safe_name(address, device_names, "device")
            device = devices[address] = {"name": name, "address": address, "tags": [], "checks": [], "_names": set(),
                                         "enabled": False}
        check["name"] = safe_name(label, device["_names"], "check")
        if len(device["checks"]) >= 20:
            result.skip(what, f"device {device['name']} already has 20 checks, the most one device can have")
            continue
        device["checks"].append(check)
        device["enabled"] = device["enabled"] or bool(m.get("active", True))
        tags = device["tags"]
        parent = groups.get(m["parent"]) if isinstance(m.get("parent"), int | str) else None
        if parent is not None:
            tags.append(safe_name(parent.get("name"), set(), "group")[:32].strip("-._") or "group")
        for tag in m.get("tags") or []:
            if isinstance(tag, dict) and tag.get("name"):
                tags.append(safe_name(tag["name"], set(), "tag")[:32].strip("-._") or "tag")
        chosen = m.get("notificationIDList") or {}
        for key, on in (chosen.items() if isinstance(chosen, dict) else []):
            digits = str(key).isascii() and str(key).isdigit() and len(str(key)) < 12  # not '\u00b2', not 5,000 digits
            channel = channel_of.get(int(key)) if digits and on else None
            if channel is not None:
                tags.append(f"notify-{channel}"[:32].strip("-._"))
    for device in devices.values():
        del device["_names"]
        device["tags"] = sorted(set(device["tags"]))[:32]
        if not device["tags"]:
            del device["tags"]
        if device["enabled"]:
            del device["enabled"]
        else:
            result.notes.append(f"device {device['name']}: every monitor of it is paused in Uptime Kuma; imported disabled")
        result.devices.append(device)
    if result.channels:
        result.routes.append({"name": "everyone", "users": ["*"]})
        for made in result.channels:
            tag = f"notify-{made['name']}"[:32].strip("-._")
            result.routes.append({"name": f"to-{made['name']}"[:64], "match": {"tags": [tag]}, "channels": [made["name"]]})
    return result
