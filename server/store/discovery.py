"""Discovery runs, their proposals, and device neighbours: typed rows in and out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack

from sqlalchemy import Connection, Row, delete, func, insert, or_, select, update

from server.store.jsontypes import JsonObject
from server.store.schema import device_status, devices
from server.store.tables_discovery import device_neighbours, discovery_found, discovery_runs

RUN_FIELDS = ("id", "created_at", "started_by", "status", "ranges", "seed", "options", "previous_id", "addresses",
              "done", "probes", "error", "finished_at", "next_at")


class DiscoveryRun(TypedDict):
    """A discovery run without its sealed credentials: scope, options (no secrets), progress, outcome, schedule."""

    id: int
    created_at: float
    started_by: str
    status: str
    ranges: list[str]
    seed: str | None
    options: JsonObject
    previous_id: int | None
    addresses: int
    done: int
    probes: int
    error: str | None
    finished_at: float | None
    next_at: float | None


class RunProgress(TypedDict, total=False):
    """What a run's progress, end or schedule changes."""

    status: str
    error: str | None
    addresses: int
    done: int
    probes: int
    finished_at: float
    next_at: float | None


class NewFound(TypedDict):
    """A proposal of a run: the address, its proposed name and parent, what changed, its facts and neighbours."""

    address: str
    name: str
    change: str  # new, changed, same, gone
    changed: list[str]
    status: str  # proposed, approved, known, gone
    device_id: int | None
    facts: JsonObject
    parent: str | None
    neighbours: list[dict[str, str]]


class FoundRow(NewFound):
    """A stored proposal."""

    id: int
    run_id: int


class NeighbourRow(TypedDict):
    """A neighbour of a device on one port, with the id of the device it names when that is known."""

    id: int
    device_id: int
    protocol: str
    local_port: str
    remote_name: str
    remote_port: str
    remote_address: str
    remote_chassis: str
    remote_descr: str
    seen_at: float
    remote_device_id: int | None


@dataclass(frozen=True, slots=True)
class MapNode:
    """A device as the topology map needs it."""

    id: int
    name: str
    address: str
    kind: str | None
    parent_id: int | None
    state: str


