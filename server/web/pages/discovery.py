"""Discovery pages (admin): start a run, watch it, approve proposals; the network map; neighbours on a device's page."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from server.auth.access import Admin, Operator, Viewer, client_ip
from server.config.inventory import error_list
from server.runtime import Services, get_services
from server.services import discovery
from server.services.discovery_bodies import ApproveRequest, DiscoveryRequest
from server.services.errors import ServiceError
from server.services.topology import map_data
from server.store.discovery import NeighbourRow
from server.web.pages.common import TEMPLATES, render
from server.web.views_topology import layout, resolve_links

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]
EVERY = {"": None, "60": 60, "360": 360, "1440": 1440}
FORM_KEEP = ("ranges", "seed", "user", "auth_protocol", "priv_protocol", "port", "every")  # never the secrets


def _words(text: object) -> list[str]:
    return [w for w in str(text or "").replace(",", " ").split() if w]


def request_from_form(form: dict[str, str]) -> DiscoveryRequest:
    """The page's fields as a DiscoveryRequest: one v3 user and/or v2c communities (space-separated)."""
    port = form.get("port") or "161"
    snmp: list[dict[str, Any]] = []
    if form.get("user"):
        v3: dict[str, Any] = {"version": "3", "user": form["user"], "port": port}
        for key in ("auth_protocol", "auth_key", "priv_protocol", "priv_key"):
            if form.get(key):
                v3[key] = form[key]
        snmp.append(v3)
    snmp += [{"version": "2c", "community": c, "port": port} for c in _words(form.get("communities"))]
    data = {
        "ranges": _words(form.get("ranges")),
        "seed": form.get("seed") or None,
        "snmp": snmp,
        "confirm_large": form.get("confirm_large") == "on",
        "fdb": form.get("fdb") == "on",
        "every": EVERY.get(form.get("every", "")),
    }
    return DiscoveryRequest.model_validate(data)


def _start_page(
    request: Request, svc: Services, status: int = 200, error: str = "", form: dict[str, str] | None = None
) -> Response:
    runs = discovery.list_runs(svc, 20)
    return render(request, "discovery.html", status=status, runs=runs, error=error, form=form or {})


@router.get("/discovery", response_class=HTMLResponse)
def discovery_page(request: Request, svc: SvcDep, _p: Admin) -> Response:
    """The form to start a run, and the recent runs."""
    return _start_page(request, svc)


@router.post("/discovery")
async def start_page(request: Request, svc: SvcDep, p: Admin) -> Response:
    """Start a run from the form (admin, CSRF-checked, audited); bad input re-shows the form without the secrets."""
    raw = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    kept = {k: raw[k] for k in FORM_KEEP if k in raw}
    try:
        body = request_from_form(raw)
        run_id = await run_in_threadpool(discovery.start, svc, p.user, client_ip(request), body)
    except ValidationError as exc:
        text = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in error_list(exc.errors()))
        return _start_page(request, svc, 400, text, kept)
    except ServiceError as exc:
        return _start_page(request, svc, exc.status if exc.status < 500 else 400, exc.message, kept)
    discovery.launch(svc, run_id)
    return RedirectResponse(f"/discovery/runs/{run_id}", status_code=303)


@router.get("/discovery/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, svc: SvcDep, _p: Admin, run_id: int, approved: int | None = None) -> Response:
    """A run: progress while it runs, then what is new, changed and gone, to approve all or some."""
    run = discovery.run_view(svc, run_id)
    items = run["items"]
    rerun = run["previous_id"] is not None  # a re-run leads with what is new or changed; the rest is folded away
    groups = {
        "snmp": [f for f in items if f["change"] in (("new", "changed") if rerun else ("new", "changed", "same"))
                 and f["facts"].get("credential") is not None],
        "same": [f for f in items if rerun and f["change"] == "same" and f["facts"].get("credential") is not None],
        "plain": [f for f in items if f["change"] != "gone" and f["facts"].get("credential") is None],
        "gone": [f for f in items if f["change"] == "gone"],
    }
    return render(request, "discovery_run.html", run=run, groups=groups, approved=approved)


@router.post("/discovery/runs/{run_id}/approve")
async def approve_page(request: Request, svc: SvcDep, p: Admin, run_id: int) -> Response:
    """Approve the ticked proposals, or all that answered SNMP (admin, CSRF-checked, audited)."""
    form = await request.form()
    ids = [int(v) for v in form.getlist("id") if isinstance(v, str) and v.isdigit() and len(v) < 12]
    body = ApproveRequest(ids=ids, all=form.get("all") == "1")
    added = await run_in_threadpool(discovery.approve, svc, p.user, client_ip(request), run_id, body)
    return RedirectResponse(f"/discovery/runs/{run_id}?approved={len(added)}", status_code=303)


@router.post("/discovery/runs/{run_id}/rerun")
async def rerun_page(request: Request, svc: SvcDep, p: Admin, run_id: int) -> Response:
    """Run again now (same ranges and credentials)."""
    new_id = await run_in_threadpool(discovery.rerun, svc, p.user, client_ip(request), run_id)
    discovery.launch(svc, new_id)
    return RedirectResponse(f"/discovery/runs/{new_id}", status_code=303)


@router.post("/devices/{device_id}/neighbours")
async def refresh_neighbours_page(request: Request, svc: SvcDep, p: Operator, device_id: int) -> Response:
    """The device page's "Read neighbours now" button (operator, CSRF-checked, audited)."""
    await discovery.refresh_neighbours(svc, p.user, client_ip(request), device_id)
    return RedirectResponse(f"/devices/{device_id}#neighbours", status_code=303)


@router.get("/map", response_class=HTMLResponse)
def map_page(request: Request, svc: SvcDep, _p: Viewer) -> Response:
    """The whole network as an SVG drawn on the server: parents above children, problems coloured, tap to open."""
    nodes, raw = map_data(svc)
    return render(request, "map.html", m=layout(nodes, resolve_links(nodes, raw)))


def device_neighbours(request: Request, device_id: int) -> list[NeighbourRow]:
    """The neighbours shown on a device's page (its template calls this)."""
    svc: Services = request.app.state.services
    return discovery.neighbours(svc, device_id)


TEMPLATES.env.globals["device_neighbours"] = device_neighbours
