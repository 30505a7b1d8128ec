"""A real OpenLDAP slapd on a loopback port with StartTLS (a self-signed certificate made here), the ppolicy overlay
(lock-out after 3 bad binds), a few people and groups, and pocketnoc's bind account allowed to manage them."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SUFFIX = "dc=pocket,dc=lab"
PEOPLE_OU = f"ou=people,{SUFFIX}"
GROUPS_OU = f"ou=groups,{SUFFIX}"
BIND_DN = f"cn=pocketnoc,ou=services,{SUFFIX}"
PEOPLE = {"carol": "Carol Jones", "dave": "Dave Brown", "root2": "Root Two"}  # root2 is in the protected 'wheel'
GROUPS = {"vpn": ["carol"], "wheel": ["root2"], "wifi": ["dave"]}


@dataclass
class Slapd:
    """A running slapd: its port, the CA that signed its certificate, the bind account and the people's password."""

    port: int
    ca_file: Path
    bind_password: str
    people_password: str
    directory: Path
    _proc: subprocess.Popen[bytes] = field(repr=False)

    def stop(self) -> None:
        """Stop slapd and remove its files."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def _certificate(base: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pocketnoc test slapd")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (base / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (base / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return base / "cert.pem"


def _conf(base: Path, root_password: str) -> str:
    return f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {base}/slapd.pid
argsfile {base}/slapd.args
TLSCertificateFile {base}/cert.pem
TLSCertificateKeyFile {base}/key.pem
database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "cn=admin,{SUFFIX}"
rootpw {root_password}
directory {base}/db
overlay ppolicy
ppolicy_default "cn=default,ou=policies,{SUFFIX}"
ppolicy_use_lockout
access to attrs=userPassword by dn.exact="{BIND_DN}" manage by self write by anonymous auth by * none
access to * by dn.exact="{BIND_DN}" manage by * read
"""


def _ldif() -> str:
    entries = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: pocket\no: pocket lab"]
    for ou in ("people", "groups", "services", "policies"):
        entries.append(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}")
    entries.append(f"dn: cn=default,ou=policies,{SUFFIX}\nobjectClass: device\nobjectClass: pwdPolicy\ncn: default\n"
                   "pwdAttribute: userPassword\npwdLockout: TRUE\npwdMaxFailure: 3\npwdLockoutDuration: 0\npwdMustChange: FALSE")
    entries.append(f"dn: {BIND_DN}\nobjectClass: person\ncn: pocketnoc\nsn: service")
    for login, name in PEOPLE.items():
        first, last = name.split(" ", 1)
        entries.append(f"dn: uid={login},{PEOPLE_OU}\nobjectClass: inetOrgPerson\nuid: {login}\ncn: {name}\n"
                       f"givenName: {first}\nsn: {last}\ndisplayName: {name}\nmail: {login}@pocket.lab")
    for group, members in GROUPS.items():
        lines = "\n".join(f"member: uid={m},{PEOPLE_OU}" for m in members)
        entries.append(f"dn: cn={group},{GROUPS_OU}\nobjectClass: groupOfNames\ncn: {group}\n{lines}")
    return "\n\n".join(entries) + "\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_slapd() -> Slapd:
    """Make the database, start slapd, set every password with the Password Modify operation (hashed by slapd)."""
    from ldap3 import Connection, Server, Tls

    base = Path(tempfile.mkdtemp(prefix="pocketnoc-slapd-"))
    (base / "db").mkdir()
    ca = _certificate(base)
    root_password = secrets.token_urlsafe(16)
    conf = base / "slapd.conf"
    conf.write_text(_conf(base, root_password))
    (base / "data.ldif").write_text(_ldif())
    loaded = subprocess.run([SLAPADD, "-f", str(conf), "-l", str(base / "data.ldif")], capture_output=True, text=True,
                            timeout=60, check=False)
    if loaded.returncode != 0:
        raise RuntimeError(f"slapadd failed: {loaded.stderr[-2000:]}")
    port = _free_port()
    log = (base / "slapd.log").open("wb")
    proc = subprocess.Popen([SLAPD, "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"],
                            stdout=log, stderr=subprocess.STDOUT)
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca))
    deadline = time.monotonic() + 20
    while True:
        try:
            conn = Connection(Server("127.0.0.1", port=port, tls=tls), f"cn=admin,{SUFFIX}", root_password)
            conn.open()
            conn.start_tls()
            if conn.bind():
                break
        except Exception:  # noqa: S110 - not up yet
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("slapd did not start: " + (base / "slapd.log").read_text(errors="replace")[-2000:])
        time.sleep(0.2)
    bind_password = "svc-" + secrets.token_urlsafe(12)
    people_password = "pw-" + secrets.token_urlsafe(12)
    conn.extend.standard.modify_password(user=BIND_DN, new_password=bind_password)
    for login in PEOPLE:
        conn.extend.standard.modify_password(user=f"uid={login},{PEOPLE_OU}", new_password=people_password)
    conn.unbind()
    return Slapd(port, ca, bind_password, people_password, base, proc)
