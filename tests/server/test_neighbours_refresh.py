"""Reading neighbours now from a device that does not answer SNMP is a 409 and keeps what was read before
(a silent agent is not "no neighbours")."""

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
