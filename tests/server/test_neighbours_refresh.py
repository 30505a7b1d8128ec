"""Reading neighbours now from a device that does not answer SNMP is a 409 and keeps what was read before
(a silent agent is not "no neighbours"); a run that found only monitored devices offers no add buttons.
No SNMP peer: nothing listens on UDP port 9, and a refused TCP connect on it is the "answer" a run records."""

from __future__ import annotations

import time

from agents.neighbours import Neighbour
from server.store import discovery as store
from tests.server.conftest import AppEnv, bearer


def test_a_silent_device_keeps_its_neighbours(app_env: AppEnv) -> None:
    admin = bearer(app_env.token("ada", "admin"))
    snmp = {"version": "2c", "community": "public", "port": 9, "timeout": 0.2, "retries": 0}  # nothing listens there
    body = {"name": "silent", "address": "127.0.77.250", "snmp": snmp}
    device = app_env.client.post("/api/v1/devices", headers=admin, json=body).json()["id"]
    before = Neighbour("lldp", "Gi1/0/1", remote_name="core-sw1", remote_port="ge-0/0/47").public()
    with app_env.svc.engine.begin() as conn:
        store.replace_neighbours(conn, device, [before], time.time())
    answer = app_env.client.post(f"/api/v1/devices/{device}/neighbours/refresh", headers=admin)
    assert answer.status_code == 409 and "did not answer" in answer.text, answer.text
    kept = app_env.client.get(f"/api/v1/devices/{device}/neighbours", headers=admin).json()["items"]
    assert [n["remote_name"] for n in kept] == ["core-sw1"]
    for missing in (device + 1000, 0, -1):  # an unknown device is a 404, as on its other routes, not an empty list
        gone = app_env.client.get(f"/api/v1/devices/{missing}/neighbours", headers=admin)
        assert gone.status_code == 404 and "no such device" in gone.text, gone.text


def test_a_run_with_nothing_to_add_offers_no_add_buttons(app_env: AppEnv) -> None:
    """Every address already monitored: the run page says so instead of offering buttons that can only fail."""
    admin = bearer(app_env.token("ada", "admin"))
    for n in (250, 251):
        app_env.client.post("/api/v1/devices", headers=admin, json={"name": f"d{n}", "address": f"127.0.77.{n}"})
    body = {"ranges": ["127.0.77.250/31"], "snmp": [{"version": "2c", "community": "x", "port": 9}], "icmp": False,
            "ports": [9], "timeout": 0.2}  # a refused connect on port 9 is an answer
    run = app_env.client.post("/api/v1/discovery/runs", headers=admin, json=body).json()["id"]
    for _ in range(50):
        if app_env.client.get(f"/api/v1/discovery/runs/{run}", headers=admin).json()["status"] != "running":
            break
        time.sleep(0.1)
    page = app_env.client.get(f"/discovery/runs/{run}", headers=admin).text
    assert "d250" in page and "Add the ticked devices" not in page and "Nothing to add: every device found" in page
