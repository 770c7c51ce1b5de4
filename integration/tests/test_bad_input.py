"""Bad input on the gateway port: each bad client is closed or answered with an error and logged,
while a normal client on another connection keeps being served."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import time

import pytest
from pyhive import hive

from harness import Sparkgate
from helpers import free_port, spark_home


@pytest.fixture(scope="module")
def strict_gateways(sts, workdir):
    """sparkgate with short deadlines, so stalling clients are cut quickly."""
    gws = {}
    for transport in ("sasl", "nosasl"):
        gws[transport] = Sparkgate.proxy(
            workdir, f"strict-{transport}", sts.port, transport,
            max_message_size=1048576, handshake_timeout="2s", read_timeout="2s",
        )
    try:
        for gw in gws.values():
            gw.start()
        yield gws
    finally:
        for gw in gws.values():
            gw.stop()


def good_query_works(gw, transport):
    conn = hive.connect("127.0.0.1", gw.port, username="good", auth="NONE" if transport == "sasl" else "NOSASL")
    try:
        cur = conn.cursor()
        cur.execute("select 'still serving'")
        assert cur.fetchall() == [("still serving",)]
    finally:
        conn.close()


def closed_by_server(sock, within: float) -> bytes:
    """Reads until the server closes; returns what it sent. Fails if it stays open too long."""
    sock.settimeout(within)
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
    except ConnectionResetError:
        return received
    except TimeoutError:
        pytest.fail(f"server kept the connection open for more than {within} s")


def wait_for_log(gw, pattern: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pattern in gw.log_text():
            return
        time.sleep(0.1)
    pytest.fail(f"no log line containing {pattern!r} in {gw.log}:\n{gw.log_text()[-2000:]}")


def sasl_handshake(sock):
    sock.sendall(struct.pack(">BI", 1, 5) + b"PLAIN")
    creds = b"\0mallory\0pw"
    sock.sendall(struct.pack(">BI", 5, len(creds)) + creds)
    status = sock.recv(5)
    assert status[:1] == b"\x05", status  # COMPLETE


def connect(gw):
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["sasl", "nosasl"])
def test_random_bytes(strict_gateways, transport):
    gw = strict_gateways[transport]
    with connect(gw) as bad:
        bad.sendall(b"\x13" + os.urandom(4096))
        good_query_works(gw, transport)
        closed_by_server(bad, 5)
    wait_for_log(gw, "SASL negotiation refused" if transport == "sasl" else "bad input from client")


@pytest.mark.timeout(60)
def test_sasl_frame_over_the_limit(strict_gateways):
    gw = strict_gateways["sasl"]
    with connect(gw) as bad:
        sasl_handshake(bad)
        bad.sendall(struct.pack(">I", 2**31) + b"\x80\x01")
        good_query_works(gw, "sasl")
        closed_by_server(bad, 5)
    wait_for_log(gw, "exceeds the limit")


@pytest.mark.timeout(60)
def test_nosasl_message_claiming_two_gib(strict_gateways):
    gw = strict_gateways["nosasl"]
    with connect(gw) as bad:
        name = b"ExecuteStatement"
        header = struct.pack(">II", 0x80010001, len(name)) + name + struct.pack(">i", 1)
        # args struct, field 1 (struct), field 2 (string) claiming 2 GiB - 1
        body = b"\x0c\x00\x01" + b"\x0b\x00\x02" + struct.pack(">i", 2**31 - 1)
        bad.sendall(header + body)
        good_query_works(gw, "nosasl")
        closed_by_server(bad, 5)
    wait_for_log(gw, "exceeds the limit")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["sasl", "nosasl"])
def test_connection_cut_mid_message(strict_gateways, transport):
    gw = strict_gateways[transport]
    bad = connect(gw)
    if transport == "sasl":
        sasl_handshake(bad)
        bad.sendall(struct.pack(">I", 100) + b"\x80\x01\x00\x01")
    else:
        bad.sendall(struct.pack(">II", 0x80010001, 11) + b"OpenSe")
    time.sleep(0.2)
    bad.close()
    good_query_works(gw, transport)
    wait_for_log(gw, "cut mid-message")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["sasl", "nosasl"])
def test_client_that_sends_nothing(strict_gateways, transport):
    gw = strict_gateways[transport]
    with connect(gw) as bad:
        started = time.monotonic()
        good_query_works(gw, transport)
        closed_by_server(bad, 6)
        assert time.monotonic() - started >= 1.5, "closed before the handshake deadline"
    wait_for_log(gw, "no complete handshake in time")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["sasl", "nosasl"])
def test_client_that_stalls_mid_message(strict_gateways, transport):
    gw = strict_gateways[transport]
    with connect(gw) as bad:
        if transport == "sasl":
            sasl_handshake(bad)
            bad.sendall(struct.pack(">I", 64) + b"\x80\x01")
        else:
            bad.sendall(struct.pack(">II", 0x80010001, 11) + b"Open")
        good_query_works(gw, transport)
        closed_by_server(bad, 6)
    wait_for_log(gw, "client stalled")


@pytest.mark.timeout(60)
def test_wrong_sasl_mechanism_is_refused_with_a_message(strict_gateways):
    gw = strict_gateways["sasl"]
    with connect(gw) as bad:
        bad.sendall(struct.pack(">BI", 1, 6) + b"GSSAPI")
        reply = closed_by_server(bad, 5)
    assert reply[:1] == b"\x03" and b"only PLAIN" in reply, reply
    wait_for_log(gw, "unsupported SASL mechanism")


@pytest.mark.timeout(120)
def test_backend_down_gives_clients_an_actionable_error(workdir):
    """No Spark Thrift Server behind sparkgate: beeline and PyHive get a message naming the
    problem, not a dropped connection or a hang."""
    dead = free_port()  # nothing listens there
    gw = Sparkgate.with_config(
        workdir, f'[server]\nbind = "127.0.0.1:{{port}}"\n[backend]\naddress = "127.0.0.1:{dead}"\nconnect_timeout = "3s"\n',
        "dead-backend",
    )
    gw.start()
    try:
        with pytest.raises(Exception) as raised:
            hive.connect("127.0.0.1", gw.port, username="alice", auth="NONE")
        assert "cannot reach the Spark Thrift Server" in str(raised.value), raised.value
        out = subprocess.run(
            [str(spark_home() / "bin" / "beeline"), "-u", f"jdbc:hive2://127.0.0.1:{gw.port}/default", "-n", "alice",
             "-e", "select 1"], stdin=subprocess.DEVNULL, check=False, capture_output=True, text=True, timeout=90,
        )
        assert out.returncode != 0
        assert "cannot reach the Spark Thrift Server" in out.stderr + out.stdout, (out.stderr + out.stdout)[-2000:]
        wait_for_log(gw, "cannot reach the Spark Thrift Server")
    finally:
        gw.stop()
