"""A real OpenLDAP server (Debian slapd) for tests, in a temp dir on a loopback port.

Directory (suffix dc=example,dc=org), with the memberof overlay so users carry memberOf:
  uid=alice  password alice-pw  groups analysts, admins
  uid=bob    password bob-pw    groups engineers
  uid=carol  password carol-pw  no group
  cn=reader  password reader-pw  (service account for search-then-bind)
Groups are groupOfNames under ou=groups.

`python ldap_server.py DIR PORT` runs it in the foreground; tests use start_ldap(dir, port).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def find_module_dir() -> str:
    for d in ("/usr/lib/ldap", "/usr/lib/x86_64-linux-gnu/ldap", "/usr/lib64/openldap"):
        if Path(d, "back_mdb.la").exists() or Path(d, "back_mdb.so").exists():
            return d
    raise RuntimeError("slapd modules not found: install Debian packages slapd and ldap-utils")


def slapd_binary() -> str:
    for candidate in (shutil.which("slapd"), "/usr/sbin/slapd"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("slapd is not installed: apt-get install -y slapd ldap-utils")


def ldif() -> str:
    out = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n",
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: {READER_DN}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\ncn: reader\n"
        f"userPassword: {ssha(READER_PW)}\n",
    ]
    for user in USERS:
        out.append(
            f"dn: uid={user},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {user}\ncn: {user}\nsn: {user}\n"
            f"userPassword: {ssha(password_for(user))}\n"
        )
    for group in GROUPS:
        members = [u for u, gs in USERS.items() if group in gs]
        lines = "".join(f"member: uid={u},ou=people,{SUFFIX}\n" for u in members)
        out.append(f"dn: cn={group},ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: {group}\n{lines}")
    return "\n".join(out)


def slapd_conf(directory: Path) -> str:
    return f"""
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath {find_module_dir()}
moduleload back_mdb
moduleload memberof
pidfile {directory}/slapd.pid
database mdb
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {directory}/data
maxsize 104857600
overlay memberof
memberof-group-oc groupOfNames
memberof-member-ad member
memberof-memberof-ad memberOf
memberof-refint true
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
"""


class LdapServer:
    def __init__(self, directory: Path, port: int):
        self.directory = Path(directory)
        self.port = port
        self.url = f"ldap://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> "LdapServer":
        d = self.directory
        (d / "data").mkdir(parents=True, exist_ok=True)
        (d / "slapd.conf").write_text(slapd_conf(d))
        self.log = open(d / "slapd.log", "wb")
        self.proc = subprocess.Popen(
            [slapd_binary(), "-d", "0", "-f", str(d / "slapd.conf"), "-h", self.url],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited: {(d / 'slapd.log').read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("slapd did not listen in time")
        (d / "data.ldif").write_text(ldif())
        subprocess.run(
            ["ldapadd", "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW, "-f", str(d / "data.ldif")],
            check=True, capture_output=True, timeout=30,
        )
        (d / "reader.pw").write_text(READER_PW)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def start_ldap(directory, port: int) -> LdapServer:
    return LdapServer(Path(directory), port).start()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    # Before slapd starts, so a SIGTERM at any point still stops it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = LdapServer(Path(sys.argv[1]), int(sys.argv[2]))
    try:
        server.start()
        print(f"LDAP ready on {server.url}", flush=True)
        server.proc.wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.stop()
