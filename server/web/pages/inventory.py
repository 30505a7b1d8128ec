"""Admin pages for the inventory (add, edit, delete API-managed devices through the API's own logic) and the rules list."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from server.auth.access import Admin, Viewer, client_ip
from server.config.inventory import DeviceSpec, error_message
from server.runtime import Services, get_services
from server.services import alerts as alerts_service
from server.services import devices as devices_service
from server.services.bodies import DevicePatch
from server.services.errors import ServiceError
from server.store import overview as overview_store
from server.store.devices import load_device, split_secrets
from server.web import views
from server.web import views_phone as views_app
from server.web.fields import ListQuery
from server.web.pages.common import render, render_error

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]
PAGE_SIZE = 50
FIELD_CAP = 4096
FORM_KINDS = ("ping", "tcp", "http")  # the check kinds the form edits
V3_FIELDS = ("user", "auth_protocol", "auth_key", "priv_protocol", "priv_key")


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip()[:FIELD_CAP] if isinstance(value, str) else ""


def _int(text: str) -> int | str | None:
    """A number field: empty is None, digits are an int, anything else goes to validation as it is."""
    if not text:
        return None
    return int(text) if text.isdigit() and len(text) < 10 else text


def _checks(form: FormData, current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ping/TCP/HTTP checks from the form; a check that stays listed keeps its other options."""
    def kept(kind: str, key: str, value: Any) -> dict[str, Any]:
        found = next((c for c in current if c.get("type") == kind and c.get(key) == value), None)
        return found if found is not None else {"type": kind, key: value}

    out: list[dict[str, Any]] = []
    if _field(form, "ping"):
        out.append(next((c for c in current if c.get("type") == "ping"), {"type": "ping"}))
    for port in re.split(r"[\s,]+", _field(form, "tcp_ports")):
        if port:
            out.append(kept("tcp", "port", _int(port)))
    for url in _field(form, "http_urls").split():
        out.append(kept("http", "url", url))
    return out + [c for c in current if c.get("type") not in FORM_KINDS]  # plug-in checks: not on the form, kept


def _snmp(form: FormData, current: dict[str, Any] | None) -> dict[str, Any] | None:
    version = _field(form, "snmp_version")
    if version not in ("1", "2c", "3"):
        return None
    out: dict[str, Any] = {"version": version, "port": _int(_field(form, "snmp_port")) or 161}
    if version == "3":
        out["community"] = None
        out["user"] = _field(form, "snmp_user") or None
        out["auth_protocol"] = _field(form, "snmp_auth_protocol") or None
        out["priv_protocol"] = _field(form, "snmp_priv_protocol") or None
        for key in ("auth_key", "priv_key"):
            value = _field(form, f"snmp_{key}")
            if value or not current or current.get("version") != "3":  # empty keeps the stored secret
                out[key] = value or None
    else:
        out |= dict.fromkeys(V3_FIELDS)
        community = _field(form, "snmp_community")
        if community or not current or current.get("version") == "3":
            out["community"] = community or None
    return out


def _ssh(form: FormData, current: dict[str, Any] | None) -> dict[str, Any] | None:
    user = _field(form, "ssh_user")
    if not user:
        return None
    out: dict[str, Any] = {
        "user": user,
        "port": _int(_field(form, "ssh_port")) or 22,
        "key_file": _field(form, "ssh_key_file") or None,
        "host_key": [line.strip() for line in _field(form, "ssh_host_key").splitlines() if line.strip()],
    }
    password = _field(form, "ssh_password")
    if password or not current:
        out["password"] = password or None
    return out


def _spec_from_form(form: FormData, current: dict[str, Any]) -> dict[str, Any]:
    """The inventory fields as the API takes them (DeviceSpec / DevicePatch), from the add or edit form."""
    return {
        "name": _field(form, "name"),
        "address": _field(form, "address"),
        "tags": [t for t in re.split(r"[\s,]+", _field(form, "tags")) if t],
        "parent": _field(form, "parent") or None,
        "interval": _int(_field(form, "interval")),
        "kind": _field(form, "kind") or None,
        "enabled": bool(_field(form, "enabled")),
        "snmp": _snmp(form, current.get("snmp")),
        "ssh": _ssh(form, current.get("ssh")),
        "checks": _checks(form, list(current.get("checks") or [])),
    }


# What to do about a form-level problem, added to the model's message (which also serves the API and config files).
FORM_HINTS = {
    "needs a community": "fill in Community, or choose “no SNMP” for a device that is only pinged",
    "SNMP v3 needs a user": "fill in User (v3), or choose “no SNMP”",
    "SSH needs a password or a key_file": "fill in Password or Key file, or empty User for no SSH",
}


