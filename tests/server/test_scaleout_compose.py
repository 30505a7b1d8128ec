"""docker-compose.yml: postgres + serve + two workers, with health checks, restart policies and start order.

`docker compose config` needs the compose plugin, not an engine; where the plugin is missing (this
machine has the Docker client only, and no registry we reach ships the plugin) the test skips, and
the file is validated the way compose's loader does it: YAML with merge keys, `${VAR:?msg}`
interpolation, then the Compose Specification's JSON schema (the copy vendored by check-jsonschema,
from PyPI) and compose's own consistency rules (services, volumes and health-gated dependencies exist).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ENV = {"POSTGRES_PASSWORD": "x", "POCKETNOC_SECRET_KEY": "y"}
# $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, ${VAR+alt}
VAR = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<bare>[A-Za-z_]\w*)|\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})", re.ASCII
)


class ComposeError(Exception):
    """What `docker compose config` would refuse the file for."""


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        name = m["bare"] or m["name"]
        op, arg, val = m["op"] or "", m["arg"] or "", env.get(name)
        unset = val is None or (op.startswith(":") and val == "")
        if op.endswith("-"):
            return arg if unset else str(val)
        if op.endswith("?"):
            if unset:
                raise ComposeError(f"required variable {name} is missing a value: {arg}")
            return str(val)
        if op.endswith("+"):
            return "" if unset else arg
        return val or ""

    return VAR.sub(one, value)


def compose_config(data: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Load a compose model like compose does (interpolate, schema, consistency); ComposeError if it would refuse it."""
    model = _interpolate(copy.deepcopy(data), env)
    schema = json.loads((resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(model), key=lambda e: list(e.absolute_path))
    if errors:
        raise ComposeError("; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors))
    services = model.get("services") or {}
    volumes = model.get("volumes") or {}
    for name, service in services.items():
        if not service.get("image") and not service.get("build"):
            raise ComposeError(f"service {name} has neither an image nor a build context")
        for dep, how in (service.get("depends_on") or {}).items():
            if dep not in services:
                raise ComposeError(f"service {name} depends on undefined service {dep}")
            if how.get("condition") == "service_healthy" and not (services[dep].get("healthcheck") or {}).get("test"):
                raise ComposeError(f"service {name} waits for {dep} to be healthy, but {dep} has no health check")
        for mount in service.get("volumes") or []:
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source", "")
            if source and not source.startswith((".", "/", "~")) and source not in volumes:
                raise ComposeError(f"service {name} refers to undefined volume {source}")
    return model


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
    for name in ["pocketnoc", *workers]:  # built here, never pulled (no registry has pocketnoc:latest)
        assert services[name]["build"] == "." and services[name]["image"] == "pocketnoc:latest", name
    assert services["pocketnoc"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    names = set()
    for name in workers:
        w = services[name]
        assert w["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert w["depends_on"]["pocketnoc"]["condition"] == "service_healthy"  # serve migrates the schema first
        names.add(w["command"][w["command"].index("--name") + 1])
        assert f"worker-{w['command'][-1]}.alive" in " ".join(w["healthcheck"]["test"])  # its own heartbeat file
    assert len(names) == len(workers), "each worker needs its own --name"


def test_the_image_builds_from_files_in_the_repository() -> None:
    lines = [line.split() for line in (REPO / "Dockerfile").read_text().splitlines() if line.strip() and not line.startswith("#")]
    copies = [src for words in lines if words[0] == "COPY" for src in words[1:-1] if not src.startswith("--")]
    assert copies and all((REPO / src).exists() for src in copies), copies
    assert ["USER", "pocketnoc"] in lines  # never root
    assert lines[-1] == ["CMD", '["pocketnoc",', '"serve"]']


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


def test_the_file_is_a_valid_compose_file(compose: dict[str, Any]) -> None:
    model = compose_config(compose, ENV)
    assert model["x-pocketnoc-env"]["POCKETNOC_DATABASE_URL"] == "postgresql://pocketnoc:x@postgres:5432/pocketnoc"
    assert _env(model["services"]["worker-2"])["POCKETNOC_SECRET_KEY"] == "y"  # the merge key and the variables resolved
    with pytest.raises(ComposeError, match="POSTGRES_PASSWORD is missing a value: set POSTGRES_PASSWORD"):
        compose_config(compose, {"POCKETNOC_SECRET_KEY": "y"})  # no default password: refused


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda d: d["services"]["worker-1"]["depends_on"]["pocketnoc"].update(condition="service_ready"), "service_ready"),
        (lambda d: d["services"]["worker-1"].update(healthchek={}), "healthchek"),
        (lambda d: d["services"]["worker-1"]["healthcheck"].update(interval=30), "interval"),
        (lambda d: d["services"]["worker-1"]["depends_on"].update(db={"condition": "service_healthy"}), "undefined service db"),
        (lambda d: d["services"]["pocketnoc"]["volumes"].append("nowhere:/x"), "undefined volume nowhere"),
        (lambda d: d["services"]["postgres"].pop("healthcheck"), "postgres has no health check"),
    ],
)
def test_the_validator_refuses_what_compose_refuses(compose: dict[str, Any], edit: Any, error: str) -> None:
    broken = copy.deepcopy(compose)
    edit(broken)
    with pytest.raises(ComposeError, match=error):
        compose_config(broken, ENV)


def _compose_cli() -> list[str] | None:
    """Docker's compose plugin, else Debian's `docker-compose` (what `make test` installs): neither needs an engine
    for `config`."""
    if shutil.which("docker"):
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30, check=False)
        if plugin.returncode == 0:
            return ["docker", "compose"]
    found = shutil.which("docker-compose")
    return [found] if found else None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no compose CLI here (`make test` installs Debian's docker-compose); validated against the schema above")
    env = {**ENV, "PATH": os.environ.get("PATH", "/usr/bin:/bin:/usr/local/bin"), "HOME": os.environ.get("HOME", "/root")}

    def config(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, "-f", str(path), "config", "-q"], capture_output=True, text=True, timeout=60,
                              env=env, check=False)

    result = config(REPO / "docker-compose.yml")
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "docker-compose.yml"  # and the same CLI does refuse a broken file
    broken.write_text((REPO / "docker-compose.yml").read_text().replace("healthcheck:", "healthchek:", 1))
    refused = config(broken)
    assert refused.returncode != 0 and "healthchek" in refused.stdout + refused.stderr
