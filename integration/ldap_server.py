"""A real OpenLDAP server (Debian slapd) for tests, in a temp dir on loopback ports. Stdlib only,
and helpers.py beside it.

Directory (suffix dc=example,dc=org, mdb backend), with the memberof overlay so users carry
memberOf, and groupOfNames groups under ou=groups for group searches:
  uid=alice,ou=people  password alice-pw   groups analysts, admins
  uid=bob,ou=people    password bob-pw     group engineers
  uid=carol,ou=people  password carol-pw   no group
  cn=reader            password reader-pw  service account for search-then-bind
                                           (its password is also written to DIR/reader.pw)
Only the service account and each user itself may read memberOf and the groups; anonymous
clients may only bind.

TLS (when `openssl` is installed): a throwaway CA (DIR/tls/ca.pem) signs a certificate for
127.0.0.1 and localhost; StartTLS works on the plain port, and ldaps:// on LDAPS_PORT if given.

    python3 integration/ldap_server.py DIR PORT [LDAPS_PORT]

runs it in the foreground, prints `LDAP ready on ldap://127.0.0.1:PORT ...` once it answers, and
stops slapd on SIGTERM/SIGINT. From Python: `server = start_ldap(dir, port)`, then `server.url`,
`server.ldaps_url`, `server.ca_file`, `server.bind_dn`, `server.bind_password_file`,
`server.stop()`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import wait_for_port

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "admin-pw"
USERS = {"alice": ["analysts", "admins"], "bob": ["engineers"], "carol": []}
GROUPS = ["analysts", "admins", "engineers"]
READER_DN = f"cn=reader,{SUFFIX}"
READER_PW = "reader-pw"


def password_for(user: str) -> str:
    return f"{user}-pw"


def ssha(password: str) -> str:
    """{SSHA}: salted SHA-1, which slapd checks natively (no slappasswd needed)."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def slapd_binary() -> str:
    for candidate in (shutil.which("slapd"), "/usr/sbin/slapd"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError(
        "slapd is not installed: DEBIAN_FRONTEND=noninteractive apt-get install -y slapd ldap-utils"
    )


def ldapadd_binary() -> str:
    found = shutil.which("ldapadd")
    if not found:
        raise RuntimeError("ldapadd is not installed: apt-get install -y ldap-utils")
    return found


def find_module_dir() -> str:
    for d in ("/usr/lib/ldap", "/usr/lib/x86_64-linux-gnu/ldap", "/usr/lib/aarch64-linux-gnu/ldap",
              "/usr/lib64/openldap", "/usr/lib/openldap"):
        if Path(d, "back_mdb.la").exists() or Path(d, "back_mdb.so").exists():
            return d
    raise RuntimeError("slapd modules (back_mdb) not found: apt-get install -y slapd")


def has_module(module_dir: str, name: str) -> bool:
    return Path(module_dir, f"{name}.la").exists() or Path(module_dir, f"{name}.so").exists()


def ldif() -> str:
    out = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n",
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n",
        (f"dn: {READER_DN}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\ncn: reader\n"
         f"userPassword: {ssha(READER_PW)}\n"),
    ]
    for user in USERS:
        out.append(
            f"dn: uid={user},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {user}\ncn: {user}\nsn: {user}\n"
            f"userPassword: {ssha(password_for(user))}\n"
        )
    # Groups after users, so the memberof overlay can write memberOf into the user entries.
    for group in GROUPS:
        members = [u for u, gs in USERS.items() if group in gs]
        lines = "".join(f"member: uid={u},ou=people,{SUFFIX}\n" for u in members)
        out.append(f"dn: cn={group},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {group}\n{lines}")
    return "\n".join(out)


def make_tls(directory: Path) -> dict | None:
    """A CA and a server certificate for 127.0.0.1/localhost, or None without openssl."""
    openssl = shutil.which("openssl")
    if not openssl:
        return None
    tls = directory / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (tls / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = tls / "server.ext"
    ext.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
    )
    run = lambda *args: subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
        "-days", "2", "-subj", "/CN=sparkgate test LDAP CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return {"ca": ca, "cert": cert, "key": key}


