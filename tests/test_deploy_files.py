"""The deployment files agree with the code (docs/CONTRACT.md §7).

Nothing here builds an image or starts a container (tests/test_docker_stack.py does, in
`make test`); the files are parsed and checked against what the code actually does:

* every environment variable given to rtsig (docker-compose.yml ``environment:``, the
  ``deploy/rtsig.env.example`` env file, the Kubernetes ConfigMap and Secret) is a name that
  :meth:`Settings.from_env` reads — found by handing it a mapping that records every lookup,
  not from a hand-kept list — and the values are accepted by it;
* health checks and probes point at the health routes, the shared-memory store fits the
  ``/dev/shm`` given to it (computed with the store's own layout);
* every PromQL expression of the Grafana dashboard names only metrics in
  :data:`EXPORTED_METRICS`;
* the Dockerfile is multi-stage, runs as a non-root user, bakes the Numba cache with
  ``rtsig warm-up`` and checks ``/healthz``;
* deploy/local-images.sh has a stand-in for every base image but Grafana's.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from rtsig import counters
from rtsig.layout import Layout
from rtsig.registry import STRATEGIES
from rtsig.settings import Settings
from tests.test_settings import SECTION_5_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "rtsig.env.example"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
K8S_DIR = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

EXPORTED_METRICS: dict[str, str] = {
    "realtime_strategies_messages_received_total": "counter",
    "realtime_strategies_messages_processed_total": "counter",      # {type}: depth, trade, ticker
    "realtime_strategies_messages_errors_total": "counter",         # {reason}
    "realtime_strategies_messages_ignored_total": "counter",        # {kind}
    "realtime_strategies_processing_latency_seconds": "histogram",
    "realtime_strategies_strategy_latency_seconds": "histogram",    # {strategy}
    "realtime_strategies_signals_generated_total": "counter",       # {strategy, action}
    "realtime_strategies_signals_published_total": "counter",
    "realtime_strategies_publish_errors_total": "counter",
    "realtime_strategies_signals_suppressed_total": "counter",      # {reason}
    "realtime_strategies_signal_confidence": "histogram",           # {strategy}
    "realtime_strategies_consumer_lag_seconds": "gauge",
    "realtime_strategies_nats_connected": "gauge",
    "realtime_strategies_circuit_breaker_state": "gauge",           # {name}
    "realtime_strategies_workers_alive": "gauge",
    "realtime_strategies_config_changes_total": "counter",          # {strategy}
    "realtime_strategies_uptime_seconds": "gauge",
    "realtime_strategies_feed_age_seconds": "gauge",                 # {feed}
    "realtime_strategies_feed_data_age_seconds": "gauge",            # {feed}
    "realtime_strategies_feed_errors_total": "counter",              # {feed, reason}
}
"""Every metric family the dashboard may use, with its Prometheus type: the one list of metric
names in this file (a live ``GET /metrics`` is to be checked against it)."""

HEALTH_ROUTE = "/healthz"
READY_ROUTE = "/ready"
RTSIG_SERVICES = ("rtsig", "rtsig-2")


def series_names(metrics: Mapping[str, str] = EXPORTED_METRICS) -> set[str]:
    """The sample names a PromQL expression may use: histograms add _bucket/_sum/_count."""
    names = set()
    for name, kind in metrics.items():
        names.add(name)
        if kind == "histogram":
            names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


# --------------------------------------------------------------------------- settings names

class _RecordingEnv(Mapping):
    """An environment that remembers every name the code looks up (get, [], in)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self.looked_up: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.looked_up.add(name)
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def names_read(env: Mapping[str, str] | None = None) -> set[str]:
    """The variables ``Settings.from_env`` reads given ``env`` (an empty one reads them all)."""
    recorder = _RecordingEnv(env or {})
    Settings.from_env(recorder)
    return recorder.looked_up


