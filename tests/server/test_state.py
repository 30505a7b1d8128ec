"""decide_state: one case per row of the table in server/store/device_state.py, then the soft-failure rules."""

from __future__ import annotations

import pytest

from server.store.device_state import SEVERITY_ORDER, STATES, CheckStatus, State, decide_state

THRESHOLD = 2
OK = CheckStatus(ok=True, answered=True, fails=0)
DOWN = CheckStatus(ok=False, answered=True, fails=THRESHOLD, error="connection refused")
SILENT = CheckStatus(ok=False, answered=False, fails=THRESHOLD, error="timeout")
SOFT = CheckStatus(ok=False, answered=False, fails=1, error="timeout")


# Rows of the module docstring's table, in order: (checks, previous, enabled) -> state.
TABLE: list[tuple[str, dict[str, CheckStatus], State, bool, State]] = [
    ("none failing, polled, ok -> up", {"snmp": OK, "ping": OK}, "down", True, "up"),
    ("no check polled yet -> unknown", {}, "unknown", True, "unknown"),
    ("some failing, one ok -> degraded", {"snmp": DOWN, "ping": OK}, "up", True, "degraded"),
    ("all failing, one answered -> down", {"snmp": DOWN, "ping": SILENT}, "up", True, "down"),
    ("all failing, none answered -> unreachable", {"snmp": SILENT, "ping": SILENT}, "up", True, "unreachable"),
    ("device disabled -> unknown", {"snmp": DOWN, "ping": OK}, "degraded", False, "unknown"),
]


@pytest.mark.parametrize(("checks", "previous", "enabled", "expected"), [row[1:] for row in TABLE], ids=[r[0] for r in TABLE])
def test_state_table(checks: dict[str, CheckStatus], previous: State, enabled: bool, expected: State) -> None:
    state, reason = decide_state(checks, previous, THRESHOLD, enabled)
    assert state == expected
    assert reason and "\n" not in reason


def test_reasons_name_the_failing_checks_and_their_errors() -> None:
    state, reason = decide_state({"snmp": DOWN, "ping": OK, "http": SILENT}, "up", THRESHOLD)
    assert state == "degraded"
    assert reason == "http: timeout; snmp: connection refused"
    assert decide_state({}, "up", THRESHOLD) == ("unknown", "not polled yet")
    assert decide_state({"a": OK}, "up", THRESHOLD, enabled=False) == ("unknown", "polling disabled")
    assert decide_state({"a": OK}, "up", THRESHOLD)[1] == "all checks ok"


def test_a_failure_without_error_text_still_gives_a_reason() -> None:
    bare = CheckStatus(ok=False, answered=False, fails=THRESHOLD)
    assert decide_state({"ping": bare}, "up", THRESHOLD) == ("unreachable", "ping: failed")


# ---------------------------------------------------------------- soft failures


@pytest.mark.parametrize("previous", ["up", "degraded", "down", "unreachable"])
def test_a_soft_failure_keeps_the_previous_state(previous: State) -> None:
    state, reason = decide_state({"snmp": SOFT}, previous, THRESHOLD)
    assert state == previous
    assert "snmp" in reason and "waiting for confirmation" in reason


def test_a_soft_failure_beside_an_ok_check_keeps_up() -> None:
    assert decide_state({"snmp": SOFT, "ping": OK}, "up", THRESHOLD)[0] == "up"


def test_from_unknown_the_first_failure_counts_at_once() -> None:
    assert decide_state({"snmp": SOFT}, "unknown", THRESHOLD)[0] == "unreachable"
    answered_once = CheckStatus(ok=False, answered=True, fails=1, error="auth failed")
    assert decide_state({"snmp": answered_once}, "unknown", THRESHOLD) == ("down", "snmp: auth failed")
    assert decide_state({"snmp": SOFT, "ping": OK}, "unknown", THRESHOLD)[0] == "degraded"


def test_a_failure_becomes_hard_at_the_threshold() -> None:
    history: list[State] = []
    previous: State = "up"
    for fails in range(1, 4):
        previous = decide_state({"ping": CheckStatus(False, False, fails, "timeout")}, previous, 3)[0]
        history.append(previous)
    assert history == ["up", "up", "unreachable"]


def test_a_hard_failure_beside_a_soft_one_is_degraded_not_down() -> None:
    # The soft-failing check has not been confirmed failing, so the device is not wholly down.
    assert decide_state({"snmp": DOWN, "ping": SOFT}, "up", THRESHOLD)[0] == "degraded"


def test_recovery_is_immediate() -> None:
    for previous in ("down", "unreachable", "degraded"):
        assert decide_state({"snmp": OK}, previous, THRESHOLD) == ("up", "all checks ok")


def test_threshold_one_means_no_soft_failures() -> None:
    one = CheckStatus(ok=False, answered=True, fails=1, error="x")
    assert decide_state({"snmp": one}, "up", 1)[0] == "down"


def test_check_status_reads_its_json_form_leniently() -> None:
    assert CheckStatus.from_dict({"ok": True, "answered": True, "fails": 0}) == OK
    assert CheckStatus.from_dict({}) == CheckStatus(ok=False, answered=False, fails=0)
    assert CheckStatus.from_dict({"ok": 0, "fails": None, "error": "e"}).error == "e"


def test_severity_order_puts_problems_first() -> None:
    assert sorted(STATES, key=SEVERITY_ORDER.__getitem__) == ["down", "unreachable", "degraded", "unknown", "up"]
