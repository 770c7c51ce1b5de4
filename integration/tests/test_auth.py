"""Who may connect, as which tenant: LDAP (real slapd), users file and JWT authentication over the
binary (SASL PLAIN) transport, Thrift over HTTP and TLS, with beeline and PyHive; two tenants
routed to two different Spark Thrift Servers, each telling itself apart by
`spark.sparkgate.tenant`."""

from __future__ import annotations

import base64
import shutil
import ssl
import struct
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pyhive import hive
from TCLIService import ttypes
from thrift.transport import THttpClient

from harness import REPO, Sparkgate, SparkThriftServer
from helpers import free_port, make_jwt, spark_home
from ldap_server import start_ldap

JWT_SECRET = b"integration-test-shared-secret!!"


def jwt_for(user: str, groups: list[str], expires_in: int = 600, secret: bytes = JWT_SECRET) -> str:
    now = int(time.time())
    return make_jwt({"sub": user, "groups": groups, "iss": "it-idp", "aud": "sparkgate",
                     "exp": now + expires_in, "nbf": now - 5}, secret)


def make_tls(directory: Path) -> dict:
    """A self-signed certificate for 127.0.0.1, and a Java trust store holding it."""
    cert, key, store = directory / "cert.pem", directory / "key.pem", directory / "truststore.jks"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    keytool = Path(shutil.which("java")).resolve().parent / "keytool"
    subprocess.run(
        [str(keytool), "-importcert", "-noprompt", "-alias", "sparkgate", "-file", str(cert),
         "-keystore", str(store), "-storepass", "changeit", "-storetype", "JKS"],
        check=True, capture_output=True,
    )
    return {"cert": cert, "key": key, "truststore": store}


def gateway_toml(env: dict, *, binary_port="{port}", http_port: int | None = None, tls: dict | None = None,
                 auth_extra: str = "", server_extra: str = "") -> str:
    sections = [
        f'[server]\nbind = "127.0.0.1:{binary_port}"\n{server_extra}',
    ]
    if http_port:
        sections.append(f'[http]\nbind = "127.0.0.1:{http_port}"\npath = "/cliservice"\n')
    if tls:
        sections.append(f'[tls]\ncert_file = "{tls["cert"]}"\nkey_file = "{tls["key"]}"\n')
    sections.append(f"[auth]\nmax_failures = 1000\n{auth_extra}")
    sections.append(
        "[[auth.methods]]\ntype = \"ldap\"\n"
        f'url = "{env["ldap"].url}"\n'
        'bind_dn = "cn=reader,dc=example,dc=org"\n'
        f'bind_password_file = "{env["ldap"].directory / "reader.pw"}"\n'
        'user_search_base = "ou=people,dc=example,dc=org"\n'
    )
    sections.append(f'[[auth.methods]]\ntype = "users_file"\npath = "{env["users_file"]}"\n')
    sections.append(
        f'[[auth.methods]]\ntype = "jwt"\nhs256_secret_file = "{env["jwt_secret"]}"\nalgorithms = ["HS256"]\n'
        'issuer = "it-idp"\naudience = "sparkgate"\n'
    )
    sections.append(
        f'[[tenants]]\nname = "analytics"\ngroups = ["analysts"]\nusers = ["dave"]\n'
        f'backends = ["127.0.0.1:{env["sts_analytics"]}"]\n'
    )
    sections.append(
        f'[[tenants]]\nname = "engineering"\ngroups = ["engineers", "admins"]\n'
        f'backends = ["127.0.0.1:{env["sts_engineering"]}"]\n'
    )
    return "\n".join(sections)


@pytest.fixture(scope="module")
def env(sts, workdir):
    """slapd, a second Spark Thrift Server (tenant engineering), a users file, a JWT secret,
    TLS material, and sparkgate twice: plain (binary + HTTP) and TLS (binary + HTTPS)."""
    d = workdir / "auth"
    d.mkdir(exist_ok=True)
    ldap = start_ldap(d / "ldap", free_port())
    second = SparkThriftServer(d / "sts2", conf={"spark.sparkgate.tenant": "engineering"})
    gateways = []
    try:
        second.start()
        users_file = d / "users.toml"
        subprocess.run([str(REPO / "target/release/sparkgate"), "passwd", str(users_file), "dave", "--group", "contractors"],
                       input="dave-pw\n", text=True, check=True, capture_output=True)
        jwt_secret = d / "jwt.secret"
        jwt_secret.write_bytes(JWT_SECRET)
        e = {"ldap": ldap, "users_file": users_file, "jwt_secret": jwt_secret, "sts_analytics": sts.port,
             "sts_engineering": second.port, "tls": make_tls(d)}
        http_port, https_port = free_port(), free_port()
        plain = Sparkgate.with_config(d, gateway_toml(e, http_port=http_port, server_extra='admin_groups = ["admins"]\n'), "auth-plain")
        secure = Sparkgate.with_config(d, gateway_toml(e, http_port=https_port, tls=e["tls"]), "auth-tls")
        gateways += [plain, secure]
        plain.start()
        secure.start()
        e.update(plain=plain, secure=secure, http_port=http_port, https_port=https_port)
        yield e
    finally:
        for gw in gateways:
            gw.stop()
        second.stop()
        ldap.stop()


