"""The admin port as a hostile neighbour meets it: health, readiness and metrics are open (probes
and scrapers); the API (it lists users' sessions and drains drivers) needs the bearer token of
admin.token_file, or, without one, answers only local tools (a loopback Host and no Origin, so a
web page on the machine cannot call it through DNS rebinding); a network bind without a token
does not start. No driver is needed: the tenant scales from zero and no session opens."""

from __future__ import annotations

import http.client
import json
import subprocess
from pathlib import Path

import pytest

from harness import Sparkgate, sparkgate_binary
from helpers import free_port

TOKEN = "4f1c2a9e7b3d5f6a8c0e1d2b3a4c5d6e"


def toml(work: Path, admin: str) -> str:
    return f"""
[admin]
{admin}
[server]
bind = "127.0.0.1:{{port}}"
shutdown_grace = "1s"
[local]
work_dir = "{work}"
[[tenants]]
name = "pooled"
users = ["*"]
launcher = "local"
[tenants.scaling]
min_drivers = 0
max_drivers = 1
"""


def request(port: int, path: str, headers: dict | None = None, method: str = "GET") -> tuple[int, str, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read().decode(), {k.lower(): v for k, v in reply.getheaders()}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def with_token(workdir):
    work = workdir / "admin-token"
    work.mkdir()
    token_file = work / "admin-token"
    token_file.write_text(f"  {TOKEN}\n")
    token_file.chmod(0o600)  # a secret: no tenant's drivers may read it
    port = free_port()
    gw = Sparkgate.with_config(work, toml(work, f'bind = "127.0.0.1:{port}"\ntoken_file = "{token_file}"'), "gw")
    gw.start()
    gw.admin_port = port
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def without_token(workdir):
    work = workdir / "admin-local"
    work.mkdir()
    port = free_port()
    gw = Sparkgate.with_config(work, toml(work, f'bind = "127.0.0.1:{port}"'), "gw")
    gw.start()
    gw.admin_port = port
    try:
        yield gw
    finally:
        gw.stop()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_health_and_metrics_need_no_token(with_token, path):
    status, body, _ = request(with_token.admin_port, path, {"Host": "sparkgate.example:10011"})
    assert status == 200, body
    if path == "/metrics":
        assert "sparkgate_sessions" in body


@pytest.mark.parametrize(("headers", "what"), [
    ({}, "no Authorization"),
    ({"Authorization": "Bearer wrong-token-of-the-same-length!"}, "a wrong token"),
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "a prefix of the token"),
    ({"Authorization": f"Bearer {TOKEN}x"}, "the token and more"),
    ({"Authorization": f"Basic {TOKEN}"}, "another scheme"),
    ({"Authorization": f"Bearer  {TOKEN}"}, "a malformed header"),
])
def test_the_api_refuses_a_request_without_the_token(with_token, headers, what):
    for method, path in [("GET", "/api/v1/sessions"), ("GET", "/api/v1/drivers"),
                         ("POST", "/api/v1/drivers/any/drain")]:
        status, body, reply_headers = request(with_token.admin_port, path, headers, method)
        assert status == 401, (what, method, path, status, body)
        assert reply_headers.get("www-authenticate", "").startswith("Bearer"), reply_headers
        assert "admin.token_file" in body
    assert "admin API request refused" in with_token.log_text()


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_the_api_answers_the_token_from_anywhere(with_token, scheme):
    # A token needs no loopback Host: the chart's Service names it however the cluster does.
    headers = {"Authorization": f"{scheme} {TOKEN}", "Host": "sparkgate-admin.ops.svc:10011"}
    status, body, _ = request(with_token.admin_port, "/api/v1/sessions", headers)
    assert status == 200, body
    assert json.loads(body) == []
    status, body, _ = request(with_token.admin_port, "/api/v1/drivers", headers)
    assert status == 200, body
    assert json.loads(body) == []


@pytest.mark.parametrize(("headers", "what"), [
    ({"Host": "evil.example"}, "a DNS-rebinding name"),
    ({"Host": "evil.example:10011"}, "a DNS-rebinding name with a port"),
    ({"Host": "localhost.evil.example"}, "a name that starts like localhost"),
    ({"Host": "127.0.0.1", "Origin": "http://evil.example"}, "a request a web page sent"),
    ({"Host": "localhost", "Origin": "null"}, "a request a sandboxed page sent"),
])
def test_without_a_token_the_api_answers_local_tools_only(without_token, headers, what):
    status, body, _ = request(without_token.admin_port, "/api/v1/sessions", headers)
    assert status == 403, (what, status, body)
    assert "admin.token_file" in body
    # Health stays open to anything.
    assert request(without_token.admin_port, "/healthz", headers)[0] == 200


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST:9"])
def test_without_a_token_local_tools_use_the_api(without_token, host):
    status, body, _ = request(without_token.admin_port, "/api/v1/sessions", {"Host": host})
    assert status == 200, body
    assert json.loads(body) == []


def check_config(work: Path, admin: str) -> subprocess.CompletedProcess:
    config = work / "check.toml"
    config.write_text(toml(work, admin).replace("{port}", "10009"))
    return subprocess.run([str(sparkgate_binary()), "--config", str(config), "--check-config"],
                          check=False, capture_output=True, text=True, timeout=60)


def test_a_network_bind_needs_a_token_or_no_api(workdir):
    # --check-config makes startup's checks without binding: a test binds loopback only.
    work = workdir / "admin-check"
    work.mkdir()
    refused = check_config(work, 'bind = "0.0.0.0:10011"')
    assert refused.returncode != 0
    assert "admin.token_file" in refused.stderr + refused.stdout, refused.stderr
    short = work / "short-token"
    short.write_text("too-short\n")
    refused = check_config(work, f'bind = "0.0.0.0:10011"\ntoken_file = "{short}"')
    assert refused.returncode != 0
    assert "shorter than 16" in refused.stderr + refused.stdout, refused.stderr
    good = work / "token"
    good.write_text(TOKEN)
    accepted = check_config(work, f'bind = "0.0.0.0:10011"\ntoken_file = "{good}"')
    assert accepted.returncode == 0, accepted.stderr
    accepted = check_config(work, 'bind = "0.0.0.0:10011"\napi = false')
    assert accepted.returncode == 0, accepted.stderr


def test_with_the_api_off_only_health_and_metrics_answer(workdir):
    work = workdir / "admin-off"
    work.mkdir()
    port = free_port()
    gw = Sparkgate.with_config(work, toml(work, f'bind = "127.0.0.1:{port}"\napi = false'), "gw")
    gw.start()
    try:
        assert request(port, "/metrics")[0] == 200
        status, body, _ = request(port, "/api/v1/sessions", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 404, body
        assert "admin.api = false" in body
    finally:
        gw.stop()
