"""The network as the map draws it: devices with their parents and states, and the neighbour links between them."""

from __future__ import annotations

from server.runtime import Services
from server.store import discovery as store
from server.store.discovery import MapNode


def map_data(svc: Services) -> tuple[list[MapNode], list[tuple[int, str, str]]]:
    """Every device (id, name, address, kind, parent, state) and every LLDP/CDP neighbour entry."""
    with svc.reader.connect() as conn:
        return store.map_nodes(conn), store.neighbour_links(conn)