def _hinted(text: str) -> str:
    hint = next((h for key, h in FORM_HINTS.items() if key in text), None)
    return f"{text}: {hint}" if hint else text


def _message(e: Any) -> str:
    return _hinted(error_message(e))


def _errors(exc: ValidationError | ServiceError) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {_message(e)}" if e["loc"] else _message(e) for e in exc.errors())
    detail = exc.detail
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(d.get('loc', []))}: {_hinted(str(d.get('msg')))}" for d in detail if isinstance(d, dict))
    return str(detail)


def _list(request: Request, svc: Services, query: ListQuery, status: int = 200, **extra: Any) -> Response:
    q = query.search
    with svc.reader.connect() as conn:
        rows = overview_store.device_rows(conn)
    needle = q.strip().lower()
    if needle:
        rows = [d for d in rows if needle in d["name"].lower() or needle in d["address"].lower()]
    rows.sort(key=lambda d: d["name"])
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(query.page, pages)
    shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    links = {n: query.link("/admin/devices", n) for n in (page - 1, page + 1)}
    return render(
        request, "admin_devices.html", status=status, devices=shown, total=len(rows), q=q, page=page, pages=pages,
        links=links, form=extra.pop("form", {}), error=extra.pop("error", None), **extra,
    )  # fmt: skip


@router.get("/admin/devices", response_class=HTMLResponse)
def inventory_page(
    request: Request, svc: SvcDep, _p: Admin, f: Annotated[ListQuery, Query()], done: Annotated[str, Query(max_length=80)] = ""
) -> Response:
    """Every device (config-managed ones read-only) and a form to add one."""
    return _list(request, svc, f, done=done)


@router.post("/admin/devices", response_class=HTMLResponse)
async def add_device_form(request: Request, svc: SvcDep, p: Admin) -> Response:
    """Add a device through the API's own logic (validation, encrypted secrets, audit, rescheduling)."""
    form = await request.form()
    raw = _spec_from_form(form, {})
    try:
        spec = DeviceSpec.model_validate(raw)
        created = devices_service.add_device(svc, p, client_ip(request), spec)
    except (ValidationError, ServiceError) as exc:
        echo = {k: _field(form, k) for k in form if "password" not in k and "key" not in k and k != "csrf_token"}
        status = exc.status if isinstance(exc, ServiceError) else 422
        return _list(request, svc, ListQuery(), status=status, error=_errors(exc), form=echo)
    return RedirectResponse(f"/devices/{created}?done=created", status_code=303)  # its status, not its form


def _current(svc: Services, device_id: int) -> tuple[dict[str, Any], str] | None:
    """The stored spec without secrets (whether each is set shows as *_set), and the device's source."""
    with svc.reader.connect() as conn:
        row = load_device(conn, svc.box, device_id)
        detail = views.device_detail(conn, device_id, set(split_secrets(row.spec)[1]) if row else set())
    if row is None or detail is None:
        return None
    return detail["spec"] | {"name": row.name}, str(row.source)


def _edit(
    request: Request, svc: Services, device_id: int, status: int = 200, error: str | None = None, done: str = ""
) -> Response:
    found = _current(svc, device_id)
    if found is None:
        return render_error(request, 404, "No such device.")
    spec, source = found
    return render(
        request, "admin_device.html", status=status, device_id=device_id, f=_flat(spec), source=source, error=error,
        done=done, device_name=spec.get("name"),
    )  # fmt: skip


