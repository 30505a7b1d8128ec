"""From what a sweep found to proposals: names, parents (the uplink neighbour towards the poller), and the diff.

Pure functions over plain data, so each rule is tested without a network.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, Final

from agents.discovery import Found
from server.store.discovery import NewFound

COMPARED: Final = ("sys_name", "sys_object_id", "kind", "family", "model", "serial", "if_count")
_BAD_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")


def device_name(sys_name: str, address: str) -> str:
    """A valid device name from sysName (else the address): other characters become '-', at most 64."""
    for raw in (sys_name, address):
        name = _BAD_NAME.sub("-", raw).strip("-._")[:64].rstrip("-._")
        if name:
            return name
    return "device"


def facts_of(found: Found) -> dict[str, Any]:
    """What a proposal shows and compares (no credential but its position)."""
    data = asdict(found)
    data.pop("neighbours")
    data.pop("address")
    return data


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate.lower() in taken:
        suffix = f"-{n}"
        candidate, n = name[: 64 - len(suffix)] + suffix, n + 1
    taken.add(candidate.lower())
    return candidate


def _resolve(n: Mapping[str, str], by_address: Mapping[str, str], by_name: Mapping[str, str]) -> str | None:
    """The address (node key) a neighbour entry names: by management address, else by system name."""
    if n.get("remote_address") in by_address:
        return by_address[n["remote_address"]]
    name = str(n.get("remote_name") or "").lower()
    return by_name.get(name) or by_name.get(name.split(".")[0]) if name else None


def parents(nodes: Mapping[str, Sequence[Mapping[str, str]]], names: Mapping[str, str], roots: Sequence[str]) -> dict[str, str]:
    """Each node's parent (its predecessor on a breadth-first walk of the LLDP/CDP links from the roots).

    nodes: address -> its neighbour entries; names: address -> system name. Every component without a root
    starts from its best-connected node, so each node gets at most one parent and the tree has no loop.
    """
    by_address = {a: a for a in nodes}
    by_name: dict[str, str] = {}
    for address, name in names.items():
        if name:
            by_name.setdefault(name.lower(), address)
            by_name.setdefault(name.lower().split(".")[0], address)
    links: dict[str, set[str]] = {a: set() for a in nodes}
    for address, entries in nodes.items():
        for entry in entries:
            if entry.get("protocol") == "fdb":
                continue
            other = _resolve(entry, by_address, by_name)
            if other and other != address:
                links[address].add(other)
                links[other].add(address)
    parent: dict[str, str] = {}
    seen: set[str] = set()
    order = [r for r in roots if r in links]
    order += sorted(links, key=lambda a: (-len(links[a]), a))
    for root in order:
        if root in seen:
            continue
        seen.add(root)
        queue = deque([root])
        while queue:
            here = queue.popleft()
            for nxt in sorted(links[here]):
                if nxt not in seen:
                    seen.add(nxt)
                    parent[nxt] = here
                    queue.append(nxt)
    return parent


def proposals(
    found: Sequence[Found],
    known: Mapping[str, tuple[int, str]],
    previous: Sequence[Mapping[str, Any]],
    seed: str | None,
) -> list[NewFound]:
    """Rows for discovery_found: new / changed / same against the previous run, plus what is gone since."""
    taken = {key.removeprefix("name:") for key in known if key.startswith("name:")}
    before = {str(r["address"]): r for r in previous if r.get("change") != "gone"}
    rows: list[NewFound] = []
    names: dict[str, str] = {}
    for f in found:
        if f.address in known:
            names[f.address] = known[f.address][1]
        else:
            names[f.address] = _unique(device_name(f.sys_name, f.address), taken)
    roots = [seed] if seed else []
    roots += [f.address for f in found if f.address in known]  # devices already monitored sit nearer the poller
    tree = parents({f.address: [n.public() for n in f.neighbours] for f in found}, {f.address: f.sys_name for f in found}, roots)
    for f in found:
        facts = facts_of(f)
        old = before.get(f.address)
        changed = [k for k in COMPARED if old is not None and (old.get("facts") or {}).get(k) != facts.get(k)]
        change = "new" if old is None else ("changed" if changed else "same")
        device = known.get(f.address)
        up = tree.get(f.address)
        rows.append({
            "address": f.address,
            "name": names[f.address],
            "change": change,
            "changed": changed,
            "status": "known" if device else "proposed",
            "device_id": device[0] if device else None,
            "facts": facts,
            "parent": names.get(up) if up else None,
            "neighbours": [n.public() for n in f.neighbours],
        })
    current = {f.address for f in found}
    for address, old in before.items():
        if address not in current:
            rows.append({
                "address": address, "name": str(old["name"]), "change": "gone", "changed": [], "status": "gone",
                "device_id": old.get("device_id"), "facts": old.get("facts") or {}, "parent": None, "neighbours": [],
            })
    return rows
