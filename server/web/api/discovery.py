"""JSON API of discovery (admin): start a run, watch it, approve proposals, run it again; neighbours and the map."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from server.auth.access import Admin, Operator, Viewer, client_ip
from server.runtime import Services, get_services
from server.services import discovery
from server.services.discovery_bodies import ApproveRequest, DiscoveryRequest
from server.services.topology import map_data
from server.web.views_topology import layout, resolve_links

router = APIRouter(tags=["discovery"])
SvcDep = Annotated[Services, Depends(get_services)]


def _started(run_id: int) -> JSONResponse:
    body = {"id": run_id, "status": "running", "url": f"/api/v1/discovery/runs/{run_id}", "page": f"/discovery/runs/{run_id}"}
    return JSONResponse(body, status_code=202)


@router.post("/api/v1/discovery/runs", status_code=202)
async def start_run(request: Request, svc: SvcDep, p: Admin, body: DiscoveryRequest) -> JSONResponse:
    """Start a discovery run: `ranges` (CIDR; wider than a /16 needs `confirm_large`) and/or `seed`, `snmp` credentials
    to try (v3 first), optional `ssh`; nothing is added until proposals are approved. Credentials are never returned."""
    run_id = await run_in_threadpool(discovery.start, svc, p.user, client_ip(request), body)
    discovery.launch(svc, run_id)
    return _started(run_id)


@router.get("/api/v1/discovery/runs")
def list_runs(svc: SvcDep, _p: Admin, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    """Discovery runs, newest first."""
    return {"items": discovery.list_runs(svc, limit)}


@router.get("/api/v1/discovery/runs/{run_id}")
def get_run(svc: SvcDep, _p: Admin, run_id: int) -> dict[str, Any]:
    """A run with its proposals: each `change` (new, changed, same, gone), `status`, `facts`, proposed `parent`, neighbours."""
    return dict(discovery.run_view(svc, run_id))


@router.post("/api/v1/discovery/runs/{run_id}/approve")
def approve(request: Request, svc: SvcDep, p: Admin, run_id: int, body: ApproveRequest) -> dict[str, Any]:
    """Add proposals as devices: `{"all": true}` (every proposal that answered SNMP) or `{"ids": [...]}`."""
    return {"items": discovery.approve(svc, p.user, client_ip(request), run_id, body)}


@router.post("/api/v1/discovery/runs/{run_id}/rerun", status_code=202)
async def rerun(request: Request, svc: SvcDep, p: Admin, run_id: int) -> JSONResponse:
    """Run again with the same ranges and credentials; the new run reports what is new, gone or changed."""
    new_id = await run_in_threadpool(discovery.rerun, svc, p.user, client_ip(request), run_id)
    discovery.launch(svc, new_id)
    return _started(new_id)


@router.get("/api/v1/devices/{device_id}/neighbours")
def neighbours(svc: SvcDep, _p: Viewer, device_id: int) -> dict[str, Any]:
    """A device's neighbours per port (LLDP, CDP, forwarding table), each with the device it names when known."""
    return {"items": discovery.neighbours(svc, device_id)}


@router.post("/api/v1/devices/{device_id}/neighbours/refresh")
async def refresh_neighbours(request: Request, svc: SvcDep, p: Operator, device_id: int) -> dict[str, Any]:
    """Read the device's LLDP/CDP neighbours now, with its own SNMP credentials (operator, audited)."""
    count = await discovery.refresh_neighbours(svc, p.user, client_ip(request), device_id)
    return {"items": await run_in_threadpool(discovery.neighbours, svc, device_id), "count": count}


@router.get("/api/v1/topology")
def topology(svc: SvcDep, _p: Viewer) -> dict[str, Any]:
    """The map: nodes (id, name, state, position) and lines (parent links solid, other neighbour links dashed)."""
    nodes, raw = map_data(svc)
    drawn = layout(nodes, resolve_links(nodes, raw))
    return {"nodes": [asdict(n) for n in drawn.nodes], "lines": [asdict(line) for line in drawn.lines],
            "problems": drawn.problems, "width": drawn.width, "height": drawn.height}