def _flat(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored spec as the form's fields (secrets only as 'is set' flags)."""
    snmp = spec.get("snmp") or {}
    ssh = spec.get("ssh") or {}
    checks = spec.get("checks") or []
    return {
        "name": spec.get("name", ""),
        "address": spec.get("address", ""),
        "tags": " ".join(spec.get("tags") or []),
        "parent": spec.get("parent") or "",
        "interval": spec.get("interval") or "",
        "kind": spec.get("kind") or "",
        "enabled": spec.get("enabled", True),
        "snmp_version": snmp.get("version", "none") if snmp else "none",
        "snmp_port": snmp.get("port", 161),
        "snmp_user": snmp.get("user") or "",
        "snmp_auth_protocol": snmp.get("auth_protocol") or "",
        "snmp_priv_protocol": snmp.get("priv_protocol") or "",
        "community_set": snmp.get("community_set"),
        "auth_key_set": snmp.get("auth_key_set"),
        "priv_key_set": snmp.get("priv_key_set"),
        "ssh_user": ssh.get("user") or "",
        "ssh_port": ssh.get("port", 22),
        "ssh_key_file": ssh.get("key_file") or "",
        "ssh_host_key": "\n".join(ssh.get("host_key") or []),
        "password_set": ssh.get("password_set"),
        "ping": any(c.get("type") == "ping" for c in checks),
        "tcp_ports": ", ".join(str(c.get("port")) for c in checks if c.get("type") == "tcp"),
        "http_urls": "\n".join(str(c.get("url")) for c in checks if c.get("type") == "http"),
        "other_checks": [f"{c.get('name') or c['type']} ({c['type']})" for c in checks if c.get("type") not in FORM_KINDS],
    }


@router.get("/admin/devices/{device_id}", response_class=HTMLResponse)
def device_edit_page(
    request: Request, svc: SvcDep, _p: Admin, device_id: int, done: Annotated[str, Query(max_length=40)] = ""
) -> Response:
    """The edit form of one device (secrets are never shown: leave them empty to keep them)."""
    return _edit(request, svc, device_id, done=done)


@router.post("/admin/devices/{device_id}", response_class=HTMLResponse)
async def device_edit_form(request: Request, svc: SvcDep, p: Admin, device_id: int) -> Response:
    """Change an API-managed device through the API's PATCH logic (omitted secrets keep their stored values)."""
    found = _current(svc, device_id)
    if found is None:
        return render_error(request, 404, "No such device.")
    form = await request.form()
    try:
        body = DevicePatch.model_validate(_spec_from_form(form, found[0]))
        devices_service.patch_device(svc, p, client_ip(request), device_id, body)
    except (ValidationError, ServiceError) as exc:
        status = exc.status if isinstance(exc, ServiceError) else 422
        return _edit(request, svc, device_id, status=status, error=_errors(exc))
    return RedirectResponse(f"/admin/devices/{device_id}?done=saved", status_code=303)


@router.post("/admin/devices/{device_id}/delete", response_class=HTMLResponse)
async def device_delete_form(request: Request, svc: SvcDep, p: Admin, device_id: int) -> Response:
    """Delete an API-managed device and its history (the form asks to tick a confirmation box)."""
    form = await request.form()
    if _field(form, "confirm") != "yes":
        return _edit(request, svc, device_id, status=400, error="Tick the box to confirm the deletion.")
    try:
        devices_service.remove_device(svc, p, client_ip(request), device_id)
    except ServiceError as exc:
        if exc.status == 404:
            return render_error(request, 404, "No such device.")
        return _edit(request, svc, device_id, status=exc.status, error=_errors(exc))
    return RedirectResponse("/admin/devices?done=deleted", status_code=303)


@dataclass(frozen=True)
class RuleView:
    """One rule as the rules page shows it: plain text fields only (never a dict the template could misread)."""

    name: str
    severity: str
    enabled: bool
    source: str
    expr: str
    for_h: str
    clear_expr: str
    arm: str
    scope: str
    title: str
    labels: str


def _words(value: object) -> str:
    """A match or label value as words: lists joined, mappings as key=value."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def _rule_view(rule: dict[str, Any]) -> RuleView:
    match = rule.get("match") or {}
    scope = [f"{k}: {_words(v)}" for k, v in match.items() if v]
    return RuleView(
        name=str(rule["name"]), severity=str(rule.get("severity") or "warning"), enabled=bool(rule.get("enabled", True)),
        source=str(rule.get("source") or "file"), expr=str(rule.get("expr") or ""),
        for_h=views_app.fmt_value(rule["for"], "s") if rule.get("for") else "",
        clear_expr=str(rule.get("clear") or ""), arm=str(rule.get("arm") or ""),
        scope="; ".join(scope) or "every device", title=str(rule.get("title") or ""),
        labels=_words(rule.get("labels") or {}),
    )  # fmt: skip


@router.get("/admin/rules", response_class=HTMLResponse)
def rules_page(request: Request, svc: SvcDep, p: Viewer) -> Response:
    """The alert rules in force, as GET /api/v1/rules lists them (file or built-in, plus API-added)."""
    listed = {"items": alerts_service.list_rules(svc)}
    order = {"critical": 0, "warning": 1, "info": 2}
    items = sorted((_rule_view(r) for r in listed["items"]), key=lambda r: (order.get(r.severity, 9), r.name))
    return render(request, "admin_rules.html", rules=items, file=svc.settings.rules_file)