def create_run(conn: Connection, *, started_by: str, ranges: list[str], seed: str | None, options: JsonObject,
               secrets: bytes, previous_id: int | None, now: float) -> int:
    """Record a new run (status running); returns its id."""
    result = conn.execute(
        insert(discovery_runs).values(
            created_at=now, started_by=started_by, status="running", ranges=ranges, seed=seed, options=options,
            secrets=secrets, previous_id=previous_id, addresses=0, done=0, probes=0,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def update_run(conn: Connection, run_id: int, **values: Unpack[RunProgress]) -> None:
    """Change a run's progress, status, counters or schedule."""
    conn.execute(update(discovery_runs).where(discovery_runs.c.id == run_id).values(**values))


def _run(r: Row[tuple[object, ...]]) -> DiscoveryRun:
    m = r._mapping
    return DiscoveryRun(
        id=m["id"], created_at=m["created_at"], started_by=m["started_by"], status=m["status"], ranges=m["ranges"],
        seed=m["seed"], options=m["options"], previous_id=m["previous_id"], addresses=m["addresses"], done=m["done"],
        probes=m["probes"], error=m["error"], finished_at=m["finished_at"], next_at=m["next_at"],
    )  # fmt: skip


def get_run(conn: Connection, run_id: int) -> DiscoveryRun | None:
    """One run without its sealed credentials."""
    row = conn.execute(select(*(discovery_runs.c[f] for f in RUN_FIELDS)).where(discovery_runs.c.id == run_id)).first()
    return _run(row) if row else None


def run_secrets(conn: Connection, run_id: int) -> bytes | None:
    """The sealed credentials of a run (the caller opens them; they are never shown)."""
    return conn.execute(select(discovery_runs.c.secrets).where(discovery_runs.c.id == run_id)).scalar()


def list_runs(conn: Connection, limit: int = 50) -> list[DiscoveryRun]:
    """Runs, newest first."""
    query = select(*(discovery_runs.c[f] for f in RUN_FIELDS)).order_by(discovery_runs.c.id.desc()).limit(limit)
    return [_run(r) for r in conn.execute(query)]


def due_runs(conn: Connection, now: float) -> list[int]:
    """Finished runs whose scheduled re-run is due."""
    query = select(discovery_runs.c.id).where(
        discovery_runs.c.next_at.is_not(None), discovery_runs.c.next_at <= now, discovery_runs.c.status != "running"
    )
    return [int(r) for r in conn.execute(query).scalars()]


def claim_due(conn: Connection, run_id: int, now: float) -> float | None:
    """Take a due re-run off the schedule; its `next_at` if this call took it, None if it was not due (any more).
    One conditional UPDATE: of processes racing for the same run, exactly one gets it."""
    cond = (discovery_runs.c.id == run_id, discovery_runs.c.next_at.is_not(None), discovery_runs.c.next_at <= now)
    next_at = conn.execute(select(discovery_runs.c.next_at).where(*cond)).scalar()
    if next_at is None or conn.execute(update(discovery_runs).where(*cond).values(next_at=None)).rowcount != 1:
        return None
    return float(next_at)


def interrupt_unfinished(conn: Connection, now: float) -> int:
    """Mark runs a stop left running as interrupted."""
    result = conn.execute(
        update(discovery_runs).where(discovery_runs.c.status == "running")
        .values(status="interrupted", finished_at=now, error="the server stopped during the run")
    )
    return int(result.rowcount)


def save_found(conn: Connection, run_id: int, rows: Iterable[NewFound]) -> None:
    """Store a run's proposals (one per address)."""
    values = [{**r, "run_id": run_id} for r in rows]
    if values:
        conn.execute(insert(discovery_found), values)


def list_found(conn: Connection, run_id: int) -> list[FoundRow]:
    """A run's proposals in address order (numerically for IPv4)."""
    rows = [
        FoundRow(
            id=r.id, run_id=r.run_id, address=r.address, name=r.name, change=r.change, changed=r.changed, status=r.status,
            device_id=r.device_id, facts=r.facts, parent=r.parent, neighbours=r.neighbours,
        )
        for r in conn.execute(select(discovery_found).where(discovery_found.c.run_id == run_id))
    ]  # fmt: skip
    return sorted(rows, key=lambda r: _address_key(str(r["address"])))


def _address_key(address: str) -> tuple[int, ...]:
    parts = address.split(".")
    return tuple(int(p) for p in parts) if len(parts) == 4 and all(p.isdigit() for p in parts) else (1 << 16, len(address))


def mark_found(conn: Connection, found_id: int, status: str, device_id: int | None) -> None:
    """Record what became of one proposal."""
    conn.execute(update(discovery_found).where(discovery_found.c.id == found_id).values(status=status, device_id=device_id))


def device_index(conn: Connection) -> dict[str, tuple[int, str]]:
    """Existing devices by address and by lower-case name -> (id, name), to tell known devices from new ones."""
    return _index(conn.execute(select(devices.c.id, devices.c.name, devices.c.address).order_by(devices.c.id)))


def _index(rows: Iterable[Row[tuple[object, ...]]]) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for row in rows:
        out[str(row.address)] = (int(row.id), str(row.name))
        out.setdefault("name:" + str(row.name).lower(), (int(row.id), str(row.name)))
    return out


def replace_neighbours(conn: Connection, device_id: int, rows: Sequence[dict[str, str]], now: float) -> None:
    """Replace a device's neighbours with what was just read."""
    conn.execute(delete(device_neighbours).where(device_neighbours.c.device_id == device_id))
    if rows:
        conn.execute(insert(device_neighbours), [{**r, "device_id": device_id, "seen_at": now} for r in rows])


def _index_of(conn: Connection, addresses: set[str], names: set[str]) -> dict[str, tuple[int, str]]:
    """device_index, of only the devices with one of these addresses or (lower-case) names."""
    if not addresses and not names:
        return {}
    named = or_(devices.c.address.in_(addresses), func.lower(devices.c.name).in_(names))
    query = select(devices.c.id, devices.c.name, devices.c.address).where(named).order_by(devices.c.id)
    return _index(conn.execute(query))


def neighbours_of(conn: Connection, device_id: int) -> list[NeighbourRow]:
    """A device's neighbours, by port, each with the id of the device it names when that is known (the device page
    shows them: only the devices they name are read, not the whole inventory)."""
    query = select(device_neighbours).where(device_neighbours.c.device_id == device_id).order_by(device_neighbours.c.id)
    rows = list(conn.execute(query))
    index = _index_of(conn, {str(r.remote_address) for r in rows if r.remote_address},
                      {str(r.remote_name).lower() for r in rows if r.remote_name})  # fmt: skip
    out = []
    for r in rows:
        known = index.get(str(r.remote_address)) or index.get("name:" + str(r.remote_name).lower())
        out.append(
            NeighbourRow(
                id=r.id, device_id=r.device_id, protocol=r.protocol, local_port=r.local_port, remote_name=r.remote_name,
                remote_port=r.remote_port, remote_address=r.remote_address, remote_chassis=r.remote_chassis,
                remote_descr=r.remote_descr, seen_at=r.seen_at, remote_device_id=known[0] if known else None,
            )
        )  # fmt: skip
    return out


def map_nodes(conn: Connection) -> list[MapNode]:
    """Every device with its parent and state, for the topology map."""
    query = select(devices.c.id, devices.c.name, devices.c.address, devices.c.kind, devices.c.parent_id,
                   device_status.c.state).select_from(devices.outerjoin(device_status)).order_by(devices.c.name)
    return [MapNode(int(r.id), str(r.name), str(r.address), r.kind, r.parent_id, str(r.state or "unknown"))
            for r in conn.execute(query)]


def neighbour_links(conn: Connection) -> list[tuple[int, str, str]]:
    """(device id, remote name, remote address) of every LLDP/CDP neighbour, for links beside the parent tree."""
    query = select(device_neighbours.c.device_id, device_neighbours.c.remote_name, device_neighbours.c.remote_address
                   ).where(device_neighbours.c.protocol != "fdb")
    return [(int(r.device_id), str(r.remote_name), str(r.remote_address)) for r in conn.execute(query)]
