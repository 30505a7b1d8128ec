"""docker-compose.yml: serve on SQLite by default; profile scale-out: generated secrets, PostgreSQL over TLS, serve and
two workers, with health checks, restart policies and start order.

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
ENV: dict[str, str] = {}  # nothing needs to be set: no password or key is given from outside
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


def _scaled(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if "scale-out" in (s.get("profiles") or [])}


def test_by_default_one_serve_on_the_embedded_database_with_the_config_mounted(compose: dict[str, Any]) -> None:
    default = {n: s for n, s in compose["services"].items() if not s.get("profiles")}
    assert list(default) == ["pocketnoc"]
    serve = compose_config(compose, ENV)["services"]["pocketnoc"]
    assert serve["command"] == ["pocketnoc", "serve"] and serve["build"] == "." and serve["image"] == "pocketnoc:latest"
    env = _env(serve)
    assert "POCKETNOC_DATABASE_URL" not in env and "POCKETNOC_SCHEDULER" not in env  # SQLite in /data, in-process
    assert "./config:/etc/pocketnoc:ro" in serve["volumes"] and env["POCKETNOC_CONFIG"] == "/etc/pocketnoc/pocketnoc.yaml"
    assert "pocketnoc-data:/data" in serve["volumes"] and serve["healthcheck"]["test"]


def test_postgres_serve_and_two_workers_with_health_checks_and_restart(compose: dict[str, Any]) -> None:
    services = _scaled(compose)
    workers = [name for name, s in services.items() if "worker" in (s.get("command") or [])]
    assert {"postgres", "serve", "secrets-init"} <= set(services) and len(workers) >= 2
    for name, service in services.items():
        if name == "secrets-init":  # one-shot
            assert service["restart"] == "no"
            continue
        assert service.get("restart") in ("unless-stopped", "always"), name
        check = service.get("healthcheck") or {}
        assert check.get("test") and check.get("interval"), f"{name} has no health check"
    model = compose_config(compose, ENV)["services"]
    assert model["serve"]["command"] == ["pocketnoc", "serve"]
    for name in ["secrets-init", "serve", *workers]:  # built here, never pulled (no registry has pocketnoc:latest)
        assert model[name]["build"] == "." and model[name]["image"] == "pocketnoc:latest", name
    assert services["serve"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["depends_on"]["secrets-init"]["condition"] == "service_completed_successfully"
    names = set()
    for name in workers:
        w = services[name]
        assert w["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert w["depends_on"]["serve"]["condition"] == "service_healthy"  # serve migrates the schema first
        names.add(w["command"][w["command"].index("--name") + 1])
        assert f"worker-{w['command'][-1]}.alive" in " ".join(w["healthcheck"]["test"])  # its own heartbeat file
    assert len(names) == len(workers), "each worker needs its own --name"


def test_the_image_builds_from_files_in_the_repository() -> None:
    lines = [line.split() for line in (REPO / "Dockerfile").read_text().splitlines() if line.strip() and not line.startswith("#")]
    copies = [src for words in lines if words[0] == "COPY" for src in words[1:-1] if not src.startswith("--")]
    assert copies and all((REPO / src).exists() for src in copies), copies
    assert "docker" in copies  # the scale-out profile's secrets-init runs docker/compose_init.py from the image
    assert ["USER", "pocketnoc"] in lines  # never root
    assert lines[-1] == ["CMD", '["pocketnoc",', '"serve"]']


def test_every_pocketnoc_process_shares_one_postgresql_over_tls_and_one_key(compose: dict[str, Any]) -> None:
    services = compose_config(compose, ENV)["services"]
    envs = [_env(services[n]) for n in _scaled(compose) if n not in ("postgres", "secrets-init")]
    assert len(envs) >= 3
    urls = {e["POCKETNOC_DATABASE_URL"] for e in envs}
    assert len(urls) == 1
    url = urls.pop()
    assert url.startswith("postgresql://pocketnoc@postgres:5432/") and "sslmode=verify-full" in url, url
    assert all(e["POCKETNOC_SCHEDULER"] == "queue" for e in envs)
    assert {e["PGPASSFILE"] for e in envs} == {"/secrets/pocketnoc/pgpass"}
    assert {e["POCKETNOC_SECRET_KEY_FILE"] for e in envs} == {"/secrets/pocketnoc/secret.key"}
    assert "pocketnoc-pg" in (compose.get("volumes") or {})


def test_no_password_or_key_is_in_the_file_and_postgresql_speaks_tls(compose: dict[str, Any]) -> None:
    text = (REPO / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD:" not in text and "POCKETNOC_SECRET_KEY:" not in text
    assert not re.search(r"postgresql://[^@\s]*:[^@\s]*@", text), "a password in a database URL"
    pg = compose_config(compose, ENV)["services"]["postgres"]
    assert _env(pg)["POSTGRES_PASSWORD_FILE"] == "/secrets/postgres/password"
    command = " ".join(pg["command"])
    assert "ssl=on" in command and "hba_file=/secrets/postgres/pg_hba.conf" in command
    assert pg["ports"] == ["127.0.0.1:5432:5432"]  # published on loopback only unless chosen


def test_secrets_init_generates_once_and_postgresql_takes_only_tls(tmp_path: Path) -> None:
    """The one-shot init really makes a password (for postgres and for libpq), a CA-signed certificate and a key."""
    import subprocess as sp
    import sys

    from cryptography import x509
    from cryptography.fernet import Fernet

    env = {**os.environ, "SECRETS_DIR": str(tmp_path), "PG_TLS_NAMES": "db.example.net, 192.0.2.5"}
    first = sp.run([sys.executable, str(REPO / "docker" / "compose_init.py")], env=env, capture_output=True, text=True,
                   timeout=60, check=False)  # fmt: skip
    assert first.returncode == 0, first.stderr
    password = (tmp_path / "postgres" / "password").read_text().strip()
    assert len(password) >= 32
    assert (tmp_path / "pocketnoc" / "pgpass").read_text() == f"*:*:*:pocketnoc:{password}\n"
    assert (tmp_path / "pocketnoc" / "pgpass").stat().st_mode & 0o077 == 0  # libpq ignores a group/world-readable file
    assert (tmp_path / "postgres" / "server.key").stat().st_mode & 0o007 == 0
    Fernet((tmp_path / "pocketnoc" / "secret.key").read_bytes().strip())
    ca = x509.load_pem_x509_certificate((tmp_path / "pocketnoc" / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "postgres" / "server.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"postgres", "db.example.net"} <= set(names.get_values_for_type(x509.DNSName))
    assert "192.0.2.5" in {str(a) for a in names.get_values_for_type(x509.IPAddress)}
    hba = [line.split() for line in (tmp_path / "postgres" / "pg_hba.conf").read_text().splitlines()
           if line.strip() and not line.startswith("#")]  # fmt: skip
    assert all(row[0] in ("local", "hostssl") and row[-1] == "scram-sha-256" for row in hba), hba
    again = sp.run([sys.executable, str(REPO / "docker" / "compose_init.py")], env=env, capture_output=True, text=True,
                   timeout=60, check=False)  # fmt: skip
    assert again.returncode == 0 and "already in place" in again.stdout
    assert (tmp_path / "postgres" / "password").read_text().strip() == password  # kept: the database already uses it


def test_the_file_is_a_valid_compose_file(compose: dict[str, Any]) -> None:
    model = compose_config(compose, ENV)
    assert model["x-scaled-env"]["POCKETNOC_CONFIG"] == "/etc/pocketnoc/pocketnoc.yaml"
    assert _env(model["services"]["worker-2"])["PGPASSFILE"] == "/secrets/pocketnoc/pgpass"  # the merge key resolved
    moved = compose_config(compose, {"POCKETNOC_CONFIG_DIR": "/srv/noc", "POCKETNOC_PG_PUBLISH": "10.0.0.5:5432"})
    assert "/srv/noc:/etc/pocketnoc:ro" in moved["services"]["worker-1"]["volumes"]
    assert moved["services"]["postgres"]["ports"] == ["10.0.0.5:5432:5432"]


@pytest.mark.parametrize(
    ("edit", "error"),
    [
        (lambda d: d["services"]["worker-1"]["depends_on"]["serve"].update(condition="service_ready"), "service_ready"),
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


PG_BIN = Path("/usr/lib/postgresql")


def _pg_tool(name: str) -> str:
    found = sorted(PG_BIN.glob(f"*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} is missing (make test installs PostgreSQL)")
    return str(found[-1])


def test_a_real_postgresql_with_the_generated_secrets_takes_pocketnoc_only_over_verified_tls() -> None:
    """What the profile's services do, on a private PostgreSQL: the generated password, certificate and pg_hba.conf;
    pocketnoc's own engine connects with the profile's URL (verify-full) and PGPASSFILE; plain TCP is refused."""
    import pwd
    import signal
    import socket
    import sys
    import tempfile
    import time

    import psycopg

    from server.store.db import make_engine
    from tests import sql

    if os.geteuid() != 0:
        pytest.skip("needs root to run PostgreSQL as its own user")
    pg_user = pwd.getpwnam("postgres")
    root = Path(tempfile.mkdtemp(prefix="pn-compose-pg-"))
    os.chmod(root, 0o755)  # noqa: S103 - the postgres user must reach its data dir below; nothing secret here
    secrets_dir, data, sock = root / "secrets", root / "data", root / "sock"
    env = {**os.environ, "SECRETS_DIR": str(secrets_dir)}
    done = subprocess.run([sys.executable, str(REPO / "docker" / "compose_init.py")], env=env, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The container's owners (999, 10001) do not exist here: hand PostgreSQL's files to the local postgres user.
    for path in [*secrets_dir.rglob("*"), secrets_dir, data.parent]:
        os.chown(path, pg_user.pw_uid, pg_user.pw_gid)
    os.chmod(secrets_dir / "postgres" / "server.key", 0o600)
    for path in (data, sock):
        path.mkdir()
        os.chown(path, pg_user.pw_uid, pg_user.pw_gid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pg = secrets_dir / "postgres"
    run_as = ["runuser", "-u", "postgres", "--"]
    init = subprocess.run([*run_as, _pg_tool("initdb"), "-D", str(data), "-U", "pocketnoc", f"--pwfile={pg / 'password'}",
                           "--auth=scram-sha-256"], capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert init.returncode == 0, init.stderr
    server = subprocess.Popen(
        [*run_as, _pg_tool("postgres"), "-D", str(data), "-p", str(port), "-k", str(sock), "-c", "listen_addresses=127.0.0.1",
         "-c", "ssl=on", "-c", f"ssl_cert_file={pg / 'server.crt'}", "-c", f"ssl_key_file={pg / 'server.key'}",
         "-c", f"hba_file={pg / 'pg_hba.conf'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([_pg_tool("pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True,
                             check=False).returncode != 0:  # fmt: skip
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.stderr else ""
            time.sleep(0.2)
        kit = secrets_dir / "pocketnoc"
        url = f"postgresql://pocketnoc@127.0.0.1:{port}/postgres?sslmode=verify-full&sslrootcert={kit / 'ca.crt'}"
        os.environ["PGPASSFILE"] = str(kit / "pgpass")
        try:
            engine = make_engine(url)
            with engine.connect() as conn:
                assert sql.scalar(conn, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True
            engine.dispose()
            with pytest.raises(psycopg.OperationalError, match=r"no encryption|pg_hba\.conf"):
                psycopg.connect(f"host=127.0.0.1 port={port} dbname=postgres user=pocketnoc sslmode=disable", connect_timeout=10)
        finally:
            del os.environ["PGPASSFILE"]
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(f"host=127.0.0.1 port={port} dbname=postgres user=pocketnoc sslmode=require password=wrong",
                            connect_timeout=10)  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