def pyhive(port: int, user: str, password: str, configuration: dict | None = None):
    return hive.connect("127.0.0.1", port, username=user, password=password, auth="LDAP",
                        configuration=configuration)


def tenant_of(conn) -> str:
    cur = conn.cursor()
    cur.execute("SET spark.sparkgate.tenant")
    rows = cur.fetchall()
    return rows[0][1]


def current_user(conn) -> str:
    cur = conn.cursor()
    cur.execute("select current_user()")
    return cur.fetchall()[0][0]


def refused(port: int, user: str, password: str, configuration: dict | None = None) -> str:
    with pytest.raises(Exception) as raised:
        conn = pyhive(port, user, password, configuration)
        conn.close()
    return str(raised.value)


@pytest.mark.timeout(300)
def test_binary_sasl_logins_and_tenant_routing(env):
    port = env["plain"].port
    cases = [
        ("alice", "alice-pw", None, "analytics"),          # LDAP, group analysts -> first tenant
        ("bob", "bob-pw", None, "engineering"),            # LDAP, group engineers
        ("dave", "dave-pw", None, "analytics"),            # users file, admitted by name
        ("alice", "alice-pw", {"sparkgate.tenant": "engineering"}, "engineering"),  # alice is in admins
        ("erin", jwt_for("erin", ["engineers"]), None, "engineering"),              # JWT in the password
    ]
    for user, password, conf, tenant in cases:
        conn = pyhive(port, user, password, conf)
        try:
            assert tenant_of(conn) == tenant, (user, conf)
            assert current_user(conn) == user, "the driver runs as the real user"
        finally:
            conn.close()


@pytest.mark.timeout(300)
def test_binary_sasl_refusals(env):
    port = env["plain"].port
    assert "invalid user name or password/token" in refused(port, "alice", "wrong-pw")
    assert "invalid user name or password/token" in refused(port, "nobody", "x")
    assert "invalid user name or password/token" in refused(port, "erin", jwt_for("erin", ["engineers"], expires_in=-120))
    assert "invalid user name or password/token" in refused(port, "erin", jwt_for("erin", ["engineers"], secret=b"forged-secret-forged-secret-1234"))
    assert "invalid user name or password/token" in refused(port, "bob", jwt_for("erin", ["engineers"])), "token of another user"
    text = refused(port, "carol", "carol-pw")
    assert "not admitted by any tenant" in text, text
    text = refused(port, "bob", "bob-pw", {"sparkgate.tenant": "analytics"})
    assert 'may not use tenant "analytics"' in text, text
    text = refused(port, "bob", "bob-pw", {"hive.server2.proxy.user": "alice"})
    assert "hive.server2.proxy.user" in text, text


def raw_execute(conn, session_handle, sql="select 1"):
    req = ttypes.TExecuteStatementReq(sessionHandle=session_handle, statement=sql, runAsync=False)
    return conn.client.ExecuteStatement(req)


@pytest.mark.timeout(300)
def test_session_handles_do_not_travel(env):
    port = env["plain"].port
    alice1, alice2, bob = pyhive(port, "alice", "alice-pw"), pyhive(port, "alice", "alice-pw"), pyhive(port, "bob", "bob-pw")
    try:
        handle = alice1.sessionHandle
        assert raw_execute(alice1, handle).status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS
        for other in (alice2, bob):  # another connection of the same user, and another user
            status = raw_execute(other, handle).status
            assert status.statusCode == ttypes.TStatusCode.ERROR_STATUS
            assert "Invalid session handle" in status.errorMessage
    finally:
        for c in (alice1, alice2, bob):
            c.close()


def http_transport(port: int, scheme: str = "http", cafile: str | None = None) -> THttpClient.THttpClient:
    if cafile:
        return THttpClient.THttpClient(f"{scheme}://127.0.0.1:{port}/cliservice", cafile=cafile)
    return THttpClient.THttpClient(f"{scheme}://127.0.0.1:{port}/cliservice")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def http_connect(port: int, authorization: str, scheme: str = "http", cafile: str | None = None):
    transport = http_transport(port, scheme, cafile)
    transport.setCustomHeaders({"Authorization": authorization})
    return hive.connect(thrift_transport=transport)


