"""The network map: a layered layout of the parent tree (roots on top), drawn as SVG 360 units wide for phones.

Each layer is laid out in rows of at most PER_ROW nodes, so the map grows downwards, never sideways; LLDP/CDP
links that are not parent links are drawn dashed. Node names are escaped by the template, never trusted.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from server.store.discovery import MapNode

WIDTH: Final = 360
PER_ROW: Final = 3
BOX_W: Final = 108
BOX_H: Final = 40
GAP_X: Final = (WIDTH - PER_ROW * BOX_W) // (PER_ROW + 1)
ROW_H: Final = 64
LABEL_MAX: Final = 14
PROBLEM_STATES: Final = ("down", "unreachable", "degraded")


@dataclass(frozen=True, slots=True)
class Placed:
    """A node where it is drawn: box top-left (x, y), its label and state."""

    id: int
    name: str
    label: str
    state: str
    kind: str
    x: int
    y: int

    @property
    def cx(self) -> int:
        return self.x + BOX_W // 2


@dataclass(frozen=True, slots=True)
class Line:
    x1: int
    y1: int
    x2: int
    y2: int
    dashed: bool


@dataclass(frozen=True, slots=True)
class TopologyMap:
    """What the map template draws."""

    width: int
    height: int
    nodes: list[Placed]
    lines: list[Line]
    problems: int
    box_w: int = BOX_W
    box_h: int = BOX_H


def _label(name: str) -> str:
    return name if len(name) <= LABEL_MAX else name[: LABEL_MAX - 1] + "…"


def _layers(nodes: Sequence[MapNode]) -> list[list[MapNode]]:
    """Depth in the parent tree for every node (a parent outside the map, or a loop, makes a root)."""
    by_id = {n.id: n for n in nodes}
    depth: dict[int, int] = {}

    def depth_of(node: MapNode) -> int:
        seen: list[MapNode] = []
        here: MapNode | None = node
        while here is not None and here.id not in depth and here not in seen:
            seen.append(here)
            here = by_id.get(here.parent_id) if here.parent_id is not None else None
        base = depth[here.id] + 1 if here is not None and here.id in depth else 0
        for i, n in enumerate(reversed(seen)):
            depth[n.id] = base + i
        return depth[node.id]

    layers: dict[int, list[MapNode]] = defaultdict(list)
    for node in nodes:
        layers[depth_of(node)].append(node)
    return [sorted(layers[d], key=lambda n: (n.state not in PROBLEM_STATES, n.name.lower())) for d in sorted(layers)]


def layout(nodes: Sequence[MapNode], links: Sequence[tuple[int, int]] = ()) -> TopologyMap:
    """Place every node (layer by layer, rows of PER_ROW) and draw parent links and other neighbour links."""
    placed: dict[int, Placed] = {}
    y = 12
    for layer in _layers(nodes):
        for start in range(0, len(layer), PER_ROW):
            row = layer[start : start + PER_ROW]
            offset = (WIDTH - len(row) * BOX_W - (len(row) - 1) * GAP_X) // 2
            for i, n in enumerate(row):
                x = offset + i * (BOX_W + GAP_X)
                placed[n.id] = Placed(n.id, n.name, _label(n.name), n.state, n.kind or "", x, y)
            y += ROW_H
    lines: list[Line] = []
    tree: set[frozenset[int]] = set()
    for n in nodes:
        if n.parent_id in placed and n.id in placed:
            a, b = placed[n.parent_id], placed[n.id]
            lines.append(Line(a.cx, a.y + BOX_H, b.cx, b.y, False))
            tree.add(frozenset((n.id, n.parent_id)))
    for one, other in links:
        pair = frozenset((one, other))
        if one != other and pair not in tree and one in placed and other in placed:
            tree.add(pair)
            a, b = sorted((placed[one], placed[other]), key=lambda p: p.y)
            lines.append(Line(a.cx, a.y + BOX_H // 2, b.cx, b.y + BOX_H // 2, True))
    problems = sum(1 for n in nodes if n.state in PROBLEM_STATES)
    return TopologyMap(WIDTH, max(y, ROW_H), list(placed.values()), lines, problems)


def resolve_links(nodes: Sequence[MapNode], raw: Sequence[tuple[int, str, str]]) -> list[tuple[int, int]]:
    """Neighbour entries (device id, remote name, remote address) -> pairs of device ids, where the remote is known."""
    by_address = {n.address: n.id for n in nodes}
    by_name: dict[str, int] = {}
    for n in nodes:
        by_name.setdefault(n.name.lower(), n.id)
        by_name.setdefault(n.name.lower().split(".")[0], n.id)
    out = []
    for device_id, name, address in raw:
        other = by_address.get(address) or by_name.get(name.lower()) or by_name.get(name.lower().split(".")[0])
        if other is not None:
            out.append((device_id, other))
    return out
