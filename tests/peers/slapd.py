"""A real OpenLDAP slapd on a loopback port with StartTLS (a self-signed certificate made here), the ppolicy overlay
(lock-out after 3 bad binds), a few people and groups, and pocketnoc's bind account allowed to manage them."""

from __future__ import annotations

import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers import process
from tests.peers.smtp import make_certificate
from tests.peers.sshd import free_port

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SUFFIX = "dc=pocket,dc=lab"
PEOPLE_OU = f"ou=people,{SUFFIX}"
GROUPS_OU = f"ou=groups,{SUFFIX}"
BIND_DN = f"cn=pocketnoc,ou=services,{SUFFIX}"
LIMITED_DN = f"cn=helpdesk,ou=services,{SUFFIX}"  # may set passwords, nothing else (pwdReset is refused to it)
PEOPLE = {"carol": "Carol Jones", "dave": "Dave Brown", "erin": "Erin Gray", "root2": "Root Two"}  # root2: in protected wheel
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
        process.stop(self._proc)
        shutil.rmtree(self.directory, ignore_errors=True)


def _conf(base: Path, root_password: str, cert: Path, key: Path) -> str:
    return f"""include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {base}/slapd.pid
argsfile {base}/slapd.args
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "cn=admin,{SUFFIX}"
rootpw {root_password}
directory {base}/db
overlay ppolicy
ppolicy_default "cn=default,ou=policies,{SUFFIX}"
ppolicy_use_lockout
access to attrs=userPassword by dn.exact="{BIND_DN}" manage by dn.exact="{LIMITED_DN}" write by self write
  by anonymous auth by * none
access to * by dn.exact="{BIND_DN}" manage by * read
"""


def _ldif() -> str:
    entries = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: pocket\no: pocket lab"]
    for ou in ("people", "groups", "services", "policies"):
        entries.append(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}")
    entries.append(f"dn: cn=default,ou=policies,{SUFFIX}\nobjectClass: device\nobjectClass: pwdPolicy\ncn: default\n"
                   "pwdAttribute: userPassword\npwdLockout: TRUE\npwdMaxFailure: 3\npwdLockoutDuration: 0\npwdMustChange: FALSE")
    entries.append(f"dn: {BIND_DN}\nobjectClass: person\ncn: pocketnoc\nsn: service")
    entries.append(f"dn: {LIMITED_DN}\nobjectClass: person\ncn: helpdesk\nsn: service")
    for login, name in PEOPLE.items():
        first, last = name.split(" ", 1)
        entries.append(f"dn: uid={login},{PEOPLE_OU}\nobjectClass: inetOrgPerson\nuid: {login}\ncn: {name}\n"
                       f"givenName: {first}\nsn: {last}\ndisplayName: {name}\nmail: {login}@pocket.lab")
    for group, members in GROUPS.items():
        lines = "\n".join(f"member: uid={m},{PEOPLE_OU}" for m in members)
        entries.append(f"dn: cn={group},{GROUPS_OU}\nobjectClass: groupOfNames\ncn: {group}\n{lines}")
    return "\n\n".join(entries) + "\n"


def start_slapd() -> Slapd:
    """Make the database, start slapd, set every password with the Password Modify operation (hashed by slapd)."""
    from ldap3 import Connection, Server, Tls

    base = Path(tempfile.mkdtemp(prefix="pocketnoc-slapd-"))
    (base / "db").mkdir()
    ca, key = make_certificate(base)
    root_password = secrets.token_urlsafe(16)
    conf = base / "slapd.conf"
    conf.write_text(_conf(base, root_password, ca, key))
    (base / "data.ldif").write_text(_ldif())
    loaded = subprocess.run([SLAPADD, "-f", str(conf), "-l", str(base / "data.ldif")], capture_output=True, text=True,
                            timeout=60, check=False)
    if loaded.returncode != 0:
        raise RuntimeError(f"slapadd failed: {loaded.stderr[-2000:]}")
    port = free_port()
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
    conn.extend.standard.modify_password(user=LIMITED_DN, new_password=bind_password)
    for login in PEOPLE:
        conn.extend.standard.modify_password(user=f"uid={login},{PEOPLE_OU}", new_password=people_password)
    conn.unbind()
    return Slapd(port, ca, bind_password, people_password, base, proc)


@contextmanager
def extra_person(peer: Slapd, login: str, name: str) -> Iterator[str]:
    """One more person (a login with any characters, e.g. "ops/night #2") for the length of a test, added and removed
    by pocketnoc's bind account, so the session's slapd keeps only its usual people for other tests: yields the DN."""
    from ldap3 import Connection, Server, Tls
    from ldap3.utils.dn import escape_rdn

    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(peer.ca_file))
    conn = Connection(Server("127.0.0.1", port=peer.port, tls=tls), BIND_DN, peer.bind_password)
    conn.open()
    conn.start_tls()
    if not conn.bind():
        raise RuntimeError(f"slapd bind failed: {conn.result}")
    dn = f"cn={escape_rdn(name)},{PEOPLE_OU}"
    first, last = name.split(" ", 1)
    attrs = {"uid": login, "cn": name, "givenName": first, "sn": last, "displayName": name, "mail": "extra@pocket.lab"}
    if not conn.add(dn, ["inetOrgPerson"], attrs):
        raise RuntimeError(f"slapd add failed: {conn.result}")
    conn.extend.standard.modify_password(user=dn, new_password=peer.people_password)
    try:
        yield dn
    finally:
        conn.delete(dn)
        conn.unbind()
