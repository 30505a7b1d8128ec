"""The phone app's pages: overview, device page, graphs of any metric, settings hub, manifest and offline page."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import Field
from starlette.routing import Match

import web
from server.auth.access import Viewer
from server.auth.policy import public
from server.notify.channel_alarm import channel_alarm
from server.notify.runtime import silent_label
from server.runtime import Services, get_services
from server.services.hostkeys import offered_key
from server.store import hostkeys
from server.web import views
from server.web import views_phone as views_app
from server.web.fields import SEARCH_MAX, ListQuery
from server.web.pages import triage
from server.web.pages.common import POLL_WORDS, TEMPLATES, render, render_error, user_zone

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]
STATIC = web.ROOT / "static"
RangeQuery = Annotated[str, Query(alias="range", pattern="^(1h|24h|7d|30d)$")]
INTERFACE_METRICS = (
    "if_in_bps",
    "if_out_bps",
    "if_in_errors_rate",
    "if_out_errors_rate",
    "if_in_discards_rate",
    "if_out_discards_rate",
)


@lru_cache(maxsize=64)
def _version(name: str, mtime_ns: int) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]


def asset(name: str) -> str:
    """A static file's URL with a content hash, so the service worker can cache it until it changes."""
    path = STATIC / name
    try:
        return f"/static/{name}?v={_version(name, path.stat().st_mtime_ns)}"
    except OSError:
        return f"/static/{name}"


def _iso(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else ""


TEMPLATES.env.globals["asset"] = asset
TEMPLATES.env.filters["iso"] = _iso
TEMPLATES.env.filters["metric"] = views_app.fmt_value


def _timed(response: Response, started: float) -> Response:
    response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    return response


class OverviewQuery(ListQuery):
    """The overview's filters besides the search: a tag, a state."""

    tag: str = Field(default="", max_length=64)
    state: str = Field(default="", max_length=16)


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, svc: SvcDep, _p: Viewer, f: Annotated[OverviewQuery, Query()]) -> Response:
    """Counts by state and severity, open alerts (one-tap ack/snooze), devices problems first, search."""
    started = time.perf_counter()
    with svc.reader.connect() as conn:
        data = views_app.overview(conn, f.search, f.tag, f.state, f.page)
        silent_since = silent_label(svc, conn, user_zone(request)[0])
        failing = channel_alarm(conn).channels
    storage_full = views.storage_health(svc)["storage"]["message"] or ""
    response = render(request, "devices.html", o=data, q=f.search, tag=f.tag, state=f.state, page_url=partial(f.link, "/"),
                      silent_since=silent_since, storage_full=storage_full, q_cut=f.cut, search_max=SEARCH_MAX,
                      failing_channels=failing)
    return _timed(response, started)


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def device_page(
    request: Request,
    svc: SvcDep,
    _p: Viewer,
    device_id: int,
    range_: RangeQuery = "24h",
    q: Annotated[str, Query(max_length=200)] = "",
    done: Annotated[str | None, Query(max_length=16)] = None,  # "created" after adding it; an alert action's flash too
) -> Response:
    """One device: state, open alerts, what is wrong in its tables (the rest collapsed, `q` filters them), actions,
    key graphs, checks, facts, recent changes."""
    started = time.perf_counter()
    with svc.reader.connect() as conn:
        detail = views.device_detail(conn, device_id)
        if detail is None:
            return render_error(request, 404, "No such device.")
        graphs = views_app.key_graphs(conn, detail, range_, svc.settings.raw_retention_hours)
        alerts = views_app.device_alerts(conn, device_id)
        offered = offered_key(conn, device_id)
        keys = hostkeys.list_keys(conn, device_id)
    q = triage.clean_query(q)
    uptime = detail["facts"].get("uptime_seconds")
    tables = {
        "interfaces": triage.interfaces(detail["interfaces"], alerts, uptime if isinstance(uptime, int | float) else None, q),
        "storage": triage.usage(
            [s for s in views.rows_of(detail["resources"].get("storage")) if s.get("type") in ("fixed", "ram", "virtual")],
            "descr",
            q,
        ),
        "filesystems": triage.usage(views.rows_of(detail["resources"].get("filesystems")), "mount", q),
    }
    response = render(
        request,
        "device.html",
        d=detail,
        graphs=graphs,
        range=range_,
        alerts=alerts,
        offered=offered,
        host_keys=keys,
        t=tables,
        q=q,
        created=done == "created",
        polled=POLL_WORDS.get(done or ""),
    )
    return _timed(response, started)


