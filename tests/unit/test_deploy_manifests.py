"""deploy/kubernetes is valid Kubernetes and agrees with the gateway, the Dockerfile and itself.

Every manifest is validated (strict: unknown fields fail) against the Kubernetes JSON schemas that
`kubernetes-validate` ships, for the oldest Kubernetes the manifests need and the newest it knows.
The other tests check the facts no schema sees and a human gets wrong: probe paths and ports, the
drain budget, selectors, the Ingress backend, affinity, env names, the image's user.
"""

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from gateway.config import ALIASES, Settings, env_name
from gateway.transports.http_api import OPERATIONS

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
# 1.30: the first release with securityContext.appArmorProfile (and hostUsers in beta).
OLDEST_KUBERNETES = "1.30.0"
DRAIN_MARGIN_S = 10  # the handover, the last events to attached clients, the CLIs' exit
# Measured (docs/DEPLOY.md, "Sizing"): a live session's CLI, and the gateway with its process
# watchdog and the CLI binary's shared pages.
LIVE_SESSION_MIB = 105
REPLICA_BASE_MIB = 200
# Settings issue 9 specifies and that are being built: the manifests set them already. Once a name
# is in Settings, test_pending_settings_are_still_pending fails: remove it here.
PENDING_SETTINGS = {"AGENT_GATEWAY_DRAIN_GRACE_S": "drain_grace_s"}


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every object in every file the kustomization lists."""
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    return [
        (name, doc)
        for name in kustomization["resources"]
        for doc in yaml.safe_load_all((KUBE / name).read_text())
        if doc is not None
    ]


def one(kind: str, name: str) -> dict[str, Any]:
    found = [doc for _, doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def gateway_container() -> dict[str, Any]:
    (container,) = one("Deployment", "agent-gateway")["spec"]["template"]["spec"]["containers"]
    return container


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return {k: v for line in re.findall(r"^ENV (.+)$", text, re.M) for k, v in re.findall(r"(\w+)=(\S+)", line)}


def gateway_env() -> dict[str, str]:
    """The environment the gateway process sees, without the values Kubernetes fills in at runtime:
    the image's ENV, then the ConfigMap and Secret (envFrom), then the container's own env."""
    env = dict(dockerfile_env())
    container = gateway_container()
    for source in container["envFrom"]:
        ref = source.get("configMapRef") or source["secretRef"]
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        obj = one(kind, ref["name"])
        env.update(obj.get("data") or obj.get("stringData") or {})
    env.update({e["name"]: e.get("value", "<runtime>") for e in container["env"]})
    return env


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def mebibytes(quantity: str) -> float:
    """A Kubernetes memory quantity (`3584Mi`, `6Gi`) in MiB."""
    found = re.fullmatch(r"([\d.]+)(Mi|Gi)", quantity)
    assert found, f"unexpected quantity {quantity!r}"
    return float(found[1]) * (1024 if found[2] == "Gi" else 1)


def nginx_bytes(size: str) -> int:
    """An nginx size (`2m`, `512k`, `1048576`) in bytes."""
    found = re.fullmatch(r"(\d+)([kmg]?)", size.lower())
    assert found, f"unexpected size {size!r}"
    return int(found[1]) * 1024 ** " kmg".index(found[2] or " ")


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((KUBE / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, kubernetes_validate.latest_version()])
def test_every_manifest_is_valid_kubernetes(version: str) -> None:
    errors = []
    for name, doc in manifests():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(map(str, exc.absolute_path))
            errors.append(f"{name}: {doc['kind']}/{doc['metadata']['name']} at {where}: {exc.message}")
    assert errors == []


def test_the_validator_rejects_a_misspelled_field() -> None:
    """Strict validation really runs: a typo a YAML parser accepts fails it."""
    deployment = one("Deployment", "agent-gateway")
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)


def test_probes_ask_the_gateways_own_endpoints_on_its_port() -> None:
    container = gateway_container()
    gets = {op.path for op in OPERATIONS if op.method == "GET" and not op.auth}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in gets
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in gets
    assert container["startupProbe"]["httpGet"]["path"] in gets
    port = int(gateway_env().get(env_name("port"), Settings().port))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert list(ports.values()) == [port]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        target = container[probe]["httpGet"]["port"]
        assert ports.get(target, target) == port, probe
    host = gateway_env().get(env_name("host"), Settings().host)
    assert host == "0.0.0.0", "the gateway must listen beyond loopback for the kubelet to reach it"


def test_the_grace_period_covers_prestop_and_drain_and_a_margin() -> None:
    pod = one("Deployment", "agent-gateway")["spec"]["template"]["spec"]
    command = gateway_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    drain = float(gateway_env().get("AGENT_GATEWAY_DRAIN_GRACE_S", getattr(Settings(), "drain_grace_s", 0)))
    assert drain > 0
    assert pod["terminationGracePeriodSeconds"] >= float(command[1]) + drain + DRAIN_MARGIN_S


def test_service_and_budget_select_the_gateway_pods_and_nothing_else() -> None:
    deployment = one("Deployment", "agent-gateway")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    redis_labels = one("StatefulSet", "agent-gateway-redis")["spec"]["template"]["metadata"]["labels"]
    assert matches(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    service = one("Service", "agent-gateway")["spec"]["selector"]
    budget = one("PodDisruptionBudget", "agent-gateway")["spec"]
    for selector in (service, budget["selector"]["matchLabels"]):
        assert matches(selector, pod_labels) and not matches(selector, redis_labels)
    assert budget["maxUnavailable"] == 1 and deployment["spec"]["replicas"] >= 3
    redis_service = one("Service", "agent-gateway-redis")["spec"]["selector"]
    assert matches(redis_service, redis_labels) and not matches(redis_service, pod_labels)


def test_the_ingress_reaches_the_service_port_with_long_unbuffered_connections() -> None:
    ingress = one("Ingress", "agent-gateway")
    ports = one("Service", "agent-gateway")["spec"]["ports"]
    container_ports = {p["name"]: p["containerPort"] for p in gateway_container()["ports"]}
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends
    for backend in backends:
        assert backend["name"] == "agent-gateway"
        assert any(backend["port"] in ({"name": p["name"]}, {"number": p["port"]}) for p in ports), backend
    for port in ports:
        assert container_ports.get(port["targetPort"], port["targetPort"]) in container_ports.values()
    notes = ingress["metadata"]["annotations"]
    settings = Settings()
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600 > 2 * settings.ws_ping_interval_s
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert nginx_bytes(notes["nginx.ingress.kubernetes.io/proxy-body-size"]) > settings.max_frame_bytes


def test_no_session_affinity_anywhere() -> None:
    for _, doc in manifests():
        if doc["kind"] == "Service":
            assert doc["spec"].get("sessionAffinity", "None") == "None", doc["metadata"]["name"]
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            assert not re.search(r"affinity|session-cookie|upstream-hash-by", key), key
            if key.endswith("/load-balance"):
                assert value == "round_robin"


def test_the_gateway_is_configured_only_through_its_settings() -> None:
    """Every variable the manifests give the gateway is a setting it reads (a misspelled one would
    be ignored without a word)."""
    known = {env_name(f) for f in Settings.__struct_fields__} | set(ALIASES.values()) | set(PENDING_SETTINGS)
    container = gateway_container()
    names = {e["name"] for e in container["env"]}
    for source in container["envFrom"]:
        ref = source.get("configMapRef") or source["secretRef"]
        obj = one("ConfigMap" if "configMapRef" in source else "Secret", ref["name"])
        names |= set(obj.get("data") or obj.get("stringData") or {})
    assert names - known == set()
    assert gateway_env()["AGENT_GATEWAY_REPLICA_ID"] == "<runtime>", "each replica needs its own replica_id"
    shared = one("Secret", "agent-gateway")["stringData"]
    for name in ("AGENT_GATEWAY_TICKET_SECRET", "AGENT_GATEWAY_TOKENS", "AGENT_GATEWAY_REDIS_URL"):
        assert shared[name], f"{name}: one value for every replica (a ticket issued by one is checked by another)"


def test_pending_settings_are_still_pending() -> None:
    """PENDING_SETTINGS exempts names that issue 9 is adding; once one exists, drop the exemption."""
    for name, field in PENDING_SETTINGS.items():
        assert env_name(field) == name
        assert field not in Settings.__struct_fields__, f"{field} is a setting now: remove it from PENDING_SETTINGS"


def service_link_names(service: dict[str, Any]) -> set[str]:
    """The variables Kubernetes puts into every pod of the namespace for a Service (service links)."""
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    names = {f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT", f"{prefix}_PORT"}
    for port in service["spec"]["ports"]:
        base = f"{prefix}_PORT_{port['port']}_{port.get('protocol', 'TCP')}"
        names |= {base, f"{base}_PROTO", f"{base}_PORT", f"{base}_ADDR"}
        if "name" in port:
            names.add(f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}")
    return names


def test_service_links_cannot_overwrite_a_setting() -> None:
    """A Service named agent-gateway gives every pod AGENT_GATEWAY_PORT=tcp://…, which the gateway
    would read as its port: pods that share the namespace must not get service links."""
    settings = {env_name(f) for f in Settings.__struct_fields__}
    services = [doc for _, doc in manifests() if doc["kind"] == "Service"]
    colliding = {n for s in services for n in service_link_names(s)} & settings
    assert "AGENT_GATEWAY_PORT" in colliding
    for _, doc in manifests():
        if doc["kind"] in ("Deployment", "StatefulSet"):
            assert doc["spec"]["template"]["spec"]["enableServiceLinks"] is False, doc["metadata"]["name"]


def test_the_pod_runs_as_the_images_user_with_its_sessions_dir_mounted() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\d+)$", dockerfile, re.M)
    assert f"--uid {user} " in dockerfile
    pod = one("Deployment", "agent-gateway")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(user) and pod["securityContext"]["runAsNonRoot"]
    container = gateway_container()
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    sessions_dir = gateway_env()[env_name("sessions_dir")]
    assert sessions_dir in mounts, "the sessions root must be writable"
    assert not any(m != sessions_dir and sessions_dir.startswith(m + "/") for m in mounts), \
        "the sessions root's parent must stay unwritable (the CLI sandbox's placeholders, docs/OPERATIONS.md)"
    if container["securityContext"].get("readOnlyRootFilesystem"):
        assert "/tmp" in mounts
    if container["securityContext"].get("procMount") == "Unmasked":
        assert pod["hostUsers"] is False, "Kubernetes allows an unmasked /proc only in a user namespace"


def test_the_redis_url_names_the_redis_service_and_password() -> None:
    url = urlsplit(one("Secret", "agent-gateway")["stringData"]["AGENT_GATEWAY_REDIS_URL"])
    service = one("Service", "agent-gateway-redis")
    statefulset = one("StatefulSet", "agent-gateway-redis")
    assert url.scheme == "redis" and url.hostname == service["metadata"]["name"]
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    assert url.password == one("Secret", "agent-gateway-redis")["stringData"]["REDIS_PASSWORD"]
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    args = statefulset["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = dict(zip(args[::2], args[1::2]))
    assert flags["--appendonly"] == "yes" and flags["--maxmemory-policy"] == "noeviction"


def test_memory_request_holds_max_sessions_live_sessions() -> None:
    resources = gateway_container()["resources"]
    max_sessions = int(gateway_env().get(env_name("max_sessions"), Settings().max_sessions))
    needed = REPLICA_BASE_MIB + max_sessions * LIVE_SESSION_MIB
    assert mebibytes(resources["requests"]["memory"]) >= needed
    assert mebibytes(resources["limits"]["memory"]) > mebibytes(resources["requests"]["memory"])
