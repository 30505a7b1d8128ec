"""RateTracker: gauges pass, counters become rates; wraps handled, resets and reboots skipped."""

from __future__ import annotations

import pytest

from agents.base import Sample
from server.polling.rates import RateTracker, rate_name
from server.store.metrics import labels_key

IF1 = {"ifIndex": "1", "ifName": "ge-0/0/1"}


def counter(metric: str, value: int, ts: float, kind: str = "counter32", labels: dict[str, str] | None = None) -> Sample:
    return Sample(metric, value, dict(IF1 if labels is None else labels), kind, ts)  # type: ignore[arg-type]


def test_gauges_pass_through_unchanged() -> None:
    tracker = RateTracker()
    out = tracker.convert(1, "snmp", [Sample("cpu_load_pct", 37, {}, "gauge", 100.0), Sample("if_oper_up", 1, IF1)])
    assert out == [("cpu_load_pct", "", 37.0), ("if_oper_up", labels_key(IF1), 1.0)]
    assert all(isinstance(value, float) for _, _, value in out)


def test_the_first_counter_sample_gives_nothing() -> None:
    assert RateTracker().convert(1, "snmp", [counter("if_in_errors", 100, 1000.0)]) == []


def test_a_counter_becomes_a_per_second_rate() -> None:
    tracker = RateTracker()
    tracker.convert(1, "snmp", [counter("if_in_errors", 100, 1000.0)])
    assert tracker.convert(1, "snmp", [counter("if_in_errors", 160, 1060.0)]) == [
        ("if_in_errors_rate", labels_key(IF1), 1.0)
    ]


def test_octets_become_bits_per_second() -> None:
    tracker = RateTracker()
    tracker.convert(1, "snmp", [counter("if_in_octets", 1_000, 0.0, "counter64")])
    out = tracker.convert(1, "snmp", [counter("if_in_octets", 126_000, 10.0, "counter64")])
    assert out == [("if_in_bps", labels_key(IF1), 100_000.0)]  # 125,000 bytes in 10 s = 100 kb/s
    assert rate_name("if_out_octets") == ("if_out_bps", 8.0)
    assert rate_name("if_in_discards") == ("if_in_discards_rate", 1.0)


def test_counter32_wraps_around() -> None:
    tracker = RateTracker()
    tracker.convert(1, "snmp", [counter("if_in_octets", 2**32 - 1_000, 0.0)])
    out = tracker.convert(1, "snmp", [counter("if_in_octets", 4_000, 10.0)])
    assert out == [("if_in_bps", labels_key(IF1), 5_000 * 8 / 10)]


def test_counter64_going_backwards_is_a_reset_and_is_skipped() -> None:
    tracker = RateTracker()
    tracker.convert(1, "snmp", [counter("if_in_octets", 10**12, 0.0, "counter64")])
    assert tracker.convert(1, "snmp", [counter("if_in_octets", 5_000, 10.0, "counter64")]) == []
    # The next interval is measured from the reset value.
    assert tracker.convert(1, "snmp", [counter("if_in_octets", 6_000, 20.0, "counter64")]) == [
        ("if_in_bps", labels_key(IF1), 800.0)
    ]


def test_a_reboot_skips_every_counter_of_that_check() -> None:
    tracker = RateTracker()
    tracker.convert(1, "snmp", [counter("if_in_octets", 2**31, 0.0), counter("if_in_errors", 50, 0.0)], uptime=86_400)
    # Uptime went backwards: counters restarted near zero; a Counter32 "wrap" here would be a huge fake spike.
    after = [counter("if_in_octets", 1_000, 60.0), counter("if_in_errors", 2, 60.0), Sample("cpu_load_pct", 5, {}, "gauge", 60.0)]
    assert tracker.convert(1, "snmp", after, uptime=30) == [("cpu_load_pct", "", 5.0)]
    out = tracker.convert(1, "snmp", [counter("if_in_octets", 2_000, 120.0), counter("if_in_errors", 8, 120.0)], uptime=90)
    assert out == [("if_in_bps", labels_key(IF1), 1_000 * 8 / 60), ("if_in_errors_rate", labels_key(IF1), 0.1)]


def test_uptime_jitter_is_not_a_reboot() -> None:
    tracker = RateTracker()
    tracker.convert(1, "snmp", [counter("if_in_errors", 0, 0.0)], uptime=1000.5)
    assert tracker.convert(1, "snmp", [counter("if_in_errors", 60, 60.0)], uptime=1000.0) == [
        ("if_in_errors_rate", labels_key(IF1), 1.0)
    ]


