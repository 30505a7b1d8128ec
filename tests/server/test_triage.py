"""A 48-port switch on a phone: only real problems are listed first, the alerting port at the top."""

from __future__ import annotations

from server.web.pages import triage


def _port(index: int, **rates: float) -> dict[str, object]:
    return {"index": index, "name": f"Gi1/0/{index}", "oper": "up", **rates}


def test_a_trickle_of_discards_or_a_rare_error_is_not_a_problem() -> None:
    ports = [_port(1, in_discards_rate=0.03), _port(2, in_errors_rate=0.01), _port(3)]
    split = triage.interfaces(ports, [], None)
    assert split.problems == [] and len(split.rest) == 3


def test_the_alerting_port_comes_first_then_errors_then_discards() -> None:
    ports = [_port(1, out_discards_rate=40.0), _port(2, in_errors_rate=2.0), _port(17)]
    alerts = [{"labels": {"ifIndex": "17"}, "rule": "interface-down", "flapping": False}]
    split = triage.interfaces(ports, alerts, None)
    assert [(r.item["index"], r.why) for r in split.problems] == [(17, ("down",)), (2, ("errors",)), (1, ("discards",))]