def slapd_conf(directory: Path, tls: dict | None) -> str:
    module_dir = find_module_dir()
    memberof = has_module(module_dir, "memberof")
    tls_lines = ""
    if tls:
        tls_lines = (
            f"TLSCACertificateFile {tls['ca']}\n"
            f"TLSCertificateFile {tls['cert']}\n"
            f"TLSCertificateKeyFile {tls['key']}\n"
        )
    overlay = ""
    if memberof:
        overlay = (
            "overlay memberof\n"
            "memberof-group-oc groupOfNames\n"
            "memberof-member-ad member\n"
            "memberof-memberof-ad memberOf\n"
            "memberof-refint true\n"
        )
    return f"""
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath {module_dir}
moduleload back_mdb
{"moduleload memberof" if memberof else ""}
pidfile {directory}/slapd.pid
{tls_lines}
database mdb
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {directory}/data
maxsize 104857600
{overlay}
access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to dn.subtree="ou=groups,{SUFFIX}"
    by dn.exact="{READER_DN}" read
    by users read
    by * none
access to *
    by dn.exact="{READER_DN}" read
    by self read
    by users search
    by anonymous auth
    by * none
"""


class LdapServer:
    def __init__(self, directory: Path, port: int, ldaps_port: int | None = None):
        self.directory = Path(directory)
        self.port = port
        self.ldaps_port = ldaps_port
        self.url = f"ldap://127.0.0.1:{port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{ldaps_port}" if ldaps_port else None
        self.bind_dn = READER_DN
        self.bind_password_file = self.directory / "reader.pw"
        self.ca_file: Path | None = None
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> LdapServer:
        d = self.directory
        slapd = slapd_binary()
        ldapadd = ldapadd_binary()
        (d / "data").mkdir(parents=True, exist_ok=True)
        tls = make_tls(d)
        if self.ldaps_port and not tls:
            raise RuntimeError("ldaps needs openssl to make certificates: apt-get install -y openssl")
        self.ca_file = tls["ca"] if tls else None
        (d / "slapd.conf").write_text(slapd_conf(d, tls))
        urls = self.url + (f" {self.ldaps_url}" if self.ldaps_url else "")
        log = d / "slapd.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [slapd, "-d", "0", "-f", str(d / "slapd.conf"), "-h", urls],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        try:
            deadline = time.monotonic() + timeout
            wait_for_port(self.port, timeout, self.proc, log, every=0.1)
            if self.ldaps_port:
                wait_for_port(self.ldaps_port, max(deadline - time.monotonic(), 0.0), self.proc, log, every=0.1)
            (d / "data.ldif").write_text(ldif())
            added = subprocess.run(
                [ldapadd, "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW, "-f", str(d / "data.ldif")],
                check=False, capture_output=True, text=True, timeout=30,
            )
            if added.returncode != 0:
                raise RuntimeError(f"ldapadd failed: {added.stderr.strip()}")
            self.bind_password_file.write_text(READER_PW)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start_ldap(directory, port: int, ldaps_port: int | None = None) -> LdapServer:
    """Starts slapd in `directory` (created if missing) on 127.0.0.1:`port`, loaded and ready."""
    return LdapServer(Path(directory), port, ldaps_port).start()


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    # Installed before slapd starts, so a SIGTERM at any point still stops it (via `finally`).
    def terminate(*_):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, terminate)
    server = LdapServer(Path(argv[1]), int(argv[2]), int(argv[3]) if len(argv) == 4 else None)
    try:
        server.start()
        extra = "".join(
            f" {k}={v}" for k, v in (("ldaps", server.ldaps_url), ("ca_file", server.ca_file)) if v
        )
        print(f"LDAP ready on {server.url}{extra}", flush=True)
        server.proc.wait()
        print(f"slapd exited with {server.proc.returncode}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, SystemExit):
        return 0
    except RuntimeError as e:
        print(f"ldap_server.py: {e}", file=sys.stderr)
        return 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
