"""The pure parts of discovery: names from sysName, parents from the neighbour graph, the diff between runs,
and the map's layout (360 units wide, parents above children, problems first)."""

from __future__ import annotations

from agents.discovery import Found
from agents.neighbours import Neighbour
from server.services.discovery_plan import device_name, parents, proposals
from server.store.discovery import MapNode
from server.web.views_topology import BOX_W, WIDTH, layout, resolve_links


def lldp(name: str, address: str = "") -> Neighbour:
    return Neighbour("lldp", "p1", remote_name=name, remote_address=address)


def test_names_are_valid_device_names() -> None:
    assert device_name("core-sw1.example.test", "10.0.0.1") == "core-sw1.example.test"
    assert device_name("\x1b[31mbad name\x07", "10.0.0.1") == "31mbad-name"
    assert device_name("", "2001:db8::1") == "2001-db8-1"
    assert device_name("x" * 300, "10.0.0.1") == "x" * 64


def test_parents_follow_links_from_the_root_and_never_loop() -> None:
    nodes = {
        "a": [{"remote_address": "b"}, {"remote_name": "C.example.test"}],
        "b": [{"remote_address": "a"}, {"remote_address": "c"}],  # a triangle: c gets one parent only
        "c": [{"remote_name": "a"}, {"remote_name": "d"}],
        "d": [{"protocol": "fdb", "remote_address": "a"}],  # MACs on a port are no link
        "e": [],
    }
    names = {"a": "a", "b": "b", "c": "c.example.test", "d": "d", "e": "e"}
    assert parents(nodes, names, ["a"]) == {"b": "a", "c": "a", "d": "c"}
    assert parents(nodes, names, ["d"]) == {"c": "d", "a": "c", "b": "c"}


def test_a_rerun_reports_new_changed_and_gone() -> None:
    first = proposals([Found("10.0.0.1", "icmp", credential=0, sys_name="sw1", serial="A"),
                       Found("10.0.0.2", "icmp", credential=0, sys_name="sw2")], {}, [], None)
    before = [{**row, "id": i} for i, row in enumerate(first)]
    second = proposals([Found("10.0.0.1", "icmp", credential=0, sys_name="sw1", serial="B"),
                        Found("10.0.0.3", "icmp", credential=0, sys_name="sw3")],
                       {"10.0.0.3": (7, "existing"), "name:existing": (7, "existing")}, before, None)
    got = {r["address"]: (r["change"], r["status"], r["changed"], r["name"]) for r in second}
    assert got == {
        "10.0.0.1": ("changed", "proposed", ["serial"], "sw1"),
        "10.0.0.3": ("new", "known", [], "existing"),
        "10.0.0.2": ("gone", "gone", [], "sw2"),
    }


def test_proposal_names_do_not_clash_with_devices_or_each_other() -> None:
    rows = proposals([Found("10.0.0.1", "icmp", sys_name="sw"), Found("10.0.0.2", "icmp", sys_name="SW"),
                      Found("10.0.0.3", "icmp", sys_name="core", neighbours=[lldp("sw", "10.0.0.1")])],
                     {"10.9.9.9": (1, "core"), "name:core": (1, "core")}, [], "10.0.0.3")
    assert [r["name"] for r in rows] == ["sw", "SW-2", "core-2"]
    assert rows[0]["parent"] == "core-2" and rows[2]["parent"] is None


def test_the_map_puts_parents_above_children_in_rows_of_three() -> None:
    nodes = [MapNode(1, "core", "10.0.0.1", "router", None, "up")]
    nodes += [MapNode(i, f"sw{i}", f"10.0.0.{i}", "switch", 1, "down" if i == 6 else "up") for i in range(2, 7)]
    m = layout(nodes, resolve_links(nodes, [(2, "sw3", ""), (2, "core", "")]))
    at = {n.name: n for n in m.nodes}
    assert m.width == WIDTH and all(n.x >= 0 and n.x + BOX_W <= WIDTH for n in m.nodes)
    assert at["core"].y < at["sw2"].y < at["sw5"].y  # five children: a row of three, then two
    assert at["sw6"].y == at["sw2"].y  # the one with a problem comes first
    assert m.problems == 1 and sum(1 for line in m.lines if line.dashed) == 1  # sw2-sw3; sw2-core is a parent link


def test_a_parent_loop_or_missing_parent_still_draws() -> None:
    nodes = [MapNode(1, "a", "x", None, 2, "up"), MapNode(2, "b", "y", None, 1, "up"), MapNode(3, "c", "z", None, 99, "up")]
    m = layout(nodes)
    assert len(m.nodes) == 3 and m.height > 0
