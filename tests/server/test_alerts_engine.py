"""The alert engine's transition table, one test per row, plus flapping from its second change."""

from __future__ import annotations

import pytest

from server.alerts.engine import FLAP_SETTLE, FLAP_WINDOW, Flap, KeyState, Observation, applies, armed, candidates, step
from server.alerts.rules import Match, Rule, parse_expr
from server.alerts.titles import render_title

MEM = Rule.model_validate({"name": "mem", "expr": "mem_used_pct > 90", "clear": "mem_used_pct < 80"})
MEM_FOR = Rule.model_validate({"name": "mem-for", "expr": "mem_used_pct > 90", "for": 60})
DOWN = Rule.model_validate({"name": "down", "expr": "state in (down, unreachable)", "severity": "critical"})


def test_row1_ok_stays_ok_without_condition() -> None:
    state, events = step(MEM, KeyState("ok", 0), {"mem_used_pct": 50}, 100)
    assert state.status == "ok" and events == []


def test_row1_no_data_changes_nothing() -> None:
    firing = KeyState("firing", 10, 95.0, (10,))
    assert step(MEM, firing, {}, 100) == (firing, [])


def test_row2_fires_at_once_without_for() -> None:
    state, events = step(MEM, None, {"mem_used_pct": 95}, 100)
    assert state.status == "firing" and [e.kind for e in events] == ["fire"] and events[0].value == 95


def test_row3_pending_with_for() -> None:
    state, events = step(MEM_FOR, KeyState("ok", 0), {"mem_used_pct": 95}, 100)
    assert state.status == "pending" and state.since == 100 and events == []


def test_row4_pending_fires_after_for() -> None:
    state, events = step(MEM_FOR, KeyState("pending", 100), {"mem_used_pct": 95}, 161)
    assert state.status == "firing" and [e.kind for e in events] == ["fire"]


def test_row5_pending_waits() -> None:
    state, events = step(MEM_FOR, KeyState("pending", 100), {"mem_used_pct": 95}, 130)
    assert state.status == "pending" and state.since == 100 and events == []


def test_row6_pending_clears_back_to_ok() -> None:
    state, events = step(MEM_FOR, KeyState("pending", 100), {"mem_used_pct": 50}, 130)
    assert state.status == "ok" and events == []


def test_row7_resolves_on_clear_threshold_only() -> None:
    firing = KeyState("firing", 10, 95.0, (10,))
    later = 10 + FLAP_WINDOW + 1  # fired longer ago than the flapping window: an ordinary resolve
    state, events = step(MEM, firing, {"mem_used_pct": 85}, later)  # between thresholds: hysteresis keeps it
    assert state.status == "firing" and [e.kind for e in events] == ["update"]
    state, events = step(MEM, firing, {"mem_used_pct": 70}, later)
    assert state.status == "ok" and [e.kind for e in events] == ["resolve"]


def test_row8_firing_updates_value() -> None:
    state, events = step(MEM, KeyState("firing", 10, 95.0, (10,)), {"mem_used_pct": 97}, 100)
    assert state.status == "firing" and state.value == 97 and [e.kind for e in events] == ["update"]


def test_rows_9_to_12_six_flaps_are_one_trigger_one_flapping_and_one_resolve() -> None:
    state: KeyState | None = None
    kinds: list[str] = []
    t = 0.0
    for i in range(12):  # six down/up flaps, 30 s apart
        state, events = step(DOWN, state, {"state": "down" if i % 2 == 0 else "up"}, t)
        kinds += [e.kind for e in events if e.kind not in ("update", "hold")]
        t += 30
    assert state is not None
    assert kinds == ["fire", "flap_start"]
    assert state.status == "firing" and state.flapping and state.held_open  # row 9: held open while it flaps
    cleared = t - 30
    state, events = step(DOWN, state, {"state": "up"}, cleared + FLAP_SETTLE - 1)
    assert state.status == "firing" and events == []
    state, events = step(DOWN, state, {"state": "up"}, cleared + FLAP_SETTLE)  # row 10: clear for the settle time
    assert state.status == "ok" and [e.kind for e in events] == ["resolve"] and state.changes == ()


def test_row9_a_resolve_within_the_window_is_the_second_change_and_waits() -> None:
    state, events = step(DOWN, KeyState("firing", 100, None, (100.0,)), {"state": "up"}, 100 + FLAP_WINDOW - 1)
    assert state.status == "firing" and state.held_open and not state.flapping and [e.kind for e in events] == ["hold"]
    assert state.since == 100 + FLAP_WINDOW - 1


def test_row9_settle_zero_resolves_at_once() -> None:
    state, events = step(DOWN, KeyState("firing", 100, None, (100.0,)), {"state": "up"}, 130, Flap(600, 0))
    assert state.status == "ok" and [e.kind for e in events] == ["resolve"]


