"""The Helm chart (charts/sparkgate), offline: rendered and linted by Helm's own Go SDK
(helm-python-sdk), every manifest validated strictly against the Kubernetes OpenAPI schemas
(kubernetes-validate, 1.20 — the version of our test API server — and 1.28), and the rendered
sparkgate.toml parsed back and compared with the values, and chart and config kept one truth:
every key of sparkgate's config (read from the binary, integration/config_keys.py) can be set
through the values or is excluded with a reason, and the schema allows no key sparkgate lacks.
Installing into a real API server is another test's job.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from config_keys import Key, Step, config_keys, format_path

# kubernetes-validate 1.28.3 still uses jsonschema's deprecated RefResolver: noise, not findings.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "sparkgate"
TWO_TENANTS = yaml.safe_load((CHART / "examples" / "two-tenants.yaml").read_text())
RELEASE, NAMESPACE = "sg", "sparkgate"
FULLNAME = "sg-sparkgate"
KUBE_VERSIONS = ["1.20.0", "1.28.0"]
ROLES = {
    "analytics": "arn:aws:iam::111122223333:role/analytics-spark",
    "engineering": "arn:aws:iam::111122223333:role/engineering-spark",
}


def render(values: dict | None = None) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def objects(values: dict | None = None) -> list[dict]:
    out = []
    for path, text in sorted(render(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        out += [doc for doc in yaml.safe_load_all(text) if doc]
    return out


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def config(objs: list[dict]) -> dict:
    return tomllib.loads(one(objs, "ConfigMap", FULLNAME)["data"]["sparkgate.toml"])


def with_values(base: dict | None, **overrides) -> dict:
    """A deep copy of `base` with dotted keys set: with_values(v, **{"server.shutdownGrace": "2m"})."""
    values = copy.deepcopy(base) if base else {}
    for dotted, value in overrides.items():
        node = values
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return values


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


VALUE_SETS = {"default": None, "two-tenants": TWO_TENANTS}


@pytest.mark.parametrize("which", VALUE_SETS)
def test_lint(which):
    for kube in ["v1.20.2", "v1.28.0"]:
        report = helm.lint(CHART, VALUE_SETS[which], strict=True, kube_version=kube)
        assert report["errors"] == [], report
        # Severity 1 is INFO ("icon is recommended"); warnings and errors fail.
        assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("which", VALUE_SETS)
def test_manifests_validate_strictly(which, kube):
    values = VALUE_SETS[which]
    if kube.startswith("1.20"):
        # Offline rendering sees Helm's default capabilities (policy/v1 served); a real 1.20 API
        # server's discovery makes the chart pick policy/v1beta1 by itself.
        values = with_values(values, **{"podDisruptionBudget.apiVersion": "policy/v1beta1"})
    objs = objects(values)
    kinds = sorted({o["kind"] for o in objs})
    expected = ["ConfigMap", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]
    if which == "two-tenants":
        expected += ["PodDisruptionBudget", "NetworkPolicy"]
    assert kinds == sorted(expected)
    for o in objs:
        # Every object: the standard labels, and the namespace it belongs in.
        labels = o["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert o["metadata"]["namespace"] in (NAMESPACE, "spark-drivers")
        try:
            kubernetes_validate.validate(o, kube, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{o['kind']}/{o['metadata']['name']} against {kube}: {e.message} at {list(e.path)}")


def test_service_monitor_optional():
    assert not [o for o in objects(TWO_TENANTS) if o["kind"] == "ServiceMonitor"]
    objs = objects(with_values(TWO_TENANTS, **{"serviceMonitor.enabled": True}))
    sm = one(objs, "ServiceMonitor", FULLNAME)
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["endpoints"] == [{"port": "admin", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    pods = one(objs, "Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]
    assert sm["spec"]["selector"]["matchLabels"] == {**pods, "app.kubernetes.io/component": "admin"}
    # It scrapes a Service of its own: the admin port stays off clients' Service.
    admin = one(objs, "Service", f"{FULLNAME}-admin")
    assert admin["spec"]["selector"] == pods
    assert [p["name"] for p in admin["spec"]["ports"]] == ["admin"]
    assert "admin" not in [p["name"] for p in one(objs, "Service", FULLNAME)["spec"]["ports"]]
    with pytest.raises(SchemaNotFoundError):  # a CRD: no built-in schema to check it against
        kubernetes_validate.validate(sm, "1.28.0", strict=True)


def test_config_matches_two_tenant_values():
    cfg = config(objects(TWO_TENANTS))
    k8s = TWO_TENANTS["kubernetes"]
    assert cfg["kubernetes"] == {
        "namespace": "spark-drivers",
        "image": "apache/spark:4.0.1",
        "image_pull_policy": "IfNotPresent",
        "spark_submit": "/opt/spark/bin/spark-submit",
        "thrift_port": 10000,
        "driver_port": 7078,
        "block_manager_port": 7079,
        "ui_port": 4040,
        "startup_timeout": "5m",
        "not_ready_timeout": "2m",
        "manage_service_accounts": False,  # the chart creates the tenant ServiceAccounts
        "leader_election": True,
        "lease_name": "sparkgate-leader",
        "lease_namespace": NAMESPACE,
        "lease_duration": "15s",
        "scheduler_name": "yunikorn",
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}},
        "node_selector": k8s["nodeSelector"],
        "tolerations": k8s["tolerations"],
        "labels": k8s["labels"],
        "stop_grace": "30s",
        "driver_auth_jar": "/driver-auth/sparkgate-driver-auth.jar",  # the init container's
    }
    assert [t["name"] for t in cfg["tenants"]] == ["analytics", "engineering"]
    for got, want in zip(cfg["tenants"], TWO_TENANTS["tenants"]):
        assert got == {
            "name": want["name"],
            "groups": want["groups"],
            "users": want.get("users", []),
            "launcher": "kubernetes",
            "driver_memory": want["driverMemory"],
            "spark_conf": want["sparkConf"],
            "hive_conf": want["hiveConf"],
            "service_account": f"sparkgate-{want['name']}",
            "service_account_annotations": {"eks.amazonaws.com/role-arn": ROLES[want["name"]]},
            "scaling": {snake(k): v for k, v in want["scaling"].items()},
        }
    # Listeners on every interface at the chart's ports; Secrets as mounted files.
    assert cfg["server"]["bind"] == "0.0.0.0:10009"
    assert cfg["http"]["bind"] == "0.0.0.0:10010"
    assert cfg["admin"] == {"bind": "0.0.0.0:10011", "api": False}
    assert cfg["tls"] == {"cert_file": "/run/secrets/sparkgate/tls/tls.crt", "key_file": "/run/secrets/sparkgate/tls/tls.key"}
    assert cfg["http"]["cookie_key_file"] == "/run/secrets/sparkgate/cookie-key/cookie-key"
    ldap = cfg["auth"]["methods"][0]
    assert ldap["type"] == "ldap" and ldap["bind_dn"] == "cn=reader,dc=example,dc=org"
    assert ldap["bind_password_file"] == "/run/secrets/sparkgate/auth-0-bind-password-secret/password"
    assert ldap["user_search_filter"] == "(uid={user})"
    assert cfg["pools"]["stop_drivers_on_exit"] is False


def test_config_defaults_mirror_example_toml():
    """With default values every section's keys exist in the documented example, with its
    defaults (except where the chart decides: listeners, drivers left running on exit)."""
    cfg = config(objects())
    example = tomllib.loads((REPO / "gateway" / "sparkgate.example.toml").read_text())
    for section in ["server", "http", "backend", "auth", "cache", "pools"]:
        for key, value in cfg[section].items():
            if key in ("bind", "methods") or (section, key) == ("pools", "stop_drivers_on_exit"):
                continue
            assert key in example[section], f"[{section}] {key} is not a sparkgate key"
            assert value == example[section][key], f"[{section}] {key}"
    assert cfg["auth"]["methods"] == [{"type": "none"}]
    assert "tenants" not in cfg
    assert cfg["kubernetes"]["namespace"] == NAMESPACE and cfg["kubernetes"]["lease_namespace"] == NAMESPACE
    assert cfg["kubernetes"]["manage_service_accounts"] is False
    # null drops a key, so sparkgate's own default applies
    assert "max_fetch_rows" not in config(objects({"server": {"maxFetchRows": None}}))["server"]


def test_config_quoting_survives_hostile_strings():
    nasty = 'a "quoted" \\ back\\slash\nnew line\ttab é ☃ <&> = [x] # not a comment'
    values = with_values(TWO_TENANTS)
    values["tenants"][0]["sparkConf"] = {"spark.x": nasty, 'key "with" = quotes': "true", "spark.n": 5}
    values["tenants"][0]["groups"] = [nasty, "#"]
    cfg = config(objects(values))
    assert cfg["tenants"][0]["spark_conf"] == {"spark.x": nasty, 'key "with" = quotes': "true", "spark.n": "5"}
    assert cfg["tenants"][0]["groups"] == [nasty, "#"]


def test_other_auth_methods_point_at_mounted_secrets():
    values = {"auth": {"methods": [
        {"type": "users_file", "secret": {"name": "sg-users", "key": "users.toml"}},
        {"type": "jwt", "publicKeySecret": {"name": "idp", "key": "idp.pem"}, "algorithms": ["RS256"],
         "issuer": "https://idp.example.org", "audience": "sparkgate"},
        {"type": "ldap", "url": "ldap://ldap:389", "userDnPattern": "uid={user},dc=x", "caSecret": {"name": "ca", "key": "ca.crt"}},
    ]}}
    objs = objects(values)
    methods = config(objs)["auth"]["methods"]
    assert methods[0] == {"type": "users_file", "path": "/run/secrets/sparkgate/auth-0-secret/users.toml"}
    assert methods[1]["public_key_file"] == "/run/secrets/sparkgate/auth-1-public-key-secret/idp.pem"
    assert methods[1]["algorithms"] == ["RS256"] and methods[1]["audience"] == "sparkgate"
    assert methods[2]["ca_file"] == "/run/secrets/sparkgate/auth-2-ca-secret/ca.crt"
    assert_files_are_mounted(objs)


def assert_files_are_mounted(objs: list[dict]):
    """Every *_file / path in the TOML is a key of a Secret volume mounted at its directory."""
    cfg = config(objs)
    pod = one(objs, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = [cfg["tls"].get("cert_file"), cfg["tls"].get("key_file"), cfg["http"].get("cookie_key_file"),
             cfg["admin"].get("token_file")]
    for m in cfg["auth"]["methods"]:
        files += [v for k, v in m.items() if k.endswith("_file") or k == "path"]
    files = [f for f in files if f]
    assert files
    for f in files:
        directory, key = f.rsplit("/", 1)
        volume = volumes[mounts[directory]]
        assert {"key": key, "path": key} in volume["secret"]["items"], f
    # No Secret's content is ever in a rendered object.
    assert not [o for o in objs if o["kind"] == "Secret"]


def test_two_tenant_secrets_are_mounted():
    assert_files_are_mounted(objects(TWO_TENANTS))


def test_tenant_service_accounts_carry_their_roles():
    objs = objects(TWO_TENANTS)
    for tenant, arn in ROLES.items():
        sa = one(objs, "ServiceAccount", f"sparkgate-{tenant}")
        assert sa["metadata"]["namespace"] == "spark-drivers"
        assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": arn}
        assert sa["metadata"]["labels"]["sparkgate.io/tenant"] == tenant
        assert sa["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    # A tenant may name its ServiceAccount; config and object agree.
    values = with_values(TWO_TENANTS)
    values["tenants"][1]["serviceAccount"] = "eng-spark"
    objs = objects(values)
    assert one(objs, "ServiceAccount", "eng-spark")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLES["engineering"]
    assert config(objs)["tenants"][1]["service_account"] == "eng-spark"
    # Not created by the chart: sparkgate manages them, and the config says so.
    objs = objects(with_values(TWO_TENANTS, **{"tenantServiceAccounts.create": False}))
    assert sorted(o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount") == [FULLNAME]
    assert config(objs)["kubernetes"]["manage_service_accounts"] is True


LAUNCHER_RULES = [
    ({""}, {"pods"}, {"get", "list", "watch", "create", "delete", "patch"}),
    ({""}, {"pods/status"}, {"get"}),
    ({""}, {"services"}, {"get", "list", "watch", "create", "delete", "patch"}),
    # Each driver's own Secret, by name only (no list: sparkgate reads no Secret it did not make).
    ({""}, {"secrets"}, {"get", "create", "patch"}),
    ({""}, {"configmaps"}, {"get", "create", "patch"}),
]


def rules_of(role: dict) -> list[tuple]:
    return [
        (set(r["apiGroups"]), set(r["resources"]), set(r["verbs"]), tuple(r.get("resourceNames", ())))
        for r in role["rules"]
    ]


@pytest.mark.parametrize("chart_creates_sas", [True, False])
def test_roles_grant_exactly_what_the_launcher_uses(chart_creates_sas):
    objs = objects(with_values(TWO_TENANTS, **{"tenantServiceAccounts.create": chart_creates_sas}))
    sa_verbs = {"get", "list", "watch"} | (set() if chart_creates_sas else {"create", "patch"})
    launcher = one(objs, "Role", f"{FULLNAME}-launcher")
    assert launcher["metadata"]["namespace"] == "spark-drivers"
    assert rules_of(launcher) == [(*r, ()) for r in LAUNCHER_RULES] + [({""}, {"serviceaccounts"}, sa_verbs, ())]

    lease = one(objs, "Role", f"{FULLNAME}-leader-election")
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert rules_of(lease) == [
        # Its own Lease, and the one every replica reports its load in.
        ({"coordination.k8s.io"}, {"leases"}, {"get", "update", "patch"}, ("sparkgate-leader", "sparkgate-leader-load")),
        ({"coordination.k8s.io"}, {"leases"}, {"create"}, ()),  # create cannot be limited by name
    ]

    driver = one(objs, "Role", f"{FULLNAME}-spark-driver")
    assert driver["metadata"]["namespace"] == "spark-drivers"
    for role in [o for o in objs if o["kind"] in ("Role", "ClusterRole")]:
        for groups, resources, verbs, _ in rules_of(role):
            assert "*" not in groups | resources | verbs, role["metadata"]["name"]
            assert not resources & {"roles", "rolebindings", "pods/exec", "pods/attach", "nodes"}
            assert not verbs & {"escalate", "bind", "impersonate"}
            # The drivers (tenant code) read no Secret; sparkgate never lists them.
            if "secrets" in resources:
                assert role is launcher and "list" not in verbs and "watch" not in verbs
    assert not [o for o in objs if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]

    sa = {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
    for name, ns in [("launcher", "spark-drivers"), ("leader-election", NAMESPACE)]:
        binding = one(objs, "RoleBinding", f"{FULLNAME}-{name}")
        assert binding["metadata"]["namespace"] == ns
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{FULLNAME}-{name}"}
        assert binding["subjects"] == [sa]
    driver_binding = one(objs, "RoleBinding", f"{FULLNAME}-spark-driver")
    assert driver_binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"sparkgate-{t}", "namespace": "spark-drivers"} for t in ROLES
    ]


def test_network_policies_let_only_sparkgate_reach_drivers_and_only_a_tenants_executors_the_rest():
    objs = objects(TWO_TENANTS)
    policies = {o["metadata"]["name"]: o for o in objs if o["kind"] == "NetworkPolicy"}
    assert set(policies) == {f"{FULLNAME}-{kind}-{t}" for t in ROLES for kind in ("drivers", "executors")}
    selector = one(objs, "Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]
    for tenant in ROLES:
        drivers = policies[f"{FULLNAME}-drivers-{tenant}"]
        assert drivers["metadata"]["namespace"] == "spark-drivers"
        spec = drivers["spec"]
        assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/managed-by": "sparkgate", "sparkgate.io/tenant": tenant}
        assert spec["podSelector"]["matchExpressions"] == [{"key": "sparkgate.io/driver", "operator": "Exists"}]
        assert spec["policyTypes"] == ["Ingress"]
        thrift, rpc = spec["ingress"]
        # The Thrift port and the Spark UI (progress), for sparkgate only.
        assert thrift["ports"] == [{"port": 10000, "protocol": "TCP"}, {"port": 4040, "protocol": "TCP"}]
        assert thrift["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                                   "podSelector": {"matchLabels": selector}}]
        assert {p["port"] for p in rpc["ports"]} == {7078, 7079}
        assert rpc["from"] == [{"podSelector": {"matchLabels": {"sparkgate.io/tenant": tenant, "spark-role": "executor"}}}]
        executors = policies[f"{FULLNAME}-executors-{tenant}"]["spec"]
        assert executors["podSelector"]["matchLabels"] == {"sparkgate.io/tenant": tenant, "spark-role": "executor"}
        assert executors["ingress"] == [{"from": [{"podSelector": {"matchLabels": {"sparkgate.io/tenant": tenant}}}]}]
    no_ui = objects(with_values(TWO_TENANTS, **{"kubernetes.uiPort": 0}))
    for policy in (o for o in no_ui if o["kind"] == "NetworkPolicy" and "-drivers-" in o["metadata"]["name"]):
        assert policy["spec"]["ingress"][0]["ports"] == [{"port": 10000, "protocol": "TCP"}]
    off = objects(with_values(TWO_TENANTS, **{"networkPolicy.enabled": False}))
    assert not [o for o in off if o["kind"] == "NetworkPolicy"]


def test_driver_auth_provider_is_built_with_the_driver_image():
    objs = objects(TWO_TENANTS)
    pod = one(objs, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == TWO_TENANTS["kubernetes"]["image"]
    # The driver Thrift port's password provider and the driver UI's filter, in one jar.
    assert init["command"][-2:] == ["/etc/sparkgate/DriverAuth.scala", "/etc/sparkgate/UiAuth.scala"]
    assert "/driver-auth/sparkgate-driver-auth.jar" in init["command"]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    for name in ("DriverAuth.scala", "UiAuth.scala"):
        source = one(objs, "ConfigMap", FULLNAME)["data"][name]
        assert source.strip() == (REPO / "gateway/src/launcher" / name).read_text().strip()
    (c,) = pod["containers"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/driver-auth")
    assert mount["readOnly"] is True
    assert config(objs)["kubernetes"]["driver_auth_jar"] == "/driver-auth/sparkgate-driver-auth.jar"


def test_no_lease_role_without_leader_election():
    objs = objects(with_values(TWO_TENANTS, **{"kubernetes.leaderElection": False}))
    assert not [o for o in objs if o["metadata"]["name"].endswith("-leader-election")]
    assert config(objs)["kubernetes"]["leader_election"] is False


def test_deployment():
    objs = objects(TWO_TENANTS)
    deploy = one(objs, "Deployment", FULLNAME)
    assert deploy["spec"]["replicas"] == 2
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["--config", "/etc/sparkgate/sparkgate.toml"]
    assert pod["serviceAccountName"] == FULLNAME
    assert one(objs, "ServiceAccount", FULLNAME)["metadata"]["namespace"] == NAMESPACE
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"thrift-binary": 10009, "thrift-http": 10010, "admin": 10011}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    assert next(v for v in pod["volumes"] if v["name"] == tmp["name"]) == {"name": tmp["name"], "emptyDir": {}}
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    # shutdown_grace (30s) + 2 x shutdown_close_timeout (10s) + 50s: above sparkgate's own bound,
    # grace + 2 x close + 30s (pool loops) + 10s (Lease) + 5s (tasks) + driver Pod deletes.
    assert pod["terminationGracePeriodSeconds"] == 100
    for grace, want in [("2m", 190), ("1h 30m", 5470), ("45s", 115)]:
        d = one(objects(with_values(TWO_TENANTS, **{"server.shutdownGrace": grace})), "Deployment", FULLNAME)
        assert d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == want, grace
    d = one(objects(with_values(TWO_TENANTS, **{"server.shutdownCloseTimeout": "30s"})), "Deployment", FULLNAME)
    assert d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30 + 60 + 50
    d = one(objects(with_values(TWO_TENANTS, terminationGracePeriodSeconds=900)), "Deployment", FULLNAME)
    assert d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 900


def test_config_change_rolls_pods():
    def checksum(values):
        return one(objects(values), "Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum(TWO_TENANTS)
    assert checksum(TWO_TENANTS) == base
    assert checksum(with_values(TWO_TENANTS, **{"pools.maxWaiting": 10})) != base
    assert checksum(with_values(TWO_TENANTS, **{"kubernetes.podTemplate": {"spec": {"priorityClassName": "x"}}})) != base


def test_admin_api_needs_a_token_secret_else_the_port_serves_health_and_metrics_only():
    objs = objects(TWO_TENANTS)
    assert config(objs)["admin"] == {"bind": "0.0.0.0:10011", "api": False}
    own = objects(with_values(TWO_TENANTS, **{"admin.tokenSecret": {"name": "ops-token", "key": "bearer"}}))
    assert config(own)["admin"] == {"bind": "0.0.0.0:10011", "token_file": "/run/secrets/sparkgate/admin-token/bearer", "api": True}
    pod = one(own, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert {"name": "admin-token", "secret": {"secretName": "ops-token", "items": [{"key": "bearer", "path": "bearer"}]}} in pod["volumes"]
    assert_files_are_mounted(own)


def test_service_and_pdb():
    objs = objects(TWO_TENANTS)
    svc = one(objs, "Service", FULLNAME)
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("thrift-binary", 10009, "thrift-binary"), ("thrift-http", 10010, "thrift-http")]
    exposed = one(objects(with_values(TWO_TENANTS, **{"service.exposeAdmin": True})), "Service", FULLNAME)
    assert [p["name"] for p in exposed["spec"]["ports"]][-1] == "admin"
    pdb = one(objs, "PodDisruptionBudget", FULLNAME)
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == one(objs, "Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]
    # One replica: a PDB with minAvailable 1 would block every node drain, so none.
    assert not [o for o in objects(with_values(TWO_TENANTS, replicaCount=1)) if o["kind"] == "PodDisruptionBudget"]


def test_replicas_share_http_sessions_and_roll_one_at_a_time():
    """Several replicas: one key to seal HTTP handles (the chart's own Secret unless one is
    given), shared_sessions on, a rolling update that keeps every old Pod until a new one is
    ready, and the PDB. One replica: none of it."""
    values = with_values(TWO_TENANTS, replicaCount=3, **{"http.cookieKeySecret": {"name": "", "key": "cookie-key"}})
    objs = objects(values)
    secret = one(objs, "Secret", f"{FULLNAME}-cookie-key")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(base64.b64decode(secret["data"]["cookie-key"])) >= 32
    http = config(objs)["http"]
    assert http["shared_sessions"] is True
    assert http["cookie_key_file"].endswith("/cookie-key")
    pod = one(objs, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert {"name": "cookie-key", "secret": {"secretName": f"{FULLNAME}-cookie-key",
                                             "items": [{"key": "cookie-key", "path": "cookie-key"}]}} in pod["volumes"]
    deployment = one(objs, "Deployment", FULLNAME)
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert one(objs, "PodDisruptionBudget", FULLNAME)["spec"]["minAvailable"] == 1
    # A key of the operator's own is used as given; sharing can be switched off.
    own = objects(with_values(values, **{"http.cookieKeySecret": {"name": "ops-cookie", "key": "k"},
                                         "http.sharedSessions": False}))
    assert not [o for o in own if o["kind"] == "Secret"]
    assert config(own)["http"]["shared_sessions"] is False
    single = objects(with_values(values, replicaCount=1))
    assert not [o for o in single if o["kind"] in ("Secret", "PodDisruptionBudget")]
    assert config(single)["http"]["shared_sessions"] is False


def test_pod_template_file():
    template = {"spec": {"priorityClassName": "spark", "containers": [{"name": "spark-kubernetes-driver"}]}}
    objs = objects(with_values(TWO_TENANTS, **{"kubernetes.podTemplate": template}))
    cm = one(objs, "ConfigMap", FULLNAME)
    assert yaml.safe_load(cm["data"]["driver-pod-template.yaml"]) == template
    assert config(objs)["kubernetes"]["pod_template_file"] == "/etc/sparkgate/driver-pod-template.yaml"
    assert "pod_template_file" not in config(objects(TWO_TENANTS))["kubernetes"]


def test_notes_print_jdbc_urls():
    notes = render(TWO_TENANTS)["sparkgate/templates/NOTES.txt"]
    host = f"{FULLNAME}.{NAMESPACE}.svc"
    assert f"jdbc:hive2://{host}:10009/default;ssl=true" in notes
    assert f"jdbc:hive2://{host}:10010/default;transportMode=http;httpPath=cliservice;ssl=true" in notes
    assert "WARNING" not in notes
    notes = render()["sparkgate/templates/NOTES.txt"]
    assert f"jdbc:hive2://{host}:10009/default'" in notes
    assert 'auth method "none"' in notes  # the default refuses to start on a network listener


@pytest.mark.parametrize(
    "values, where",
    [
        ({"replicas": 2}, "additional properties 'replicas'"),
        ({"tenants": [{"name": "a", "iamRole": "x"}]}, "/tenants/0"),
        ({"tenants": [{"name": "Not_A_DNS_Label"}]}, "/tenants/0/name"),
        ({"server": {"shutdownGrace": "30 parsecs"}}, "/server/shutdownGrace"),
        ({"kubernetes": {"leaseName": "sparkgate-leader", "namespace": "x"}}, "/kubernetes"),
        ({"auth": {"methods": [{"type": "users_file", "path": "/etc/users.toml"}]}}, "/auth/methods/0"),
        ({"auth": {"methods": [{"type": "ldap", "url": "ldap://x", "bindPassword": "hunter2"}]}}, "/auth/methods/0"),
    ],
)
def test_schema_is_strict(values, where):
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as e:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert where in str(e.value)


def sparkgate_bin() -> Path | None:
    path = Path(os.environ.get("SPARKGATE_BIN") or REPO / "target" / "release" / "sparkgate")
    return path if path.exists() else None


def check_config(objs: list[dict], tmp_path: Path):
    """sparkgate --check-config accepts the rendered sparkgate.toml (its Secrets' files are not
    here, so without reading them)."""
    binary = sparkgate_bin()
    assert binary is not None, "no sparkgate binary: build it (cargo build --release -p sparkgate) or set SPARKGATE_BIN"
    toml = tmp_path / "sparkgate.toml"
    toml.write_text(one(objs, "ConfigMap", FULLNAME)["data"]["sparkgate.toml"])
    run = subprocess.run([binary, "--config", toml, "--check-config", "--without-files"], check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("which", VALUE_SETS)
def test_sparkgate_accepts_rendered_config(which, tmp_path):
    # sparkgate itself must accept every config the chart renders.
    # The default values keep auth method `none` on 0.0.0.0, which sparkgate rightly refuses to
    # start with (NOTES.txt says so); allow it here so the check is about the file's shape.
    check_config(objects(VALUE_SETS[which] or {"server": {"allowNoneAuthOnNetwork": True}}), tmp_path)


def test_driver_connection_pool_and_stop_settings(tmp_path):
    values = with_values(TWO_TENANTS, **{
        "backend.maxConnectionsPerDriver": 16, "backend.serviceUser": "sparkgate-gw",
        "pools.reconcileEvery": "2s", "kubernetes.stopGrace": "1m 15s",
    })
    objs = objects(values)
    cfg = config(objs)
    assert (cfg["backend"]["max_connections_per_driver"], cfg["backend"]["service_user"]) == (16, "sparkgate-gw")
    assert cfg["pools"]["reconcile_every"] == "2s"
    assert cfg["kubernetes"]["stop_grace"] == "1m 15s"
    check_config(objs, tmp_path)
    # The schema refuses a connection limit of 0 (as sparkgate does), an empty user, a non-duration.
    for key, bad in [("backend.maxConnectionsPerDriver", 0), ("backend.serviceUser", ""), ("pools.reconcileEvery", "often")]:
        with pytest.raises(helm.HelmValuesError):
            render(with_values(TWO_TENANTS, **{key: bad}))


# ---------------------------------------------------------- chart and config: one truth -------
# Every key of sparkgate's config (read from the binary by integration/config_keys.py) is set by
# the chart's value of the same name (`foo_bar` -> `fooBar`, inside arrays and auth method
# variants alike), or by the value SET_THROUGH names, or is NOT_SETTABLE for the reason given; and
# under the config's sections the schema allows no key sparkgate does not have.

# Config keys set through a value of another name.
SET_THROUGH = {
    # Listeners: 0.0.0.0 on the container ports, which the Service and the probes use.
    "server.bind": "ports.binary",
    "http.bind": "http.enabled",  # on ports.http
    "admin.bind": "ports.admin",
    "admin.token_file": "admin.tokenSecret",
    # On with a token Secret, off (health and metrics only) without one.
    "admin.api": "admin.tokenSecret",
    # Secrets are only named: the chart mounts each and writes the path of the mounted file.
    "http.cookie_key_file": "http.cookieKeySecret",
    "tls.cert_file": "tls.secretName",
    "tls.key_file": "tls.secretName",
    "auth.methods[ldap].ca_file": "auth.methods[ldap].caSecret",
    "auth.methods[ldap].bind_password_file": "auth.methods[ldap].bindPasswordSecret",
    "auth.methods[users_file].path": "auth.methods[users_file].secret",
    "auth.methods[jwt].hs256_secret_file": "auth.methods[jwt].hs256Secret",
    "auth.methods[jwt].public_key_file": "auth.methods[jwt].publicKeySecret",
    "auth.methods[jwt].jwks_file": "auth.methods[jwt].jwksSecret",
    # The Pod object itself: the chart writes it into the ConfigMap next to sparkgate.toml.
    "kubernetes.pod_template_file": "kubernetes.podTemplate",
    # The drivers' namespace also holds the chart's launcher Role and the tenant ServiceAccounts.
    "kubernetes.namespace": "drivers.namespace",
    # Inverted: whoever does not make the tenant ServiceAccounts, the chart or sparkgate, the other does.
    "kubernetes.manage_service_accounts": "tenantServiceAccounts.create",
}

# Values inside sparkgate.toml's sections that configure the chart itself, not a config key.
CHART_ONLY = {
    # The init container that builds the drivers' password provider (kubernetes.driver_auth_jar).
    "kubernetes.driverAuth",
}

# Config keys (or whole sections) no value sets, and why.
NOT_SETTABLE = {
    # Always the jar the chart's driver-auth init container builds (kubernetes.driverAuth).
    "kubernetes.driver_auth_jar",
    # Always the release namespace: the chart's leader-election Role grants the Lease there.
    "kubernetes.lease_namespace",
    # Each replica's own name in the Lease: sparkgate's default is $POD_NAME, which the Deployment
    # sets; one value in the shared ConfigMap would give every replica the same identity.
    "kubernetes.identity",
    # The chart runs sparkgate for the Kubernetes launcher (README, Helm chart); the local
    # launcher's drivers would be child processes inside the gateway container.
    "local",
}

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


class _Absent:
    def __repr__(self):
        return "absent"


NO_VALUE = _Absent()  # a key not in a rendered config


@pytest.fixture(scope="module")
def keys() -> list[Key]:
    binary = sparkgate_bin()
    assert binary is not None, "no sparkgate binary: build it (cargo build --release -p sparkgate) or set SPARKGATE_BIN"
    found = config_keys(binary)
    # A change in serde's wording would make the walk find less; these must be there.
    paths = {k.path for k in found}
    assert {"server.bind", "tenants[].scaling.min_drivers", "auth.methods[ldap].url", "kubernetes.labels"} <= paths
    return found


def camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(w.capitalize() for w in rest)


def parse_path(path: str) -> tuple[Step, ...]:
    """`auth.methods[ldap].caSecret` -> steps (a variant's tag, in values as in the config, is `type`)."""
    steps: list[Step] = []
    for name, item, variant in re.findall(r"\.?(\w+)|(\[\])|\[(\w+)\]", path):
        if name:
            steps.append(Step(name))
        elif item:
            steps.append(Step(None))
        else:
            steps += [Step(None), Step(variant, "type")]
    return tuple(steps)


def camel_steps(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    return tuple(Step(camel(s.name)) if s.name and not s.tag else s for s in steps)


def config_steps(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    return tuple(Step(snake(s.name)) if s.name and not s.tag else s for s in steps)


def values_steps(key: Key) -> tuple[Step, ...]:
    """Where in the values a config key is set."""
    if key.path in SET_THROUGH:
        return parse_path(SET_THROUGH[key.path])
    return camel_steps(key.steps)


def not_settable(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in NOT_SETTABLE)


def resolve(node: dict) -> dict:
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def branch(node: dict, variant: Step) -> dict | None:
    """The `oneOf` alternative of a tagged object whose tag is the variant."""
    return next((b for b in resolve(node).get("oneOf", [])
                 if b.get("properties", {}).get(variant.tag, {}).get("const") == variant.name), None)


def schema_at(steps: tuple[Step, ...]) -> dict | None:
    node = SCHEMA
    for step in steps:
        node = resolve(node)
        if step.tag is not None:
            node = branch(node, step)
        elif step.name is None:
            node = node.get("items")
        else:
            node = node.get("properties", {}).get(step.name)
        if node is None:
            return None
    return resolve(node)


def sample(node: dict):
    """A value the schema allows at `node`, unlike the chart's default: the last of an enum (the
    first is usually the default), true, 4242, every property of an object."""
    node = resolve(node)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return node["enum"][-1]
    types = node.get("type", "object")
    kind = types if isinstance(types, str) else next(t for t in types if t != "null")
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return min(max(4242, node.get("minimum", 0)), node.get("maximum", 4242))
    if kind == "string":
        pattern = node.get("pattern", "")
        return next(s for s in ["x", "/x", "7s", "1g", "ldap://x"] if re.search(pattern, s))
    if kind == "array":
        return [sample(node.get("items", {"type": "string"}))]
    if node.get("properties"):
        return {k: sample(v) for k, v in node["properties"].items()}
    extra = node.get("additionalProperties")
    return {"x": sample(extra) if isinstance(extra, dict) else "x"}


def element(node: dict, field: str | None) -> dict:
    """The smallest array element the schema allows, where `field` will be set: its required
    properties (and those of the `oneOf` alternative that requires `field`, else the first)."""
    node = resolve(node)
    required = list(node.get("required", []))
    if alternatives := node.get("oneOf"):
        required += next((a for a in alternatives if field in a.get("required", [])), alternatives[0]).get("required", [])
    return {name: sample(node["properties"][name]) for name in required}


def values_setting(steps: tuple[Step, ...], value, node: dict = SCHEMA):
    """Chart values with `value` at `steps`; an array gets one element, valid but for that value."""
    if not steps:
        return value
    step, rest = steps[0], steps[1:]
    node = resolve(node)
    if step.name is not None:
        return {step.name: values_setting(rest, value, node["properties"][step.name])}
    item = node["items"]
    if rest and rest[0].tag is not None:
        item, rest = branch(item, rest[0]), rest[1:]
    base = element(item, rest[0].name if rest else None)
    return [{**base, **values_setting(rest, value, item)}]


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as loaded:  # once: the tests below render it hundreds of times
        yield loaded


def rendered(chart, steps: tuple[Step, ...], value) -> dict:
    """sparkgate.toml rendered with `value` at `steps`."""
    manifest = chart.render(values_setting(steps, value), name=RELEASE, namespace=NAMESPACE, is_install=True)[
        "sparkgate/templates/configmap.yaml"]
    return tomllib.loads(yaml.load(manifest, Loader=yaml.CSafeLoader)["data"]["sparkgate.toml"])


def rendered_or_refused(chart, steps: tuple[Step, ...], value) -> dict:
    """The same, or {} if the chart refuses the value (null where one is required)."""
    try:
        return rendered(chart, steps, value)
    except (helm.HelmValuesError, helm.HelmRenderError):
        return {}


def lookup(cfg, steps: tuple[Step, ...]):
    for step in steps:
        if step.tag is not None:
            if cfg.get(step.tag) != step.name:
                return NO_VALUE
        elif step.name is None:
            if not isinstance(cfg, list) or len(cfg) != 1:
                return NO_VALUE
            cfg = cfg[0]
        elif not isinstance(cfg, dict) or step.name not in cfg:
            return NO_VALUE
        else:
            cfg = cfg[step.name]
    return cfg


def test_every_config_key_can_be_set_through_the_chart(keys, chart):
    """Setting a key's value (to a sample unlike the default) puts the key in sparkgate.toml or
    changes it there; setting it to null (or leaving out an element's required value) does not."""
    problems = []
    for key in keys:
        if not_settable(key.path):
            continue
        if key.tag:  # every variant of a tagged enum can be chosen
            for variant in key.choices:
                steps = key.steps[:-1] + (Step(variant, key.steps[-1].name), key.steps[-1])
                if schema_at(steps[:-1]) is None:
                    problems.append(f"{format_path(steps[:-1])}: no such variant in values.schema.json")
                elif lookup(rendered_or_refused(chart, steps, variant), key.steps) != variant:
                    problems.append(f"{format_path(steps[:-1])}: choosing it does not reach sparkgate.toml")
            continue
        steps = values_steps(key)
        node = schema_at(steps)
        where = f"{key.path} (values {format_path(steps)})"
        if node is None:
            problems.append(f"{where}: not in values.schema.json")
            continue
        try:
            got = lookup(rendered(chart, steps, sample(node)), key.steps)
        except helm.HelmError as e:
            problems.append(f"{where}: the chart refuses {sample(node)!r}: {' '.join(str(e).split())[:300]}")
            continue
        without = lookup(rendered_or_refused(chart, steps, None), key.steps)
        if got is NO_VALUE or got == without:
            problems.append(f"{where}: setting it does not reach sparkgate.toml (set: {got!r}, null: {without!r})")
    assert problems == [], "config keys the chart cannot set (add them, or to SET_THROUGH / NOT_SETTABLE):\n  " + "\n  ".join(problems)


def test_schema_allows_only_config_keys(keys):
    """Under the sections that are sparkgate.toml's, every key the schema allows is a config key
    (`fooBar` -> `foo_bar`) or a value in SET_THROUGH; its enum lists only values sparkgate takes,
    and each auth method variant is one sparkgate has."""
    leaves = {k.path: k for k in keys}
    tables = {format_path(k.steps[:i]) for k in keys for i in range(1, len(k.steps))}
    through = {format_path(parse_path(v)) for v in SET_THROUGH.values()} | CHART_ONLY
    problems = []

    def walk(node: dict, steps: tuple[Step, ...]):
        node = resolve(node)
        if "items" in node:
            return walk(node["items"], steps + (Step(None),))
        for alternative in node.get("oneOf", []):
            tags = [(k, p["const"]) for k, p in alternative.get("properties", {}).items() if "const" in p]
            if tags:
                (tag, variant), = tags
                walk(alternative, steps + (Step(variant, tag),))
        for name, child in node.get("properties", {}).items():
            vsteps = steps + (Step(name),)
            if steps and steps[-1].tag == name:  # the tag of a variant
                tag = leaves.get(format_path(steps[:-1] + (Step(name),)))
                if tag is None or not tag.tag or steps[-1].name not in tag.choices:
                    problems.append(f"{format_path(steps)}: sparkgate has no such variant")
                continue
            if format_path(vsteps) in through:
                continue
            path = format_path(config_steps(vsteps))
            if path in leaves:
                allowed = leaves[path].choices
                listed = resolve(child).get("enum")
                if allowed and listed and not set(listed) <= set(allowed):
                    problems.append(f"{format_path(vsteps)}: enum {listed}, sparkgate takes {list(allowed)}")
            elif path in tables:
                walk(child, vsteps)
            else:
                problems.append(f"{format_path(vsteps)}: {path} is no sparkgate config key")

    sections = {k.steps[0].name for k in keys}
    for name, node in SCHEMA["properties"].items():
        if snake(name) in sections:
            walk({"type": "object", "properties": {name: node}}, ())
    assert problems == [], "values.schema.json allows keys sparkgate does not have:\n  " + "\n  ".join(problems)


def test_exclusions_name_real_keys(keys):
    """SET_THROUGH and NOT_SETTABLE name config keys that exist, and the schema does not also
    offer them under their own name (then they would be settable twice, or not excluded)."""
    paths = {k.path for k in keys}
    for path in SET_THROUGH:
        assert path in paths, f"SET_THROUGH: {path} is no config key any more"
    for path in NOT_SETTABLE:
        assert any(p == path or p.startswith(path + ".") for p in paths), f"NOT_SETTABLE: {path} is no config key any more"
    for key in keys:
        if key.path in SET_THROUGH or not_settable(key.path):
            own = camel_steps(key.steps)
            assert schema_at(own) is None, f"{key.path}: values.schema.json has {format_path(own)}; drop its exclusion"
