"""Discovery use cases shared by the JSON API, the pages and the CLI: start a run, run it, show it, approve proposals.

Nothing becomes a device until an admin approves it. The credentials a run tries are sealed with the secrets
box, never logged, never returned; a proposal names only the position of the credential that answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypedDict, Unpack

from pydantic import ValidationError

from agents.base import CollectError, SnmpCredentials
from agents.discovery import Found, Sweeper, SweepOptions, v3_first
from agents.discovery_scope import RangeError, TokenBucket, in_scope, parse_ranges
from server.config.inventory import DeviceSpec, SnmpSpec, error_list
from server.runtime import Services
from server.services.discovery_bodies import ApproveRequest, DiscoveryRequest
from server.services.discovery_plan import proposals
from server.services.errors import Conflict, NotFound, ServiceError
from server.store import accounts
from server.store import discovery as store
from server.store.accounts import User
from server.store.devices import DeviceConflict, create_device, source_and_name
from server.store.discovery import DiscoveryRun, FoundRow, NeighbourRow, RunProgress

log = logging.getLogger(__name__)
_TASKS: set[asyncio.Task[None]] = set()  # running sweeps of this process (kept referenced until they end)


class DiscoveryRunView(DiscoveryRun):
    """A run with its proposals, and how many are new, changed, the same and gone."""

    items: list[FoundRow]
    counts: dict[str, int]


class Added(TypedDict):
    """A device added from a proposal."""

    id: int
    name: str
    address: str
    parent: str | None


class DiscoveryInvalid(ServiceError):
    """A run that cannot start: a bad or too wide range, a seed outside the ranges, bad credentials."""

    status = 422


def _scope(body: DiscoveryRequest, known: dict[str, tuple[int, str]]) -> tuple[list[str], str | None]:
    """The ranges to sweep (checked) and the seed as an address (a device name is looked up); the seed is in scope."""
    ranges = list(body.ranges)
    seed = body.seed
    if seed and not seed.replace(".", "").isdigit() and ":" not in seed:
        device = known.get("name:" + seed.lower())
        if device is None:
            raise DiscoveryInvalid(f"seed {seed!r} is neither an address nor a device's name")
        seed = next(a for a, v in known.items() if v == device and not a.startswith("name:"))
    if not ranges and not seed:
        raise DiscoveryInvalid("give at least one range or a seed")
    try:
        networks = parse_ranges(ranges, body.confirm_large)
        if seed and not in_scope(seed, networks):
            parse_ranges([seed])
            ranges.append(seed)
    except RangeError as exc:
        raise DiscoveryInvalid(str(exc)) from None
    return ranges, seed


def start(svc: Services, user: User | None, ip: str | None, body: DiscoveryRequest, previous_id: int | None = None) -> int:
    """Check and record a run (audited as discovery.start, without its credentials); the caller launches it."""
    with svc.reader.connect() as conn:
        known = store.device_index(conn)
    ranges, seed = _scope(body, known)
    public = body.model_dump(mode="json", exclude={"snmp", "ssh", "ranges", "seed"})
    ssh = body.ssh.model_dump(mode="json") if body.ssh else None
    secrets = {"snmp": [s.model_dump(mode="json") for s in body.snmp], "ssh": ssh}
    with svc.engine.begin() as conn:
        run_id = store.create_run(
            conn, started_by=user.name if user else "cli", ranges=ranges, seed=seed, options=public,
            secrets=svc.box.seal(secrets) or b"", previous_id=previous_id, now=time.time(),
        )
        detail = {"run": run_id, "ranges": ranges, "seed": seed, "credentials": len(body.snmp), "every": body.every}
        accounts.write_audit(conn, user, "discovery.start", ",".join(ranges)[:200], detail, ip)
    return run_id


def request_of(svc: Services, run_id: int) -> DiscoveryRequest:
    """Rebuild a run's request (credentials unsealed) to run it or to run it again."""
    with svc.reader.connect() as conn:
        run = store.get_run(conn, run_id)
        sealed = store.run_secrets(conn, run_id)
    if run is None:
        raise NotFound("no such discovery run")
    secrets = svc.box.open(sealed)
    data = {**run["options"], "ranges": run["ranges"], "seed": run["seed"], "confirm_large": True, **secrets}
    return DiscoveryRequest.model_validate(data)


def _credentials(specs: list[SnmpSpec]) -> tuple[SnmpCredentials, ...]:
    return v3_first([
        SnmpCredentials(version=s.version, community=s.community or "", user=s.user or "", auth_protocol=s.auth_protocol,
                        auth_key=s.auth_key, priv_protocol=s.priv_protocol, priv_key=s.priv_key, context=s.context)
        for s in specs
    ])