def assert_settings(env: Mapping[str, str], where: str) -> Settings:
    """Every name in ``env`` is read by rtsig and every value is accepted."""
    known = names_read() | names_read(env)
    unknown = sorted(set(env) - known)
    assert not unknown, f"{where} sets variables rtsig never reads: {unknown}"
    return Settings.from_env(env)


def test_recorded_setting_names_cover_the_registry_and_section_5():
    """The recorder sees what the registry derives and every name of docs/CONTRACT.md §5."""
    read = names_read()
    for sid, st in STRATEGIES.items():
        assert st.enabled_env_name in read
        assert all(st.env_name(p.name) in read for p in st.params), sid
    assert SECTION_5_VARIABLES <= read, sorted(SECTION_5_VARIABLES - read)
    assert "NOT_A_SETTING" not in read


def test_assert_settings_rejects_an_unknown_name():
    with pytest.raises(AssertionError, match="ORDERBOOK_SKEW_BUY_TRESHOLD"):
        assert_settings({"ORDERBOOK_SKEW_BUY_TRESHOLD": "1.3"}, "a typo")


# --------------------------------------------------------------------------- helpers

_INTERPOLATION = re.compile(
    r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
SAMPLE_SECRET = "s3cr3tSample"


def interpolate(value: object) -> str:
    """Compose's ${VAR} substitution with sample values: defaults where given, else a secret."""
    text = str(value).replace("$$", "\0")

    def sub(m: re.Match) -> str:
        op, arg = m.group(2), m.group(3)
        if op in (":-", "-"):
            return arg
        return SAMPLE_SECRET

    return _INTERPOLATION.sub(sub, text).replace("\0", "$")


def as_env(environment: object) -> dict[str, str]:
    """A compose ``environment:`` (mapping or list of KEY=VALUE) as a dict of raw strings."""
    if environment is None:
        return {}
    if isinstance(environment, dict):
        return {k: "" if v is None else str(v) for k, v in environment.items()}
    out = {}
    for item in environment:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def read_env_file(path: Path, include_commented: bool) -> dict[str, str]:
    """KEY=VALUE lines of an env file; ``include_commented`` adds ``# KEY=VALUE`` examples."""
    out = {}
    pattern = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
    for line in path.read_text().splitlines():
        m = pattern.match(line.strip())
        if m and (include_commented or not m.group(1)):
            out[m.group(2)] = m.group(3).strip()
    return out


def quantity_bytes(text: str) -> int:
    """``512m`` (compose) or ``512Mi``/``1Gi`` (Kubernetes) in bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kKmMgG]i?)?[bB]?", str(text).strip())
    assert m, f"not a size: {text!r}"
    unit = (m.group(2) or "").lower().rstrip("i")
    return int(float(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit])


def segment_bytes(settings: Settings) -> int:
    """Size of the shared-memory segment ``rtsig run`` creates with these settings."""
    return Layout.from_settings(settings, counters.N_COUNTERS).total_bytes


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict]:
    """Every manifest of deploy/k8s by kind (one object per kind here)."""
    out: dict[str, dict] = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert isinstance(doc, dict) and doc.get("kind") and doc.get("apiVersion"), path
            assert doc["kind"] not in out, f"two {doc['kind']} manifests"
            out[doc["kind"]] = {**doc, "_file": path.name}
    return out


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


# --------------------------------------------------------------------------- docker-compose.yml

def test_compose_services_profiles_and_volumes(compose):
    services = compose["services"]
    assert set(services) >= {"nats", "mongodb", "mysql", "rtsig", "rtsig-2", "prometheus", "grafana"}
    for name in ("nats", "mongodb", "mysql", "rtsig"):
        assert not services[name].get("profiles"), f"{name} must start without a profile"
    assert services["rtsig-2"]["profiles"] == ["replicas"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]

    assert services["nats"]["image"].startswith("nats:2.10")
    command = services["nats"]["command"]
    command = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    assert "-js" in command or "--jetstream" in command
    assert command[command.index("-sd") + 1] == "/data"
    assert "8222" in command
    assert any(str(p).endswith(":8222") for p in services["nats"]["ports"])
    assert services["mongodb"]["image"] == "mongo:7"
    assert services["mysql"]["image"] == "mysql:8.4"

    declared = set(compose["volumes"])
    for name, svc in services.items():
        for mount in svc.get("volumes", []):
            source = str(mount).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
            else:
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
    mounts = {name: [str(m).split(":")[1] for m in svc.get("volumes", [])]
              for name, svc in services.items()}
    assert "/data" in mounts["nats"]
    assert "/data/db" in mounts["mongodb"]
    assert "/var/lib/mysql" in mounts["mysql"]
    assert "/var/lib/rtsig" in mounts["rtsig"] and "/var/lib/rtsig" in mounts["rtsig-2"]


def test_compose_rtsig_services(compose):
    services = compose["services"]
    host_ports = []
    for name in RTSIG_SERVICES:
        svc = services[name]
        assert svc["build"]["context"] == "."
        assert "deploy/rtsig.env" in svc["env_file"]
        assert quantity_bytes(svc["shm_size"]) >= 256 << 20
        for dep in ("nats", "mongodb", "mysql"):
            assert svc["depends_on"][dep]["condition"] == "service_healthy", (name, dep)
            assert services[dep].get("healthcheck", {}).get("test"), f"{dep} has no healthcheck"
        assert any(HEALTH_ROUTE in str(part) for part in svc["healthcheck"]["test"])
        assert "8080" in str(svc["healthcheck"]["test"])
        ports = [str(p) for p in svc["ports"]]
        assert all(p.endswith(":8080") for p in ports), ports
        host_ports += [p.rsplit(":", 2)[-2] for p in ports]
    assert len(set(host_ports)) == len(host_ports), "rtsig and rtsig-2 publish the same host port"
    groups = {as_env(services[name]["environment"])["NATS_CONSUMER_GROUP"] for name in RTSIG_SERVICES}
    assert len(groups) == 1, "replicas must share the queue group"


def test_compose_sets_only_settings_rtsig_reads(compose):
    env_file = read_env_file(ENV_EXAMPLE, include_commented=False)
    for name in RTSIG_SERVICES:
        environment = {k: interpolate(v) for k, v in as_env(compose["services"][name]["environment"]).items()}
        settings = assert_settings(environment, f"docker-compose.yml {name}.environment")
        # as compose gives it: the env file, overridden by `environment:`
        settings = assert_settings({**env_file, **environment}, f"{name}: env file + environment")
        assert settings.nats_url == "nats://nats:4222"
        assert settings.mongodb_uri and "@mongodb:27017" in settings.mongodb_uri
        assert settings.mysql_uri and "@mysql:3306/" in settings.mysql_uri
        assert str(settings.data_dir) == "/var/lib/rtsig"
        assert settings.http_port == 8080
        segment = segment_bytes(settings)
        shm = quantity_bytes(compose["services"][name]["shm_size"])
        assert segment < shm, f"{name}: segment {segment} B does not fit shm_size {shm} B"


def test_compose_keeps_secrets_out_of_the_file(compose):
    """Passwords and tokens are ${...} references to the .env file, never literals."""
    secret_key = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)
    for name, svc in compose["services"].items():
        for key, value in as_env(svc.get("environment")).items():
            if secret_key.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:?[?][^}]*)?\}", value), f"{name}.{key} = {value!r}"
            for password in re.findall(r"//[^:/@]+:([^@]*)@", value):
                assert password.startswith("${"), f"{name}.{key} holds a literal password"
    assert "RTSIG_API_TOKEN" not in as_env(compose["services"]["rtsig"]["environment"]), \
        "the API token comes from deploy/rtsig.env"


def test_env_file_example_sets_only_settings_rtsig_reads():
    every_line = read_env_file(ENV_EXAMPLE, include_commented=True)
    assert "RTSIG_API_TOKEN" in every_line
    known = names_read()
    unknown = sorted(set(every_line) - known)
    assert not unknown, f"{ENV_EXAMPLE.name} names variables rtsig never reads: {unknown}"
    # the commented-out examples are valid values too, and so are the active lines
    assert_settings(every_line, f"{ENV_EXAMPLE.name} (all lines)")
    assert_settings(read_env_file(ENV_EXAMPLE, include_commented=False), ENV_EXAMPLE.name)


def test_prometheus_scrapes_every_rtsig_replica(compose):
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["rtsig"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = set()
    for sd in job.get("dns_sd_configs", []):
        targets |= {f"{n}:{sd['port']}" for n in sd["names"]}
    for sc in job.get("static_configs", []):
        targets |= set(sc["targets"])
    assert targets >= {f"{name}:8080" for name in RTSIG_SERVICES}
    mounts = [str(m) for m in compose["services"]["prometheus"]["volumes"]]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_grafana_provisioning_matches_the_dashboard(compose, dashboard):
    datasources = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    assert variable["query"] == "prometheus" and variable["current"]["value"] == ds["uid"]

    providers = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "rtsig.yml").read_text())
    (provider,) = providers["providers"]
    path = provider["options"]["path"].rstrip("/")
    mounts = [str(m).split(":") for m in compose["services"]["grafana"]["volumes"]]
    dashboard_mount = next(m for m in mounts if m[0] == "./docs/grafana-dashboard.json")
    assert dashboard_mount[1].rsplit("/", 1)[0] == path
    assert any(m[0] == "./deploy/grafana/provisioning" and m[1] == "/etc/grafana/provisioning"
               for m in mounts)
    env = as_env(compose["services"]["grafana"]["environment"])
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${")


# --------------------------------------------------------------------------- Kubernetes

def test_k8s_manifests_parse_and_kustomization_lists_them(k8s):
    assert set(k8s) == {"ConfigMap", "Secret", "Deployment", "Service",
                        "HorizontalPodAutoscaler", "Kustomization"}
    kustomization = k8s["Kustomization"]
    for resource in kustomization["resources"]:
        assert (K8S_DIR / resource).exists(), resource
    assert "secret.example.yaml" not in kustomization["resources"], "placeholders must not be applied"
    listed = {(K8S_DIR / r).name for r in kustomization["resources"]}
    assert listed == {doc["_file"] for kind, doc in k8s.items()
                      if kind not in ("Kustomization", "Secret")}


def test_k8s_configmap_and_secret_set_only_settings_rtsig_reads(k8s):
    config = {k: str(v) for k, v in k8s["ConfigMap"]["data"].items()}
    secret = {k: str(v) for k, v in k8s["Secret"].get("stringData", {}).items()}
    assert_settings(config, "ConfigMap rtsig-config")
    assert_settings(secret, "Secret rtsig-secrets")
    settings = assert_settings({**config, **secret}, "ConfigMap + Secret")
    assert settings.http_port == 8080
    assert set(secret) >= {"RTSIG_API_TOKEN"}
    assert not set(config) & {"RTSIG_API_TOKEN", "MONGODB_URI", "MYSQL_URI"}, "secrets in the ConfigMap"
    # explicit env: entries of the container, if any, are settings too
    (container,) = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
    explicit = {e["name"]: str(e.get("value", "x")) for e in container.get("env", [])}
    unknown = set(explicit) - names_read()
    assert not unknown, unknown


def test_k8s_deployment(k8s):
    deployment = k8s["Deployment"]
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    labels = pod["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in deployment["spec"]["selector"]["matchLabels"].items())

    refs = {next(iter(ref)): ref[next(iter(ref))]["name"] for ref in container["envFrom"]}
    assert refs == {"configMapRef": k8s["ConfigMap"]["metadata"]["name"],
                    "secretRef": k8s["Secret"]["metadata"]["name"]}

    port = int(k8s["ConfigMap"]["data"]["HTTP_PORT"])
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named["http"] == port

    def probe_target(probe: dict) -> tuple[str, int]:
        get = probe["httpGet"]
        return get["path"], named.get(get["port"], get["port"])

    assert probe_target(container["livenessProbe"]) == (HEALTH_ROUTE, port)
    assert probe_target(container["readinessProbe"]) == (READY_ROUTE, port)
    if "startupProbe" in container:
        assert probe_target(container["startupProbe"]) == (HEALTH_ROUTE, port)

    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"

    pod_security = spec["securityContext"]
    assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and {"memory"} <= set(resources["limits"])

    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory"
    config = {k: str(v) for k, v in k8s["ConfigMap"]["data"].items()}
    segment = segment_bytes(Settings.from_env(config))
    assert segment < quantity_bytes(shm["sizeLimit"]) <= quantity_bytes(resources["limits"]["memory"])
    assert config["RTSIG_DATA_DIR"] in mounts

    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["terminationGracePeriodSeconds"] > 10, "SIGTERM drains within 10 s"
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


def test_k8s_service_and_hpa(k8s):
    service, hpa, deployment = k8s["Service"], k8s["HorizontalPodAutoscaler"], k8s["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in service["spec"]["selector"].items())
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8080 and port["targetPort"] == "http"

    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    cpu = [m for m in hpa["spec"]["metrics"] if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu and cpu[0]["resource"]["target"]["type"] == "Utilization"


# --------------------------------------------------------------------------- symbol shards

SHARDS_DIR = K8S_DIR / "shards"
SHARD_SERVICES = ("rtsig-shard-0", "rtsig-shard-1", "rtsig-shard-2")


def test_compose_shards_profile_covers_every_shard_once(compose):
    services = compose["services"]
    shards = []
    for name in SHARD_SERVICES:
        svc = services[name]
        assert svc["profiles"] == ["shards"]
        environment = {k: interpolate(v) for k, v in as_env(svc["environment"]).items()}
        env_file = read_env_file(ENV_EXAMPLE, include_commented=False)
        settings = assert_settings({**env_file, **environment}, f"docker-compose.yml {name}")
        shards.append((settings.shard_index, settings.shard_count))
        assert settings.nats_url == "nats://nats:4222" and str(settings.data_dir) == "/var/lib/rtsig"
        assert segment_bytes(settings) < quantity_bytes(svc["shm_size"])
        assert any(HEALTH_ROUTE in str(part) for part in svc["healthcheck"]["test"])
    assert sorted(shards) == [(k, len(SHARD_SERVICES)) for k in range(len(SHARD_SERVICES))]
    ports = [str(p).rsplit(":", 2)[-2] for name in RTSIG_SERVICES + SHARD_SERVICES
             for p in services[name]["ports"]]
    assert len(set(ports)) == len(ports), "two rtsig services publish the same host port"
    instances = {as_env(services[name]["environment"]).get("RTSIG_INSTANCE") for name in SHARD_SERVICES}
    assert len(instances) == len(SHARD_SERVICES)


@pytest.fixture(scope="module")
def shards_k8s() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for path in sorted(SHARDS_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            key = doc["kind"] if doc["kind"] != "Service" else f"Service/{doc['metadata']['name']}"
            assert key not in out
            out[key] = {**doc, "_file": path.name}
    return out


def test_k8s_statefulset_ordinal_is_the_shard_index(shards_k8s, k8s):
    sts, headless = shards_k8s["StatefulSet"], shards_k8s["Service/rtsig-shards"]
    replicas = sts["spec"]["replicas"]
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"] and headless["spec"]["clusterIP"] == "None"
    pod = sts["spec"]["template"]
    assert all(pod["metadata"]["labels"].get(k) == v for k, v in sts["spec"]["selector"]["matchLabels"].items())
    assert all(pod["metadata"]["labels"].get(k) == v for k, v in headless["spec"]["selector"].items())
    # the queue-group Deployment's selector must not take the shard pods for its own
    deployment_selector = k8s["Deployment"]["spec"]["selector"]["matchLabels"]
    assert sts["spec"]["selector"]["matchLabels"] != deployment_selector
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["RTSIG_SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert int(env["RTSIG_SHARD_COUNT"]["value"]) == replicas >= 2
    assert {next(iter(r)) for r in container["envFrom"]} == {"configMapRef", "secretRef"}
    config = {k: str(v) for k, v in k8s["ConfigMap"]["data"].items()}
    for k in range(replicas):  # what each pod's settings resolve to, from its name
        pod_env = {**config, "RTSIG_SHARD_INDEX": f"{sts['metadata']['name']}-{k}",
                   "RTSIG_SHARD_COUNT": env["RTSIG_SHARD_COUNT"]["value"]}
        settings = assert_settings(pod_env, f"StatefulSet pod {k}")
        assert (settings.shard_index, settings.shard_count) == (k, replicas)
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"]["path"] == HEALTH_ROUTE
    assert container["readinessProbe"]["httpGet"]["path"] == READY_ROUTE
    assert named["http"] == int(config["HTTP_PORT"])
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory"
    assert segment_bytes(Settings.from_env(config)) < quantity_bytes(shm["sizeLimit"]) \
        <= quantity_bytes(container["resources"]["limits"]["memory"])
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["terminationGracePeriodSeconds"] > 10


def test_k8s_shards_kustomization_leaves_the_queue_group_out(shards_k8s):
    kustomization = shards_k8s["Kustomization"]
    for resource in kustomization["resources"]:
        assert (SHARDS_DIR / resource).exists(), resource
    names = {Path(r).name for r in kustomization["resources"]}
    assert names == {"configmap.yaml", "service.yaml", "statefulset.yaml"}, "no Deployment, no HPA"
    parent = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert kustomization["images"] == parent["images"] and kustomization["namespace"] == parent["namespace"]
    import shutil

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the rendered output is not checked")
    rendered = subprocess.run([kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(SHARDS_DIR)],
                              capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(rendered.stdout))
    assert kinds == ["ConfigMap", "Service", "Service", "StatefulSet"]


# --------------------------------------------------------------------------- Grafana dashboard

PROMQL_FUNCTIONS = {
    "abs", "absent", "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count", "count_over_time", "delta", "deriv", "floor", "group", "histogram_quantile",
    "idelta", "increase", "irate", "label_replace", "last_over_time", "max", "max_over_time", "min",
    "min_over_time", "quantile", "quantile_over_time", "rate", "resets", "round", "scalar", "sort",
    "sort_desc", "stddev", "sum", "sum_over_time", "time", "timestamp", "topk", "vector",
}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                   "group_left", "group_right", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects; fails on an unknown function."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)      # strings
    s = re.sub(r"\{[^{}]*\}", " ", s)                                      # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                                      # ranges, subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)                                     # Grafana variables
    s = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", " ", s)        # numbers
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word = m.group(0)
        if s[m.end():].lstrip().startswith("("):
            assert word in PROMQL_FUNCTIONS, f"unknown PromQL function {word!r} in {expr!r}"
        elif word.lower() not in PROMQL_KEYWORDS:
            names.add(word)
    return names


def test_promql_metric_names_parser():
    assert promql_metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{instance=~"$instance"}[$__rate_interval])))'
    ) == {"a_bucket"}
    assert promql_metric_names("1 - (sum(rate(x[5m])) or vector(0)) / clamp_min(sum(y), 1e-9)") == {"x", "y"}
    assert promql_metric_names('topk(5, sum by (strategy) (increase(z{a="b{c}"}[$__range])))') == {"z"}


def dashboard_expressions(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            m = re.fullmatch(r"label_values\((.+),\s*\w+\)", query.strip())
            out.append((f"variable {variable['name']}", m.group(1) if m else query))
    return out


def test_dashboard_structure(dashboard):
    assert dashboard["uid"] == "rtsig"
    assert 36 <= dashboard["schemaVersion"] <= 41
    panels = dashboard["panels"]
    assert len(panels) == 14
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids)
    variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat", "bargauge", "piechart", "gauge"}, panel["title"]
        assert panel["targets"], panel["title"]
        for thing in [panel, *panel["targets"]]:
            assert thing["datasource"]["type"] == "prometheus"
            assert thing["datasource"]["uid"] == f"${{{variable['name']}}}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


def test_dashboard_uses_only_exported_metrics(dashboard):
    allowed = series_names()
    used = set()
    for where, expr in dashboard_expressions(dashboard):
        names = promql_metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - allowed
        assert not unknown, f"{where}: {sorted(unknown)} not in EXPORTED_METRICS"
        for name in names:       # _bucket/_sum/_count only on histograms, never their base name
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if EXPORTED_METRICS.get(base) == "histogram":
                assert name != base, f"{where}: a histogram is selected without a suffix"
        used |= names
    for needed in ("realtime_strategies_processing_latency_seconds_bucket",
                   "realtime_strategies_consumer_lag_seconds",
                   "realtime_strategies_signals_generated_total",
                   "realtime_strategies_signal_confidence_bucket",
                   "realtime_strategies_messages_processed_total",
                   "realtime_strategies_messages_errors_total",
                   "realtime_strategies_messages_received_total"):
        assert needed in used, needed


def test_dashboard_panels_cover_the_seed_list(dashboard):
    by_id = {p["id"]: p for p in dashboard["panels"]}
    exprs = {p["id"]: " ".join(t["expr"] for t in p["targets"]) for p in dashboard["panels"]}
    latency = [i for i, e in exprs.items()
               if "histogram_quantile(0.95" in e and "processing_latency_seconds_bucket" in e]
    assert latency, "processing latency p95"
    (lag,) = [i for i, e in exprs.items() if "consumer_lag_seconds" in e]
    steps = by_id[lag]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["color"] for s in steps] == ["green", "yellow", "red"]
    assert [s["value"] for s in steps][1:] == [0.1, 1]
    assert by_id[lag]["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
    assert any("sum by (strategy)" in e and "signals_generated" in e for e in exprs.values())
    assert any("sum by (action)" in e and "signals_generated" in e for e in exprs.values())
    assert any("topk(" in e for e in exprs.values())
    assert any("signal_confidence_bucket" in e for e in exprs.values())
    assert any(p["type"] == "piechart" and "by (type)" in exprs[p["id"]] for p in by_id.values())
    stats = [exprs[p["id"]] for p in by_id.values() if p["type"] == "stat"]
    assert any("messages_received_total" in e for e in stats)
    assert any("signals_generated_total" in e for e in stats)


# --------------------------------------------------------------------------- Dockerfile

def dockerfile_stages(text: str) -> list[dict]:
    """Instructions per stage: ``[{"name", "from", "instructions": [(KEYWORD, args)]}]``."""
    text = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: list[dict] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
            continue
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            image = re.sub(r"\$\{(\w+)\}", lambda g: args.get(g.group(1), ""), m.group(1))
            stages.append({"name": m.group(2), "from": image, "instructions": []})
            continue
        stages[-1]["instructions"].append((keyword, rest))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[dict]:
    return dockerfile_stages(DOCKERFILE.read_text())


def _runs(stage: dict) -> str:
    return "\n".join(rest for kw, rest in stage["instructions"] if kw == "RUN")


def test_dockerfile_is_multi_stage(stages):
    assert len(stages) >= 2
    builder, runtime = stages[0], stages[-1]
    assert all(s["from"] == "python:3.11-slim-bookworm" for s in stages)
    for package in ("default-libmysqlclient-dev", "pkg-config", "build-essential"):
        assert package in _runs(builder)
        assert package not in _runs(runtime), f"{package} leaked into the runtime image"
    assert re.search(r"pip install (\$\{PIP_INDEX_URL:\+--index-url \"\$PIP_INDEX_URL\"\} )?\.(\s|$)",
                     _runs(builder)), "pip install . (not editable)"
    assert "-e ." not in _runs(builder)
    assert "libmariadb3" in _runs(runtime)
    assert any(kw == "COPY" and rest.startswith(f"--from={builder['name']}")
               for kw, rest in runtime["instructions"])


def test_dockerfile_runtime_user_cache_health_and_command(stages):
    runtime = stages[-1]
    instructions = runtime["instructions"]
    keywords = [kw for kw, _ in instructions]

    users = [rest for kw, rest in instructions if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")

    env = " ".join(rest for kw, rest in instructions if kw == "ENV")
    cache_dir = re.search(r"NUMBA_CACHE_DIR=(\S+)", env).group(1)
    assert cache_dir.startswith("/") and "LOG_FORMAT=json" in env and "RTSIG_DATA_DIR=/var/lib/rtsig" in env
    assert_settings(dict(re.findall(r"(LOG_FORMAT|LOG_LEVEL|RTSIG_DATA_DIR|HTTP_PORT)=(\S+)", env)),
                    "Dockerfile ENV")

    warm_up = [i for i, (kw, rest) in enumerate(instructions) if kw == "RUN" and "rtsig warm-up" in rest]
    assert warm_up, "the Numba cache is baked with `rtsig warm-up`"
    assert keywords.index("USER") < warm_up[0], "warm up as the runtime user (the cache must stay writable)"

    (healthcheck,) = [rest for kw, rest in instructions if kw == "HEALTHCHECK"]
    assert HEALTH_ROUTE in healthcheck and "curl" not in healthcheck and "urllib" in healthcheck
    assert ("EXPOSE", "8080") in instructions
    (cmd,) = [rest for kw, rest in instructions if kw == "CMD"]
    assert json.loads(cmd) == ["rtsig", "run"]
    volumes = [rest for kw, rest in instructions if kw == "VOLUME"]
    assert any("/var/lib/rtsig" in v for v in volumes)


def builder_copies(stages: list[dict]) -> list[tuple[list[str], str]]:
    """``COPY src… dest`` of the builder stage (the build context it needs)."""
    out = []
    for kw, rest in stages[0]["instructions"]:
        if kw == "COPY" and "--from" not in rest:
            parts = [p for p in rest.split() if not p.startswith("--")]
            out.append((parts[:-1], parts[-1]))
    return out


def test_dockerignore_keeps_the_context_small_and_complete(stages):
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for excluded in (".venv", ".git", "perf/results", "var", ".numba_cache", ".pytest_cache",
                     "deploy/rtsig.env", ".env"):
        assert excluded in patterns, excluded
    for sources, _ in builder_copies(stages):
        for source in sources:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") not in patterns, f"{source} is copied but ignored"


# --------------------------------------------------------------------------- stand-in base images

def test_local_images_cover_every_base_image_but_grafana(compose, stages):
    """deploy/local-images.sh has a stand-in for every image the compose file and the Dockerfile
    use (Grafana has no Debian package), and a directory with a Dockerfile for each."""
    listed = subprocess.run(["sh", str(ROOT / "deploy" / "local-images.sh"), "--list"],
                            capture_output=True, text=True, check=True).stdout.split("\n")
    table = dict(line.split() for line in listed if line.strip())
    used = {svc["image"] for svc in compose["services"].values() if "build" not in svc}
    used |= {stage["from"] for stage in stages}
    assert used - set(table) == {"grafana/grafana:11.2.2"}, used - set(table)
    for image, directory in table.items():
        assert (ROOT / "deploy" / "stand-ins" / directory / "Dockerfile").is_file(), image