def _detail_or_404(svc: Services, device_id: int) -> views.DeviceDetail | None:
    with svc.reader.connect() as conn:
        return views.device_detail(conn, device_id)


@router.get("/devices/{device_id}/metrics", response_class=HTMLResponse)
def metrics_page(request: Request, svc: SvcDep, _p: Viewer, device_id: int, range_: RangeQuery = "24h") -> Response:
    """Every metric the device reports, each linking to its graph."""
    detail = _detail_or_404(svc, device_id)
    if detail is None:
        return render_error(request, 404, "No such device.")
    return render(request, "metrics.html", d=detail, metrics=views_app.metric_index(detail), range=range_)


@router.get("/devices/{device_id}/graph", response_class=HTMLResponse)
def graph_page(
    request: Request,
    svc: SvcDep,
    _p: Viewer,
    device_id: int,
    metric: Annotated[str, Query(min_length=1, max_length=64, pattern="^[a-z][a-z0-9_]*$")],
    range_: RangeQuery = "24h",
) -> Response:
    """The graph of any metric of a device, one per label set (interface, disk, check ...)."""
    detail = _detail_or_404(svc, device_id)
    if detail is None:
        return render_error(request, 404, "No such device.")
    with svc.reader.connect() as conn:
        graphs = views_app.metric_graphs(conn, detail, [metric], range_, svc.settings.raw_retention_hours)
    series = sum(1 for m in detail["metrics"] if m["metric"] == metric)
    base = f"/devices/{device_id}/graph?metric={metric}"
    return render(request, "graph.html", d=detail, graphs=graphs, range=range_, range_base=base,
                  heading=views_app.TITLES.get(metric, metric), facts=None, more=series > len(graphs))


@router.get("/devices/{device_id}/interfaces/{if_index}", response_class=HTMLResponse)
def interface_page(
    request: Request,
    svc: SvcDep,
    _p: Viewer,
    device_id: int,
    if_index: Annotated[str, PathParam(max_length=16, pattern="^[0-9]+$")],
    range_: RangeQuery = "24h",
) -> Response:
    """One interface: traffic, errors and discards over a range."""
    detail = _detail_or_404(svc, device_id)
    if detail is None:
        return render_error(request, 404, "No such device.")
    iface = next((i for i in detail["interfaces"] if str(i.get("index")) == if_index), None)
    with svc.reader.connect() as conn:
        graphs = views_app.metric_graphs(
            conn, detail, list(INTERFACE_METRICS), range_, svc.settings.raw_retention_hours, {"ifIndex": if_index}
        )
    name = str(iface.get("name") or if_index) if iface else if_index
    facts = None
    if iface:
        speed = iface.get("speed_bps")
        parts = [str(iface.get("oper") or "?"), views.human_bps(speed) if isinstance(speed, int | float) and speed else ""]
        facts = " · ".join(p for p in [*parts, str(iface.get("alias") or "")[:80]] if p)
    base = f"/devices/{device_id}/interfaces/{if_index}"
    return render(request, "graph.html", d=detail, graphs=graphs, range=range_, range_base=base,
                  heading=f"Interface {name[:64]}", facts=facts, more=False, if_index=if_index if iface else None)


def _page_exists(request: Request, path: str) -> bool:
    """Does the app answer GET `path` (asked the router itself, so pages added by other work count at once)?"""
    scope = {"type": "http", "path": path, "method": "GET", "root_path": "", "headers": [], "query_string": b""}
    return any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes)


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, p: Viewer) -> Response:
    """One place that reaches every settings page the signed-in user may open (the template lists them)."""

    def shown(links: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str]]:
        """The links this user may follow to a page that exists."""
        return [link for link in links if p.user.can(link[3]) and _page_exists(request, link[0])]

    return render(request, "settings.html", shown=shown)


@router.get("/manifest.webmanifest", dependencies=[public("the web app manifest: static, no user data")])
def manifest() -> Response:
    """The web app manifest (public: the browser fetches it without cookies)."""
    return FileResponse(
        STATIC / "manifest.webmanifest",
        media_type="application/manifest+json",
        headers={"Cache-Control": "public, max-age=3600"},
    )


@router.get("/offline", response_class=HTMLResponse, dependencies=[public("the offline fallback page: no user data")])
def offline_page(request: Request) -> Response:
    """What the service worker shows for a page that was never saved while online (public: it holds no data)."""
    return render(request, "offline.html", user=None)