def ordered(specs: list[SnmpSpec]) -> list[SnmpSpec]:
    """The credentials in the order they are tried (v3 first), so a found credential position maps back."""
    return sorted(specs, key=lambda s: s.version != "3")


async def execute(svc: Services, run_id: int, clock: Callable[[], float] = time.time) -> None:
    """Run a recorded sweep to its end and store its proposals; a failure is recorded on the run, never raised."""
    try:
        body = await asyncio.to_thread(request_of, svc, run_id)
        with svc.reader.connect() as conn:
            run = store.get_run(conn, run_id)
        if run is None:
            raise NotFound("no such discovery run")
        networks = parse_ranges(run["ranges"], confirm_large=True)
        options = SweepOptions(
            networks=networks, credentials=_credentials(ordered(body.snmp)), seed=run["seed"], sweep=body.sweep,
            snmp_port=body.snmp[0].port, tcp_ports=tuple(body.ports), icmp=body.icmp, timeout=body.timeout, fdb=body.fdb,
        )
        sweeper = Sweeper(options, TokenBucket(rate=body.rate))

        async def progress(done: int, total: int) -> None:
            await asyncio.to_thread(_update, svc, run_id, done=done, addresses=total, probes=sweeper.bucket.sent)

        try:
            result = await sweeper.run(progress)
        finally:
            await sweeper.close()
        await asyncio.to_thread(_finish, svc, run_id, run, body, list(result.found.values()), result.probes,
                                result.addresses, clock())
    except Exception as exc:  # a run never takes the server down; what went wrong is shown on the run
        log.warning("discovery run %s failed: %s", run_id, type(exc).__name__)
        # A validation error would quote its input, which holds the credentials: name the problem only.
        why = "its stored request is no longer valid" if isinstance(exc, ValidationError) else str(exc)
        await asyncio.to_thread(_update, svc, run_id, status="failed", error=f"{type(exc).__name__}: {why}"[:500],
                                finished_at=clock())


def _update(svc: Services, run_id: int, **values: Unpack[RunProgress]) -> None:
    with svc.engine.begin() as conn:
        store.update_run(conn, run_id, **values)


def _finish(svc: Services, run_id: int, run: DiscoveryRun, body: DiscoveryRequest, found: list[Found], probes: int,
            total: int, now: float) -> None:
    """Store the proposals (diffed against the previous run) and known devices' neighbours; schedule a re-run."""
    with svc.engine.begin() as conn:
        known = store.device_index(conn)
        previous = store.list_found(conn, run["previous_id"]) if run["previous_id"] else []
        rows = proposals(found, known, previous, run["seed"])
        store.save_found(conn, run_id, rows)
        for row in rows:
            if row["status"] == "known" and row["neighbours"] and row["device_id"] is not None:
                store.replace_neighbours(conn, row["device_id"], row["neighbours"], now)
        next_at = now + body.every * 60 if body.every else None
        store.update_run(conn, run_id, status="done", probes=probes, addresses=total, done=total, finished_at=now,
                         next_at=next_at)


def launch(svc: Services, run_id: int) -> None:
    """Start a recorded run in the running event loop (the server's); it outlives the request."""
    task = asyncio.get_running_loop().create_task(execute(svc, run_id))
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


def running() -> list[asyncio.Task[None]]:
    """The sweeps running in this process."""
    return list(_TASKS)


def rerun(svc: Services, user: User | None, ip: str | None, run_id: int) -> int:
    """Record a new run with the same ranges, credentials and options; its proposals say what is new, gone or changed."""
    body = request_of(svc, run_id)
    new_id = start(svc, user, ip, body, previous_id=run_id)
    with svc.engine.begin() as conn:
        store.update_run(conn, run_id, next_at=None)
    return new_id


def due(svc: Services, now: float) -> list[int]:
    """Runs whose scheduled re-run is due."""
    with svc.reader.connect() as conn:
        return store.due_runs(conn, now)


def run_view(svc: Services, run_id: int) -> DiscoveryRunView:
    """A run and its proposals (facts, parent, neighbours), grouped by what changed."""
    with svc.reader.connect() as conn:
        run = store.get_run(conn, run_id)
        if run is None:
            raise NotFound("no such discovery run")
        found = store.list_found(conn, run_id)
    counts = {k: sum(1 for f in found if f["change"] == k) for k in ("new", "changed", "same", "gone")}
    return DiscoveryRunView(**run, items=found, counts=counts)


def list_runs(svc: Services, limit: int = 50) -> list[DiscoveryRun]:
    with svc.reader.connect() as conn:
        return store.list_runs(conn, limit)