@pytest.mark.timeout(300)
def test_http_transport_with_pyhive(env):
    port = env["http_port"]
    conn = http_connect(port, basic("alice", "alice-pw"))
    try:
        assert tenant_of(conn) == "analytics"
        assert current_user(conn) == "alice"
    finally:
        conn.close()
    conn = http_connect(port, "Bearer " + jwt_for("erin", ["engineers"]))
    try:
        assert tenant_of(conn) == "engineering"
    finally:
        conn.close()
    # Another user cannot use alice's HTTP session handle.
    alice = http_connect(port, basic("alice", "alice-pw"))
    bob = http_connect(port, basic("bob", "bob-pw"))
    try:
        status = raw_execute(bob, alice.sessionHandle).status
        assert status.statusCode == ttypes.TStatusCode.ERROR_STATUS and "Invalid session handle" in status.errorMessage
        assert raw_execute(alice, alice.sessionHandle).status.statusCode == ttypes.TStatusCode.SUCCESS_STATUS
    finally:
        alice.close()
        bob.close()


def thrift_call(method: str = "Ping") -> bytes:
    """A minimal binary-protocol call (an empty args struct)."""
    name = method.encode()
    return struct.pack(">Ii", 0x80010001, len(name)) + name + struct.pack(">i", 1) + b"\x00"


def post(url: str, headers: dict, body: bytes | None = None, context=None):
    body = thrift_call() if body is None else body
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.mark.timeout(120)
def test_http_refusals_and_cookie(env):
    url = f"http://127.0.0.1:{env['http_port']}/cliservice"
    status, headers, body = post(url, {})
    assert status == 401 and b"authentication required" in body
    status, headers, body = post(url, {"Authorization": basic("alice", "wrong")})
    assert status == 401 and b"invalid user name or password/token" in body
    status, headers, body = post(url, {"Authorization": "Bearer " + jwt_for("erin", [], expires_in=-100)})
    assert status == 401
    # A good credential gets a signed, HttpOnly cookie that later requests can use instead.
    status, headers, body = post(url + "/", {"Authorization": basic("alice", "alice-pw")})
    assert status == 200, body
    assert b"Invalid method name" in body, body  # the Thrift-level answer to an unknown method
    cookie = headers["Set-Cookie"]
    assert cookie.startswith("hive.server2.auth=") and "HttpOnly" in cookie and "Secure" not in cookie
    value = cookie.split(";")[0]
    status, _, _ = post(url, {"Cookie": value})
    assert status == 200
    status, _, _ = post(url, {"Cookie": value[:-3] + "abc"})
    assert status == 401, "a tampered cookie is refused"


def beeline(url: str, user: str, password: str, sql: str = "SET spark.sparkgate.tenant") -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(spark_home() / "bin" / "beeline"), "-u", url, "-n", user, "-p", password, "--outputformat=csv2", "-e", sql],
        stdin=subprocess.DEVNULL, check=False, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.timeout(400)
def test_beeline_binary_http_and_tls(env):
    store = env["tls"]["truststore"]
    ssl_opts = f";ssl=true;sslTrustStore={store};trustStorePassword=changeit"
    http_opts = ";transportMode=http;httpPath=cliservice"
    runs = [
        (f"jdbc:hive2://127.0.0.1:{env['plain'].port}/default", "alice", "alice-pw", "analytics"),
        (f"jdbc:hive2://127.0.0.1:{env['http_port']}/default{http_opts}", "bob", "bob-pw", "engineering"),
        (f"jdbc:hive2://127.0.0.1:{env['secure'].port}/default{ssl_opts}", "dave", "dave-pw", "analytics"),
        (f"jdbc:hive2://127.0.0.1:{env['https_port']}/default{http_opts}{ssl_opts}", "bob", "bob-pw", "engineering"),
    ]
    for url, user, password, tenant in runs:
        out = beeline(url, user, password)
        assert out.returncode == 0, (url, out.stderr[-2000:])
        assert f"spark.sparkgate.tenant,{tenant}" in out.stdout, (url, out.stdout)
    out = beeline(f"jdbc:hive2://127.0.0.1:{env['plain'].port}/default", "alice", "wrong-pw")
    assert out.returncode != 0
    assert "invalid user name or password/token" in out.stderr + out.stdout, out.stderr[-2000:]


