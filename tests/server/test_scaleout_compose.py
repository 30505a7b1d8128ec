"""docker-compose.yml: postgres + serve + two workers, with health checks, restart policies and start order.

No Docker engine runs here, so the file is checked with `docker compose config` when the compose
plugin exists, and otherwise by reading the YAML structure (which is always checked).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {str(k): str(v) for k, v in env.items()}


def test_postgres_serve_and_two_workers_with_health_checks_and_restart(compose: dict[str, Any]) -> None:
    services = compose["services"]
    workers = [name for name, s in services.items() if "worker" in (s.get("command") or [])]
    assert {"postgres", "pocketnoc"} <= set(services) and len(workers) >= 2
    for name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always"), name
        check = service.get("healthcheck") or {}
        assert check.get("test") and check.get("interval"), f"{name} has no health check"
    assert services["pocketnoc"]["command"] == ["pocketnoc", "serve"]
    assert services["pocketnoc"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    names = set()
    for name in workers:
        w = services[name]
        assert w["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert w["depends_on"]["pocketnoc"]["condition"] == "service_healthy"  # serve migrates the schema first
        names.add(w["command"][w["command"].index("--name") + 1])
        assert f"worker-{w['command'][-1]}.alive" in " ".join(w["healthcheck"]["test"])  # its own heartbeat file
    assert len(names) == len(workers), "each worker needs its own --name"


def test_every_pocketnoc_process_shares_one_postgresql_and_one_key(compose: dict[str, Any]) -> None:
    services = compose["services"]
    envs = [_env(s) for name, s in services.items() if name != "postgres"]
    assert len({e["POCKETNOC_DATABASE_URL"] for e in envs}) == 1
    assert all(
        e["POCKETNOC_DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in e["POCKETNOC_DATABASE_URL"] for e in envs
    )
    assert all(e["POCKETNOC_SCHEDULER"] == "queue" for e in envs)
    assert len({e["POCKETNOC_SECRET_KEY"] for e in envs}) == 1
    assert "pocketnoc-pg" in (compose.get("volumes") or {})


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI on this machine")
def test_docker_compose_config_accepts_the_file() -> None:
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30, check=False)
    if plugin.returncode != 0:
        pytest.skip("the docker compose plugin is not installed here (the YAML structure is checked above)")
    env = {"POSTGRES_PASSWORD": "x", "POCKETNOC_SECRET_KEY": "y", "PATH": "/usr/bin:/bin:/usr/local/bin"}
    result = subprocess.run(["docker", "compose", "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, timeout=60, env=env, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