def test_no_time_elapsed_gives_nothing() -> None:
    tracker = RateTracker()
    tracker.convert(1, "snmp", [counter("if_in_errors", 1, 50.0)])
    assert tracker.convert(1, "snmp", [counter("if_in_errors", 9, 50.0)]) == []
    assert tracker.convert(1, "snmp", [counter("if_in_errors", 10, 40.0)]) == []


def test_series_are_kept_apart_by_device_check_and_labels() -> None:
    tracker = RateTracker()
    other = {"ifIndex": "2", "ifName": "ge-0/0/2"}
    first = [counter("if_in_errors", 0, 0.0), counter("if_in_errors", 0, 0.0, labels=other)]
    tracker.convert(1, "snmp", first)
    tracker.convert(2, "snmp", [counter("if_in_errors", 1_000, 0.0)])
    out = tracker.convert(1, "snmp", [counter("if_in_errors", 10, 10.0), counter("if_in_errors", 30, 10.0, labels=other)])
    assert sorted(out) == sorted([("if_in_errors_rate", labels_key(IF1), 1.0), ("if_in_errors_rate", labels_key(other), 3.0)])
    assert tracker.convert(1, "ssh", [counter("if_in_errors", 10, 20.0)]) == []


def test_forget_drops_a_device() -> None:
    tracker = RateTracker()
    tracker.convert(7, "snmp", [counter("if_in_errors", 0, 0.0)], uptime=100)
    tracker.forget(7)
    assert tracker.convert(7, "snmp", [counter("if_in_errors", 10, 10.0)], uptime=5) == []


@pytest.mark.parametrize("kind", ["counter32", "counter64"])
def test_rates_are_never_negative(kind: str) -> None:
    tracker = RateTracker()
    values = [5, 3, 2**31, 7, 7, 2**32 - 1, 0]
    out = []
    for step, value in enumerate(values):
        out += tracker.convert(1, "snmp", [counter("if_in_errors", value, float(step * 10), kind)])
    assert out and all(v >= 0 for _, _, v in out)


def test_devices_of_one_model_share_keys_but_keep_their_own_counters() -> None:
    tracker = RateTracker()
    eth1 = {"ifIndex": "2", "ifName": "ge-0/0/2"}
    for device_id, step in ((1, 60), (2, 600)):
        tracker.convert(device_id, "snmp", [counter("if_in_errors", 0, 0.0), counter("if_in_errors", 0, 0.0, labels=eth1)])
        second = [counter("if_in_errors", step, 60.0), counter("if_in_errors", 0, 60.0, labels=eth1)]
        out = tracker.convert(device_id, "snmp", second)
        assert out == [("if_in_errors_rate", labels_key(IF1), step / 60), ("if_in_errors_rate", labels_key(eth1), 0.0)]
    assert tracker._last[(1, "snmp")].index is tracker._last[(2, "snmp")].index  # one key map for both
    # Device 2 grows a port: its map becomes its own, device 1 is untouched.
    eth2 = {"ifIndex": "3", "ifName": "ge-0/0/3"}
    tracker.convert(2, "snmp", [counter("if_in_errors", 1200, 120.0), counter("if_in_errors", 5, 120.0, labels=eth2)])
    assert tracker._last[(1, "snmp")].index is not tracker._last[(2, "snmp")].index
    assert tracker.convert(1, "snmp", [counter("if_in_errors", 120, 120.0)]) == [("if_in_errors_rate", labels_key(IF1), 1.0)]
    assert tracker.convert(2, "snmp", [counter("if_in_errors", 11, 180.0, labels=eth2)]) == [
        ("if_in_errors_rate", labels_key(eth2), 0.1)
    ]


def test_export_and_restore_carry_the_counters_over() -> None:
    first = RateTracker()
    first.convert(7, "snmp", [counter("if_in_octets", 1_000, 0.0, "counter64")], uptime=500)
    state = first.export(7, "snmp")
    assert state == {"last": [["if_in_octets", labels_key(IF1), 1_000.0, 0.0]], "uptime": 500.0}
    second = RateTracker()
    second.restore(7, "snmp", {**state, "last": [*state["last"], ["bad"], "junk"]})  # type: ignore[list-item]
    assert second.convert(7, "snmp", [counter("if_in_octets", 2_000, 10.0, "counter64")], uptime=510) == [
        ("if_in_bps", labels_key(IF1), 800.0)
    ]
