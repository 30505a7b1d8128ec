"""One-shot init of docker-compose's scale-out profile: generate every secret once, into the `secrets` volume.

Nothing secret is in docker-compose.yml or in the environment. On first run this writes, and on later runs keeps:
  /secrets/postgres/password              the database password (random), for the postgres image's *_FILE variable
  /secrets/postgres/server.crt, server.key TLS for PostgreSQL, signed by a private CA made here
  /secrets/postgres/pg_hba.conf           TCP only over TLS with the password (scram-sha-256)
  /secrets/pocketnoc/pgpass               the same password for libpq (PGPASSFILE), mode 0600
  /secrets/pocketnoc/secret.key           pocketnoc's key for stored device credentials (one for serve and workers)
  /secrets/pocketnoc/ca.crt               the CA that verifies PostgreSQL's certificate (sslmode=verify-full)
Copy /secrets/pocketnoc/ to a worker on another machine (see the README's "Scaled out" section).
Extra names or addresses in PostgreSQL's certificate (how remote workers reach it): PG_TLS_NAMES=db.example.net,192.0.2.5
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import sys
from pathlib import Path

from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(os.environ.get("SECRETS_DIR", "/secrets"))
POSTGRES_UID = 999  # the postgres user of the official postgres image (Debian variant)
POCKETNOC_UID = 10001  # the pocketnoc user of our Dockerfile
DAYS = 3650


def _write(path: Path, data: bytes, mode: int, uid: int, gid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    if os.geteuid() == 0:
        os.chown(tmp, uid, gid)
    tmp.replace(path)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _names() -> list[x509.GeneralName]:
    wanted = ["postgres", "localhost", "127.0.0.1"] + [
        n.strip() for n in os.environ.get("PG_TLS_NAMES", "").split(",") if n.strip()
    ]
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys(wanted):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return names


def _tls() -> tuple[bytes, bytes, bytes]:
    """(CA certificate, server certificate, server key) in PEM."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = _key(), _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pocketnoc PostgreSQL CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "postgres")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_names()), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem), cert.public_bytes(pem), _pem_key(key)


HBA = b"""# Written by docker/compose_init.py: the socket for the image's own setup, TCP only over TLS, always a password.
local   all  all                scram-sha-256
hostssl all  all  0.0.0.0/0     scram-sha-256
hostssl all  all  ::/0          scram-sha-256
"""


def main() -> int:
    pg, pn = ROOT / "postgres", ROOT / "pocketnoc"
    made = []
    if not (pg / "password").exists():
        password = secrets.token_urlsafe(32)
        _write(pg / "password", password.encode() + b"\n", 0o400, POSTGRES_UID, POSTGRES_UID)
        _write(pn / "pgpass", f"*:*:*:pocketnoc:{password}\n".encode(), 0o600, POCKETNOC_UID, POCKETNOC_UID)
        made.append("database password")
    if not (pg / "server.key").exists():
        ca, cert, key = _tls()
        # PostgreSQL accepts a root-owned key readable by its group (0640), or its own key at 0600.
        _write(pg / "server.key", key, 0o640, 0, POSTGRES_UID)
        _write(pg / "server.crt", cert, 0o644, 0, 0)
        _write(pn / "ca.crt", ca, 0o644, 0, 0)
        made.append("TLS certificate")
    _write(pg / "pg_hba.conf", HBA, 0o644, 0, 0)
    if not (pn / "secret.key").exists():
        _write(pn / "secret.key", Fernet.generate_key() + b"\n", 0o400, POCKETNOC_UID, POCKETNOC_UID)
        made.append("pocketnoc secret key")
    print(f"compose-init: {'made ' + ', '.join(made) if made else 'secrets already in place'} under {ROOT}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
