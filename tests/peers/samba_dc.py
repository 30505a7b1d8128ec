"""A real Samba Active Directory domain controller on its own loopback address, for directory-account tests.

`samba-tool domain provision` into a temporary directory (a random administrator password, no DNS, only the LDAP
service), `tls enabled` with the certificate Samba makes itself, bound only to 127.0.16.N (a free N: the well-known
LDAP ports cannot be moved, so the address keeps it apart from anything else on the machine). Provisioning takes
tens of seconds: start it once per test session.
"""

from __future__ import annotations

import random
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers import process

SAMBA = "/usr/sbin/samba"
SAMBA_TOOL = "/usr/bin/samba-tool"
REALM = "POCKET.TEST"
DOMAIN_DN = "DC=pocket,DC=test"
USERS = f"CN=Users,{DOMAIN_DN}"


def _free_address() -> str:
    """A loopback address whose LDAP ports nobody holds."""
    for _ in range(50):
        address = f"127.0.16.{random.randint(2, 250)}"
        try:
            for port in (389, 636, 3268, 3269):
                with socket.socket() as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind((address, port))
            return address
        except OSError:
            continue
    raise RuntimeError("no free 127.0.16.N address for the Samba DC")


@dataclass
class SambaDC:
    """A running DC: where it listens, the administrator's password, the CA and name its certificate carries."""

    address: str
    admin_password: str
    ca_file: Path
    tls_name: str
    directory: Path
    _proc: subprocess.Popen[bytes] = field(repr=False)

    admin_dn: str = f"CN=Administrator,{USERS}"
    domain_dn: str = DOMAIN_DN
    bind_password: str = ""  # pocketnoc's bind account's, once populate() made it

    def log_text(self) -> str:
        """What samba printed so far."""
        return (self.directory / "samba.out").read_text(errors="replace")

    def tool(self, *args: str) -> str:
        """Run samba-tool against this DC's database (argv only); returns its output."""
        sam = str(self.directory / "private" / "sam.ldb")
        done = subprocess.run([SAMBA_TOOL, *args, "-H", sam], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"samba-tool {' '.join(args)}: {done.stderr[-2000:]}")
        return done.stdout

    def stop(self) -> None:
        """Stop samba and remove its directory."""
        process.stop(self._proc, 15)
        shutil.rmtree(self.directory, ignore_errors=True)


def _tune(conf: Path, base: Path, address: str) -> None:
    """Only LDAP on our address, every file under `base`, nothing that touches the machine's own Samba."""
    text = conf.read_text()
    text = re.sub(r"(?m)^\s*server services = .*$", "\tserver services = ldap", text)
    text = re.sub(r"(?m)^\s*(log file|unix password sync|passwd program|passwd chat|pam password change) = .*\n", "", text)
    extra = (f"\tpid directory = {base}/run\n\tlog file = {base}/log/log.%m\n\tdisable netbios = yes\n"
             f"\tunix password sync = no\n\tinterfaces = {address}/8\n\tbind interfaces only = yes\n\ttls enabled = yes\n"
             f"\tncalrpc dir = {base}/run/ncalrpc\n\twinbindd socket directory = {base}/run/winbindd\n")
    text = re.sub(r"(?m)^\s*(interfaces|bind interfaces only|tls enabled) = .*\n", "", text)
    conf.write_text(text.replace("[global]\n", "[global]\n" + extra, 1))


def _ldaps_answers(address: str, ca: Path) -> bool:
    if not ca.exists():
        return False
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    try:
        with socket.create_connection((address, 636), timeout=2) as raw, context.wrap_socket(raw):
            return True
    except (OSError, ssl.SSLError):
        return False


