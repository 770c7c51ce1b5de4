"""The Helm chart (charts/sparkgate), offline: rendered and linted by Helm's own Go SDK
(helm-python-sdk), every manifest validated strictly against the Kubernetes OpenAPI schemas
(kubernetes-validate, 1.20 — the version of our test API server — and 1.28), and the rendered
sparkgate.toml parsed back and compared with the values. Installing into a real API server is
another test's job.
"""

from __future__ import annotations

import copy
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
        expected.append("PodDisruptionBudget")
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
    assert sm["spec"]["selector"]["matchLabels"] == one(objs, "Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]
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
    assert cfg["admin"] == {"bind": "0.0.0.0:10011"}
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
    for section in ["server", "http", "backend", "auth", "pools"]:
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
    files = [cfg["tls"].get("cert_file"), cfg["tls"].get("key_file"), cfg["http"].get("cookie_key_file")]
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
        ({"coordination.k8s.io"}, {"leases"}, {"get", "update", "patch"}, ("sparkgate-leader",)),
        ({"coordination.k8s.io"}, {"leases"}, {"create"}, ()),  # create cannot be limited by name
    ]

    driver = one(objs, "Role", f"{FULLNAME}-spark-driver")
    assert driver["metadata"]["namespace"] == "spark-drivers"
    for role in [o for o in objs if o["kind"] in ("Role", "ClusterRole")]:
        for groups, resources, verbs, _ in rules_of(role):
            assert "*" not in groups | resources | verbs, role["metadata"]["name"]
            assert not resources & {"secrets", "roles", "rolebindings", "pods/exec", "pods/attach", "nodes"}
            assert not verbs & {"escalate", "bind", "impersonate"}
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
    # shutdown_grace (30s) + 30s
    assert pod["terminationGracePeriodSeconds"] == 60
    for grace, want in [("2m", 150), ("1h 30m", 5430), ("45s", 75)]:
        d = one(objects(with_values(TWO_TENANTS, **{"server.shutdownGrace": grace})), "Deployment", FULLNAME)
        assert d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == want, grace
    d = one(objects(with_values(TWO_TENANTS, terminationGracePeriodSeconds=900)), "Deployment", FULLNAME)
    assert d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 900


def test_config_change_rolls_pods():
    def checksum(values):
        return one(objects(values), "Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum(TWO_TENANTS)
    assert checksum(TWO_TENANTS) == base
    assert checksum(with_values(TWO_TENANTS, **{"pools.maxWaiting": 10})) != base
    assert checksum(with_values(TWO_TENANTS, **{"kubernetes.podTemplate": {"spec": {"priorityClassName": "x"}}})) != base


def test_service_and_pdb():
    objs = objects(TWO_TENANTS)
    svc = one(objs, "Service", FULLNAME)
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("thrift-binary", 10009, "thrift-binary"), ("thrift-http", 10010, "thrift-http"), ("admin", 10011, "admin")]
    pdb = one(objs, "PodDisruptionBudget", FULLNAME)
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == one(objs, "Deployment", FULLNAME)["spec"]["selector"]["matchLabels"]
    # One replica: a PDB with minAvailable 1 would block every node drain, so none.
    assert not [o for o in objects(with_values(TWO_TENANTS, replicaCount=1)) if o["kind"] == "PodDisruptionBudget"]


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


@pytest.mark.parametrize("which", VALUE_SETS)
def test_sparkgate_accepts_rendered_config(which, tmp_path):
    # sparkgate itself must accept every config the chart renders.
    binary = sparkgate_bin()
    assert binary is not None, "no sparkgate binary: build it (cargo build --release -p sparkgate) or set SPARKGATE_BIN"
    # The default values keep auth method `none` on 0.0.0.0, which sparkgate rightly refuses to
    # start with (NOTES.txt says so); allow it here so the check is about the file's shape.
    values = VALUE_SETS[which] or {"server": {"allowNoneAuthOnNetwork": True}}
    toml = tmp_path / "sparkgate.toml"
    toml.write_text(one(objects(values), "ConfigMap", FULLNAME)["data"]["sparkgate.toml"])
    run = subprocess.run([binary, "--config", toml, "--check-config"], check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