@pytest.mark.timeout(120)
def test_pyhive_over_https(env):
    conn = http_connect(env["https_port"], basic("alice", "alice-pw"), scheme="https", cafile=str(env["tls"]["cert"]))
    try:
        assert tenant_of(conn) == "analytics"
    finally:
        conn.close()
    status, headers, _ = post(f"https://127.0.0.1:{env['https_port']}/cliservice", {"Authorization": basic("alice", "alice-pw")},
                              context=ssl.create_default_context(cafile=str(env["tls"]["cert"])))
    assert status == 200 and "Secure" in headers["Set-Cookie"]


@pytest.mark.timeout(120)
def test_throttling_and_connection_limits(env, workdir):
    """A separate sparkgate with tight limits, so other tests are not locked out."""
    gw = Sparkgate.with_config(
        workdir / "auth",
        gateway_toml(env, server_extra="max_connections_per_user = 2\n")
        .replace("max_failures = 1000", 'max_failures = 3\nfailure_window = "1m"\nlockout = "3s"'),
        "auth-strict",
    )
    gw.start()
    try:
        for _ in range(3):
            assert "invalid user name" in refused(gw.port, "bob", "nope")
        text = refused(gw.port, "bob", "bob-pw")
        assert "too many failed attempts" in text, text
        time.sleep(3.5)
        held = [pyhive(gw.port, "bob", "bob-pw"), pyhive(gw.port, "bob", "bob-pw")]
        try:
            with pytest.raises(Exception):  # noqa: B017 - refused; how PyHive reports it does not matter
                pyhive(gw.port, "bob", "bob-pw")
            deadline = time.monotonic() + 5
            while "max_connections_per_user" not in gw.log_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "max_connections_per_user" in gw.log_text()
            with pytest.raises(Exception) as raised:
                pyhive(gw.port, "bob", "bob-pw")
            assert "max_connections_per_user" in str(raised.value)
        finally:
            for c in held:
                c.close()
    finally:
        gw.stop()


def test_no_secret_reaches_the_logs(env):
    """Run last in this module: every password and token used above stays out of the logs."""
    logs = "".join(gw.log_text() for gw in (env["plain"], env["secure"]))
    assert "session opened" in logs
    for secret in ("alice-pw", "bob-pw", "carol-pw", "dave-pw", "wrong-pw", JWT_SECRET.decode(), "eyJ"):
        assert secret not in logs, secret


@pytest.mark.timeout(120)
def test_tls_certificate_is_reloaded_without_restart(env, workdir):
    """Replace the certificate files under a running sparkgate: new connections get the new one."""
    d = workdir / "auth" / "reload"
    d.mkdir(exist_ok=True)
    first = make_tls(d)
    config = workdir / "auth" / "reload.toml"
    port = free_port()
    config.write_text(
        f'[server]\nbind = "127.0.0.1:{port}"\n[tls]\ncert_file = "{first["cert"]}"\nkey_file = "{first["key"]}"\n'
        f'[backend]\naddress = "127.0.0.1:{env["sts_analytics"]}"\n'
    )
    gw = Sparkgate(["--config", str(config)], port, workdir / "auth" / "reload.log").start()
    try:
        before = ssl.get_server_certificate(("127.0.0.1", port))
        assert before.strip() == first["cert"].read_text().strip()
        renewed = make_tls(d / "new") if (d / "new").mkdir() is None else None
        shutil.copy(renewed["key"], first["key"])
        shutil.copy(renewed["cert"], first["cert"])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if ssl.get_server_certificate(("127.0.0.1", port)).strip() == renewed["cert"].read_text().strip():
                break
            time.sleep(0.5)
        else:
            pytest.fail("the renewed certificate was not served within 20 s")
        assert "TLS certificate reloaded" in gw.log_text()
    finally:
        gw.stop()


@pytest.mark.timeout(120)
def test_sqlalchemy_uri_with_ldap_password(env):
    """The URI form Superset users type: hive://user:password@host:port/db?auth=LDAP."""
    from sqlalchemy import create_engine, text

    engine = create_engine(f"hive://bob:bob-pw@127.0.0.1:{env['plain'].port}/default?auth=LDAP")
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SET spark.sparkgate.tenant")).fetchall()
        assert rows[0][1] == "engineering"
    finally:
        engine.dispose()


@pytest.mark.timeout(120)
def test_admins_may_open_sessions_as_another_user(env):
    conn = pyhive(env["plain"].port, "alice", "alice-pw", {"hive.server2.proxy.user": "zed"})
    try:
        assert current_user(conn) == "zed"
        assert tenant_of(conn) == "analytics", "the tenant still comes from the admin's own groups"
    finally:
        conn.close()