def start_samba_dc(timeout: float = 120.0) -> SambaDC:
    """Provision a new domain into a temp dir and start its DC; raises RuntimeError with samba's words on failure."""
    base = Path(tempfile.mkdtemp(prefix="pocketnoc-samba-"))
    address = _free_address()
    password = "Pn-" + secrets.token_urlsafe(12) + "-9a"  # meets AD complexity (upper, lower, digit, symbol)
    argv = [
        SAMBA_TOOL, "domain", "provision", "--use-rfc2307", f"--realm={REALM}", "--domain=POCKET", "--server-role=dc",
        "--dns-backend=NONE", f"--adminpass={password}", f"--targetdir={base}", "--host-name=pndc",
        f"--option=interfaces={address}/8", "--option=bind interfaces only=yes",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"samba-tool domain provision failed: {done.stdout[-1500:]} {done.stderr[-1500:]}")
    for sub in ("run", "log"):
        (base / sub).mkdir(exist_ok=True)
    conf = base / "etc" / "smb.conf"
    _tune(conf, base, address)
    out = (base / "samba.out").open("wb")
    proc = subprocess.Popen([SAMBA, "-i", "-M", "single", "-s", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    ca = base / "private" / "tls" / "ca.pem"
    deadline = time.monotonic() + 60
    while not _ldaps_answers(address, ca):
        if proc.poll() is not None or time.monotonic() > deadline:
            text = (base / "samba.out").read_text(errors="replace")
            proc.kill()
            shutil.rmtree(base, ignore_errors=True)
            raise RuntimeError(f"samba did not answer LDAPS on {address}:636: {text[-2000:]}")
        time.sleep(0.3)
    name = f"PNDC.{REALM.lower()}"  # Samba's own certificate names the DC: host name (upper case) and DNS domain
    return SambaDC(address, password, ca, name, base, proc)


PEOPLE = {  # login: (display name, groups)
    "jbloggs": ("Jo Bloggs", []),
    "asmith": ("Alice Smith", []),
    "bjones": ("Bob Jones", ["VPN Users"]),
    "eve": ("Eve Admin", ["Helpdesk Admins"]),  # Helpdesk Admins is nested in Domain Admins: protected
    "starp": ("*)( Star Person", []),
    "jdoe": ("Jane Doe", []),
    "jroe": ("Janet Roe", []),
    "jhill": ("Jack Hill", []),
}
GROUPS = ["VPN Users", "Wifi Guests", "Helpdesk Admins"]
BIND_LOGIN = "svc-pocketnoc"


def populate(dc: SambaDC, password: str) -> str:
    """Groups, people (all with `password`) and pocketnoc's bind account (an Account Operator); returns its password."""
    from ldap3 import MODIFY_ADD, Connection, Server, Tls

    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(dc.ca_file), valid_names=[dc.tls_name])
    conn = Connection(Server(dc.address, port=636, use_ssl=True, tls=tls), dc.admin_dn, dc.admin_password, auto_bind=True)

    def check(ok: bool, what: str) -> None:
        if not ok:
            raise RuntimeError(f"{what}: {conn.result}")

    for group in GROUPS:
        check(conn.add(f"CN={group},{USERS}", ["top", "group"], {"sAMAccountName": group.replace(" ", "")}), group)
    check(conn.modify(f"CN=Domain Admins,{USERS}", {"member": [(MODIFY_ADD, [f"CN=Helpdesk Admins,{USERS}"])]}), "nest")
    bind_password = "Svc-" + secrets.token_urlsafe(12) + "-7q"
    people = {**PEOPLE, BIND_LOGIN: ("pocketnoc service", [])}
    for login, (name, groups) in people.items():
        dn = f"CN={login},{USERS}"
        attrs = {"sAMAccountName": login, "userPrincipalName": f"{login}@pocket.test", "displayName": name,
                 "mail": f"{login}@pocket.test"}
        check(conn.add(dn, ["top", "person", "organizationalPerson", "user"], attrs), login)
        secret = bind_password if login == BIND_LOGIN else password
        check(conn.extend.microsoft.modify_password(dn, secret), f"password of {login}")
        check(conn.modify(dn, {"userAccountControl": [("MODIFY_REPLACE", ["512"])]}), f"enable {login}")
        for group in groups:
            check(conn.modify(f"CN={group},{USERS}", {"member": [(MODIFY_ADD, [dn])]}), f"{login} in {group}")
    builtin = f"CN=Account Operators,CN=Builtin,{DOMAIN_DN}"
    check(conn.modify(builtin, {"member": [(MODIFY_ADD, [f"CN={BIND_LOGIN},{USERS}"])]}), "account operator")
    conn.unbind()
    dc.tool("domain", "passwordsettings", "set", "--account-lockout-threshold=3", "--account-lockout-duration=30",
            "--reset-account-lockout-after=30")
    return bind_password