def approve(svc: Services, user: User | None, ip: str | None, run_id: int, body: ApproveRequest) -> list[Added]:
    """Add the chosen proposals as devices (parents first), with the credential that answered; audited."""
    request = request_of(svc, run_id)
    creds = ordered(request.snmp)
    view = run_view(svc, run_id)
    if view["status"] != "done":
        raise Conflict("the run has not finished")
    # "All" means every proposal that answered SNMP; an address that only answered a ping is added when chosen.
    snmp = [f for f in view["items"] if f["status"] == "proposed" and f["facts"].get("credential") is not None]
    chosen = snmp if body.all else [f for f in view["items"] if f["status"] == "proposed" and f["id"] in body.ids]
    if not chosen:
        raise DiscoveryInvalid("nothing to approve: choose proposals that are still proposed")
    names = {f["name"] for f in chosen}
    chosen.sort(key=lambda f: _depth(f, {c["name"]: c for c in chosen}))
    added: list[Added] = []
    with svc.engine.begin() as conn:
        known = store.device_index(conn)
        for f in chosen:
            parent = f["parent"] if f["parent"] in names or ("name:" + str(f["parent"]).lower()) in known else None
            spec = _spec(f, creds, request, parent, body.tags)
            try:
                device_id = create_device(conn, spec, svc.box, svc.settings.default_interval)
            except DeviceConflict as exc:
                raise Conflict(f"{f['name']}: {exc}") from None
            store.mark_found(conn, f["id"], "approved", device_id)
            if f["neighbours"]:
                store.replace_neighbours(conn, device_id, f["neighbours"], time.time())
            added.append(Added(id=device_id, name=spec.name, address=spec.address, parent=parent))
        detail = {"run": run_id, "devices": [a["name"] for a in added][:200], "count": len(added)}
        accounts.write_audit(conn, user, "discovery.approve", f"run {run_id}", detail, ip)
    from server.polling import pipeline

    pipeline.reschedule(svc)
    return added


def _depth(f: FoundRow, by_name: dict[str, FoundRow]) -> int:
    depth, seen = 0, set()
    while (parent := f.get("parent")) is not None and parent in by_name and f["name"] not in seen:
        seen.add(f["name"])
        f, depth = by_name[parent], depth + 1
    return depth


def _spec(
    f: FoundRow, creds: list[SnmpSpec], request: DiscoveryRequest, parent: str | None, tags: list[str]
) -> DeviceSpec:
    facts = f["facts"]
    data: dict[str, Any] = {"name": f["name"], "address": f["address"], "parent": parent, "tags": ["discovered", *tags]}
    position = facts.get("credential")
    if isinstance(position, int) and 0 <= position < len(creds):
        data["snmp"] = creds[position].model_dump(mode="json", exclude_none=True)
    ports = facts.get("open_ports")
    if request.ssh is not None and isinstance(ports, list) and 22 in ports:
        data["ssh"] = request.ssh.model_dump(mode="json", exclude_none=True)  # its host key is offered on first contact
    try:
        return DeviceSpec.model_validate(data)
    except ValidationError as exc:
        raise DiscoveryInvalid("; ".join(f"{f['name']}: {e['msg']}" for e in error_list(exc.errors()))) from None


def neighbours(svc: Services, device_id: int) -> list[NeighbourRow]:
    """A device's neighbours per port (as last read at discovery)."""
    with svc.reader.connect() as conn:
        if source_and_name(conn, device_id) is None:
            raise NotFound("no such device")
        return store.neighbours_of(conn, device_id)


async def refresh_neighbours(svc: Services, user: User | None, ip: str | None, device_id: int) -> int:
    """Read a device's LLDP/CDP neighbours now (its own SNMP credentials) and store them; returns how many."""
    from agents.neighbours import read_neighbours
    from agents.snmp_client import SnmpClient
    from server.polling.jobs import snmp_target
    from server.store.devices import load_device

    with svc.reader.connect() as conn:
        row = load_device(conn, svc.box, device_id)
    if row is None:
        raise NotFound("no such device")
    if row.spec.snmp is None:
        raise Conflict(f"{row.name} has no SNMP access: neighbours are read over SNMP")
    client = SnmpClient()
    try:
        found = await read_neighbours(client, snmp_target(row, svc.settings, row.spec.snmp, row.spec.snmp), fdb=False)
    except CollectError:
        raise Conflict(f"{row.name} did not answer over SNMP; its neighbours are unchanged") from None
    finally:
        await client.close()
    rows = [n.public() for n in found]

    def save() -> None:
        with svc.engine.begin() as conn:
            store.replace_neighbours(conn, device_id, rows, time.time())
            accounts.write_audit(conn, user, "device.neighbours", row.name, {"count": len(rows)}, ip)

    await asyncio.to_thread(save)
    return len(rows)
