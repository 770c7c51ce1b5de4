"""Several sparkgate replicas serving one HTTP session: a round-robin forwarder (what a Kubernetes
Service without session affinity does) sends consecutive HTTP calls of one session to alternating
replicas; each takes in the sessions and operations of the other from their sealed handles. Both
replicas share the cookie key and one real Spark Thrift Server (a static backend)."""

from __future__ import annotations

import base64
import http.client
import http.server
import itertools
import json
import signal
import socketserver
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from pyhive import hive
from TCLIService import TCLIService, ttypes
from thrift.protocol import TBinaryProtocol
from thrift.transport import THttpClient

from harness import REPO, Sparkgate
from helpers import free_port, spark_home, wait_for

PASSWORD = "replica-Pw-2468"


class RoundRobin:
    """An HTTP forwarder on 127.0.0.1: each POST goes to the next replica in turn (one that refuses
    the connection is skipped, as a load balancer drops a dead endpoint). It counts what each
    replica answered."""

    def __init__(self, ports: list[int], ready_urls: list[str] | None = None):
        self.ports = ports
        # Like a Service's endpoints: a replica whose /readyz fails gets no new request.
        self.ready_urls = ready_urls
        self.turn = itertools.cycle(range(len(ports)))
        self.lock = threading.Lock()
        self.served = [0] * len(ports)
        forwarder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                for _ in range(len(forwarder.ports)):
                    with forwarder.lock:
                        index = next(forwarder.turn)
                    if not forwarder.ready(index):
                        continue
                    conn = http.client.HTTPConnection("127.0.0.1", forwarder.ports[index], timeout=300)
                    try:
                        conn.request("POST", self.path, body=body, headers=headers)
                        reply = conn.getresponse()
                        data = reply.read()
                    except ConnectionRefusedError:
                        continue
                    finally:
                        conn.close()
                    with forwarder.lock:
                        forwarder.served[index] += 1
                    self.send_response(reply.status)
                    for key, value in reply.getheaders():
                        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_error(502, "no replica answers")

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ready(self, index: int) -> bool:
        if not self.ready_urls:
            return True
        try:
            with urllib.request.urlopen(self.ready_urls[index], timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def replica_toml(d, http_port: int, admin_port: int, backend: str) -> str:
    return f"""
[server]
bind = "127.0.0.1:{{port}}"
shutdown_grace = "4s"
[admin]
bind = "127.0.0.1:{admin_port}"
[http]
bind = "127.0.0.1:{http_port}"
path = "/cliservice"
cookie_key_file = "{d / 'cookie.key'}"
shared_sessions = true
[[auth.methods]]
type = "users_file"
path = "{d / 'users.toml'}"
[[tenants]]
name = "shared"
groups = ["analysts"]
backends = ["{backend}"]
"""


@pytest.fixture
def replicas(sts, workdir):
    d = workdir / "replicas"
    d.mkdir(exist_ok=True)
    (d / "cookie.key").write_bytes(b"replicas-share-this-cookie-key-0123456789")
    (d / "cookie.key").chmod(0o600)
    for user in ("hana", "ivan"):
        subprocess.run([str(REPO / "target/release/sparkgate"), "passwd", str(d / "users.toml"), user,
                        "--group", "analysts"], input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    ports = [free_port(), free_port()]
    admin_ports = [free_port(), free_port()]
    gateways = [Sparkgate.with_config(d, replica_toml(d, port, admin, f"127.0.0.1:{sts.port}"), f"replica-{i}").start()
                for i, (port, admin) in enumerate(zip(ports, admin_ports))]
    for gw, admin in zip(gateways, admin_ports):
        gw.ready_url = f"http://127.0.0.1:{admin}/readyz"
    forwarder = RoundRobin(ports, [gw.ready_url for gw in gateways])
    try:
        yield gateways, forwarder
    finally:
        forwarder.close()
        for gw in gateways:
            gw.stop()


def basic_transport(port: int, user: str) -> THttpClient.THttpClient:
    transport = THttpClient.THttpClient(f"http://127.0.0.1:{port}/cliservice")
    token = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    transport.setCustomHeaders({"Authorization": f"Basic {token}"})
    return transport


def http_connection(port: int, user: str = "hana"):
    return hive.connect(thrift_transport=basic_transport(port, user))


@pytest.mark.timeout(300)
def test_an_http_session_alternating_between_replicas_works_and_survives_one(replicas):
    (a, b), forwarder = replicas
    conn = http_connection(forwarder.port)
    cur = conn.cursor()
    cur.execute("SET spark.sql.shuffle.partitions=3")
    cur.execute("SELECT id, id * 2 AS twice FROM range(0, 2500) ORDER BY id")
    cur.arraysize = 200  # many FetchResults calls, alternating replicas
    rows = []
    while batch := cur.fetchmany(200):
        rows.extend(batch)
    assert rows == [(i, 2 * i) for i in range(2500)]
    started = time.monotonic()
    cur.execute("SELECT reflect('java.lang.Thread', 'sleep', cast(1500 as bigint)) AS slept", async_=True)
    polls = 0
    while (state := cur.poll().operationState) not in (2, 3, 4, 5):  # until final
        polls += 1
        time.sleep(0.2)
    assert state == ttypes.TOperationState.FINISHED_STATE, state
    assert time.monotonic() - started >= 1.4, "the status came from the driver, once the statement ended"
    cur.execute("SET spark.sql.shuffle.partitions")
    assert cur.fetchall() == [("spark.sql.shuffle.partitions", "3")]
    assert all(n > 3 for n in forwarder.served), forwarder.served
    for gw in (a, b):
        assert "taken in from its sealed handle" in gw.log_text(), "each replica served the other's session"

    # One replica dies mid-session (no goodbye): the session goes on on the other.
    a.proc.kill()
    a.proc.wait(10)
    killed = time.monotonic()
    cur.execute("SELECT count(*) FROM range(0, 1000)")
    assert cur.fetchall() == [(1000,)]
    took = time.monotonic() - killed
    cur.execute("SET spark.sql.shuffle.partitions")
    assert cur.fetchall() == [("spark.sql.shuffle.partitions", "3")], "the session's settings are the driver's: kept"
    conn.close()
    print(f"\n[replicas] calls answered per replica {forwarder.served}; after one replica was killed the "
          f"next statement ran on the other in {took:.2f} s")


@pytest.mark.timeout(300)
def test_beeline_over_http_through_alternating_replicas(replicas):
    (a, b), forwarder = replicas
    url = f"jdbc:hive2://127.0.0.1:{forwarder.port}/default;transportMode=http;httpPath=cliservice"
    sql = "SELECT id FROM range(0, 5); SELECT sum(id) AS total FROM range(0, 101);"
    out = subprocess.run(
        [str(spark_home() / "bin" / "beeline"), "-u", url, "-n", "ivan", "-p", PASSWORD, "--outputformat=csv2", "-e", sql],
        stdin=subprocess.DEVNULL, check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.split()
    assert lines[:6] == ["id", "0", "1", "2", "3", "4"] and "5050" in lines, out.stdout
    assert all(n > 0 for n in forwarder.served), forwarder.served
    wait_for("both replicas to have served ivan's session", lambda: all(
        "taken in from its sealed handle" in gw.log_text() for gw in (a, b)), 5)


@pytest.mark.timeout(120)
def test_a_forged_or_foreign_sealed_handle_is_refused(replicas):
    (a, b), forwarder = replicas
    conn = http_connection(forwarder.port, "hana")
    session = conn._sessionHandle
    cur = conn.cursor()
    cur.execute("SELECT 1")
    operation = cur._operationHandle

    def raw(user: str):
        return TCLIService.Client(TBinaryProtocol.TBinaryProtocol(basic_transport(forwarder.port, user)))

    # Another user holding hana's handles: refused on either replica.
    for _ in range(2):
        resp = raw("ivan").ExecuteStatement(ttypes.TExecuteStatementReq(sessionHandle=session, statement="SELECT 2"))
        assert resp.status.statusCode == ttypes.TStatusCode.ERROR_STATUS
        assert "Invalid session handle" in resp.status.errorMessage
        resp = raw("ivan").FetchResults(ttypes.TFetchResultsReq(operationHandle=operation, orientation=0, maxRows=10))
        assert resp.status.statusCode == ttypes.TStatusCode.ERROR_STATUS
    # Her own handle with one bit of its sealed state flipped: refused.
    secret = bytearray(session.sessionId.secret)
    secret[len(secret) // 2] ^= 0x04
    forged = ttypes.TSessionHandle(ttypes.THandleIdentifier(guid=session.sessionId.guid, secret=bytes(secret)))
    for _ in range(2):
        resp = raw("hana").ExecuteStatement(ttypes.TExecuteStatementReq(sessionHandle=forged, statement="SELECT 2"))
        assert resp.status.statusCode == ttypes.TStatusCode.ERROR_STATUS
        assert "Invalid session handle" in resp.status.errorMessage
    # The genuine handle still serves her.
    cur.execute("SELECT 3")
    assert cur.fetchall() == [(3,)]
    conn.close()
    for gw in (a, b):
        assert "panicked" not in gw.log_text()


@pytest.mark.timeout(120)
def test_a_handle_naming_a_driver_this_replica_does_not_have_gets_a_clear_error(replicas, sts, workdir):
    """A replica whose pool lacks the session's driver (gone; or the session moved to another
    driver through the replica that saw the loss) says so, with a connection-class SQLSTATE so
    JDBC pools open a new session, instead of "invalid handle"."""
    _, forwarder = replicas
    d = workdir / "replicas"
    http_port = free_port()
    elsewhere = Sparkgate.with_config(d, replica_toml(d, http_port, free_port(), f"127.0.0.1:{free_port()}"),
                                      "replica-elsewhere").start()
    try:
        conn = http_connection(forwarder.port)
        session = conn._sessionHandle
        client = TCLIService.Client(TBinaryProtocol.TBinaryProtocol(
            basic_transport(http_port, "hana")))
        resp = client.ExecuteStatement(ttypes.TExecuteStatementReq(sessionHandle=session, statement="SELECT 1"))
        assert resp.status.statusCode == ttypes.TStatusCode.ERROR_STATUS
        assert "this session ran on is gone" in resp.status.errorMessage, resp.status.errorMessage
        assert f"127.0.0.1:{sts.port}" in resp.status.errorMessage, resp.status.errorMessage
        assert resp.status.sqlState == "08S01"
        conn.close()
    finally:
        elsewhere.stop()


def load_on(gw) -> tuple[int, int]:
    """(sessions, running statements) a replica counts on its drivers, from its admin API."""
    url = gw.ready_url.replace("/readyz", "/api/v1/drivers")
    with urllib.request.urlopen(url, timeout=5) as reply:
        drivers = json.load(reply)
    return (sum(d["sessions"] for d in drivers), sum(d["running_operations"] for d in drivers))


@pytest.mark.timeout(300)
def test_what_ended_through_one_replica_stops_counting_as_load_on_the_other(replicas):
    """A statement started on one replica and seen to finish, or a session closed, on the other:
    the first one learns it from the driver (it rechecks what it has not heard of for 10 s), so
    its copy does not keep the driver busy in the pool's eyes (no drain, extra scale-up)."""
    gateways, forwarder = replicas
    conn = http_connection(forwarder.port)
    cur = conn.cursor()
    for i in range(4):  # each statement's calls alternate: some end on the replica that did not start them
        cur.execute(f"SELECT reflect('java.lang.Thread', 'sleep', cast({300 + i} as bigint)) AS slept", async_=True)
        while cur.poll().operationState not in (2, 3, 4, 5):
            time.sleep(0.1)
        assert cur.fetchall() == [("null",)]
    loads = [load_on(gw) for gw in gateways]
    assert all(sessions == 1 for sessions, _ in loads), loads
    # The session stays in use (a statement now and then), its finished statements stop counting.
    started = time.monotonic()

    def settled() -> bool:
        cur.execute("SELECT 1")
        cur.fetchall()
        return all(running == 0 for _, running in (load_on(gw) for gw in gateways))

    wait_for("no statement counted as running on either replica", settled, 30, every=1)
    settled_in = time.monotonic() - started
    conn.close()
    closed = time.monotonic()
    wait_for("the closed session to leave both replicas' load",
             lambda: all(load_on(gw) == (0, 0) for gw in gateways), 30, every=0.5)
    print(f"\n[replicas] load at first {loads}; finished statements stopped counting within {settled_in:.1f} s, "
          f"a session closed through one replica left the other's load in {time.monotonic() - closed:.1f} s")


@pytest.mark.timeout(300)
def test_a_stopping_replica_fails_readiness_and_hands_its_http_sessions_over(replicas):
    """A rolling update's view of one replica: told to stop (SIGTERM), it fails readiness at once
    (the forwarder, as a Service would, sends it nothing new), finishes its calls in flight, and
    leaves its HTTP sessions open on the driver for the others: the client sees no error."""
    (a, _other), forwarder = replicas
    conn = http_connection(forwarder.port)
    cur = conn.cursor()
    cur.execute("SET spark.sql.shuffle.partitions=5")
    cur.execute("SELECT reflect('java.lang.Thread', 'sleep', cast(3000 as bigint)) AS slept", async_=True)
    a.proc.send_signal(signal.SIGTERM)
    told = time.monotonic()
    wait_for("the stopping replica to fail readiness", lambda: not forwarder.ready(0), 2, every=0.05)
    unready = time.monotonic() - told
    while (state := cur.poll().operationState) not in (2, 3, 4, 5):
        time.sleep(0.2)
    assert state == ttypes.TOperationState.FINISHED_STATE, state
    assert cur.fetchall() == [("null",)], "the statement in flight ran to its end (reflect: Thread.sleep's void as 'null')"
    a.proc.wait(30)
    assert "leaving HTTP sessions open for the other replicas" in a.log_text()
    for _ in range(4):
        cur.execute("SET spark.sql.shuffle.partitions")
        assert cur.fetchall() == [("spark.sql.shuffle.partitions", "5")], "same driver session, settings kept"
    conn.close()
    print(f"\n[replicas] a stopping replica failed readiness {unready:.2f} s after SIGTERM; its HTTP session "
          f"went on on the other replica without an error")