def test_row10_an_alert_that_stays_clear_resolves_after_the_settle_time() -> None:
    held = KeyState("firing", 50, None, (0.0, 50.0), held_open=True)
    assert step(DOWN, held, {"state": "up"}, 109, Flap(600, 60))[0].status == "firing"
    state, events = step(DOWN, held, {"state": "up"}, 110, Flap(600, 60))
    assert state.status == "ok" and [e.kind for e in events] == ["resolve"]


def test_row11_flapping_condition_again_keeps_the_same_alert() -> None:
    held = KeyState("firing", 90, None, (0.0, 30.0, 60.0, 90.0), flapping=True, held_open=True)
    state, events = step(DOWN, held, {"state": "down"}, 120)
    assert state.status == "firing" and not state.held_open and [e.kind for e in events] == ["update"]
    state, events = step(DOWN, state, {"state": "down"}, 150)  # still failing: no new change counted
    assert state.changes == (0.0, 30.0, 60.0, 90.0, 120.0) and [e.kind for e in events] == ["update"]


def test_row12_failing_again_while_held_is_flapping_once() -> None:
    held = KeyState("firing", 30, None, (0.0, 30.0), held_open=True)
    state, events = step(DOWN, held, {"state": "down"}, 60)
    assert state.flapping and not state.held_open and [e.kind for e in events] == ["update", "flap_start"]


IFDOWN = Rule.model_validate(
    {"name": "ifdown", "expr": "if_oper_up == 0 and if_admin_up == 1", "arm": "if_oper_up == 1"}
)


def test_row0_an_armed_rule_ignores_a_key_never_seen_armed() -> None:
    never_up = {"if_oper_up": 0.0, "if_admin_up": 1.0}
    assert not armed(IFDOWN, None, never_up)  # an unused port: no state, no alert, ever
    assert not armed(IFDOWN, None, {"if_admin_up": 1.0})  # no data: not armed either
    assert armed(MEM, None, {"mem_used_pct": 95})  # a rule without arm watches every key


def test_row0_arming_keeps_an_ok_state_and_a_later_failure_fires() -> None:
    up = {"if_oper_up": 1.0, "if_admin_up": 1.0}
    assert armed(IFDOWN, None, up)
    state, events = step(IFDOWN, None, up, 100)
    assert state == KeyState("ok", 100) and events == []  # stored: the port is watched from now on, across restarts
    assert armed(IFDOWN, state, {"if_oper_up": 0.0, "if_admin_up": 1.0})
    state, events = step(IFDOWN, state, {"if_oper_up": 0.0, "if_admin_up": 1.0}, 160)
    assert state.status == "firing" and [e.kind for e in events] == ["fire"]


@pytest.mark.parametrize("arm", ["mem_used_pct > 1", "if_oper_up === 1"])
def test_arm_must_parse_and_use_only_names_of_expr(arm: str) -> None:
    with pytest.raises(ValueError):
        Rule.model_validate({"name": "x", "expr": "if_oper_up == 0", "arm": arm})


def test_rules_join_metrics_on_the_same_labels() -> None:
    rule = Rule.model_validate({"name": "ifdown", "expr": "if_oper_up == 0 and if_admin_up == 1"})
    l1, l2 = '{"ifIndex":"1"}', '{"ifIndex":"2"}'
    obs = Observation(
        1, "sw", "up",
        metrics={
            "if_oper_up": {l1: ({"ifIndex": "1"}, 0.0), l2: ({"ifIndex": "2"}, 0.0)},
            "if_admin_up": {l1: ({"ifIndex": "1"}, 1.0), l2: ({"ifIndex": "2"}, 0.0)},
        },
    )
    found = candidates(rule, obs)
    assert set(found) == {l1, l2}
    assert step(rule, None, found[l1][1], 1)[0].status == "firing"  # admin up, oper down
    assert step(rule, None, found[l2][1], 1)[0].status == "ok"  # admin down: not an alert


def test_match_by_tag_kind_and_device() -> None:
    rule = Rule.model_validate({"name": "r", "expr": "state == down", "match": {"tags": ["core"], "kinds": ["switch"]}})
    assert applies(rule, Observation(1, "a", "up", "switch", frozenset({"core"})))
    assert not applies(rule, Observation(1, "a", "up", "router", frozenset({"core"})))
    assert not applies(rule, Observation(1, "a", "up", "switch", frozenset({"edge"})))
    assert isinstance(rule.match, Match)


@pytest.mark.parametrize(
    "expr", ["mem >", "rm -rf /", "state in (down, exploded)", "x > y", "__import__('os')", "a > 1 or b > 2", "a" * 600]
)
def test_bad_expressions_are_refused(expr: str) -> None:
    with pytest.raises(ValueError):
        parse_expr(expr)


def test_titles_fill_names_only() -> None:
    values = {"device": "sw1", "value": 93.456, "ifName": "<b>Gi0/1</b>"}
    assert render_title("{device}: {ifName} at {value:.0f}%", values) == "sw1: <b>Gi0/1</b> at 93%"
    assert render_title("{device.__class__} {value.__class__.__mro__} {missing}", values) == (
        "{device.__class__} {value.__class__.__mro__} {missing}"
    )
