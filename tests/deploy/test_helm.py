"""The Helm chart (``deploy/helm/sentiment-scorer``) checked offline, with the commands the README shows.

* ``helm lint --strict`` and ``helm template`` with the default values and with the production-like values of
  ``ci/`` (SASL over TLS, the model copied from object storage by an init container);
* every rendered manifest validated against the Kubernetes schemas that kubernetes-validate ships (strict: an
  unknown field is an error, as ``kubectl apply --validate=strict`` makes it), the ScaledObject and the
  TriggerAuthentication against KEDA's CRD schemas (from KEDA's Go module, ``scripts/setup_helm.sh``), made strict
  the same way (the API server would silently prune an unknown field);
* the chart's invariants: replicas capped at the input topic's partitions, the lag threshold derived from the
  values' arithmetic, the grace period above the pool's bounded stop (read from the code), probes on the port the
  scorer serves them on, a PodDisruptionBudget, scrape annotations, every ``SCORER_*`` variable a real setting;
* the alert rules: ``promtool check rules`` and ``promtool test rules``, the chart ships the same file, every metric
  they read exists;
* a smoke test tying the chart to the image: the rendered worker container (image, args, env, ports, security
  context, volumes) run with Docker against the tests' Apache Kafka, its probes answering as the chart expects.

Nothing here skips: a missing tool fails with what to run.
"""

from __future__ import annotations

import copy
import math
import os
import re
import shlex
import shutil
import stat
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.docker_engine import REPO, docker, exit_code, remove
from tests.harness import _free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.deploy]

CHART = "deploy/helm/sentiment-scorer"
CI_VALUES = f"{CHART}/ci/sasl-objectstorage-values.yaml"
HELM = ".venv/bin/helm"
KEDA_CRDS = REPO / ".cache" / "helm" / "keda-crds"
KUBERNETES_VERSION = "1.30.0"

# The README's commands for the chart (its Kubernetes section), run exactly as written from the repository root.
SETUP = "bash scripts/setup_helm.sh"
LINT = f"{HELM} lint --strict {CHART}"
LINT_CI = f"{HELM} lint --strict {CHART} --values {CI_VALUES}"
TEMPLATE = f"{HELM} template scorer {CHART} --namespace scoring"
TEMPLATE_CI = f"{TEMPLATE} --values {CI_VALUES}"
CHECK_RULES = f"promtool check rules {CHART}/files/alerts.yaml"
TEST_RULES = "promtool test rules deploy/helm/alerts_test.yaml"
README_COMMANDS = [SETUP, LINT, LINT_CI, TEMPLATE, TEMPLATE_CI, CHECK_RULES, TEST_RULES]

WORKER = "scorer-sentiment-scorer-worker"
SERVE = "scorer-sentiment-scorer-serve"


# --- tools --------------------------------------------------------------------------------------------------------
def run(command: str, *extra: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A README command (plus ``extra`` arguments) from the repository root."""
    argv = shlex.split(command) + list(extra)
    if argv[0] == HELM and not (REPO / HELM).is_file():
        pytest.fail(f"helm is missing ({HELM}): run `{SETUP}` (builds it from the Go module proxy)")
    if argv[0] == "promtool" and shutil.which("promtool") is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (apt-get install prometheus)")
    answer = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check:
        assert answer.returncode == 0, (
            f"`{shlex.join(argv)}` failed ({answer.returncode}):\n{answer.stdout}{answer.stderr}"
        )
    return answer


def render(command: str = TEMPLATE, *sets: str) -> list[dict[str, Any]]:
    """The manifests ``helm template`` renders (``sets``: more ``--set`` pairs)."""
    extra = [arg for pair in sets for arg in ("--set", pair)]
    return [doc for doc in yaml.safe_load_all(run(command, *extra).stdout) if doc]


def refused(*sets: str) -> str:
    """``helm template`` with values the chart must refuse; its error message."""
    answer = run(TEMPLATE, *[arg for pair in sets for arg in ("--set", pair)], check=False)
    assert answer.returncode != 0, f"the chart rendered {sets} instead of refusing them"
    return answer.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, rendered: {[(d['kind'], d['metadata']['name']) for d in docs]}"
    )
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def port_number(c: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return int(next(p["containerPort"] for p in c["ports"] if p["name"] == port))


def chart_values() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / CHART / "values.yaml").read_text()))


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return render()


@pytest.fixture(scope="module")
def ci_docs() -> list[dict[str, Any]]:
    return render(TEMPLATE_CI)


# --- schemas ------------------------------------------------------------------------------------------------------
def strict(schema: Any) -> Any:
    """An OpenAPI v3 schema of a CRD with unknown fields refused wherever it lists the known ones (the API server
    prunes them silently, which hides a typo)."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def keda_schemas() -> dict[str, jsonschema.protocols.Validator]:
    files = sorted(KEDA_CRDS.glob("keda.sh_*.yaml"))
    if len(files) < 2:
        pytest.fail(f"KEDA's CRDs are missing in {KEDA_CRDS}: run `{SETUP}` (fetches KEDA's Go module)")
    validators: dict[str, jsonschema.protocols.Validator] = {}
    for path in files:
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            key = f"{crd['spec']['group']}/{version['name']}/{crd['spec']['names']['kind']}"
            validators[key] = jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))
    return validators


def validate(doc: dict[str, Any], keda: dict[str, jsonschema.protocols.Validator]) -> None:
    """Kubernetes' own kinds against kubernetes-validate's schemas, KEDA's against its CRDs."""
    import kubernetes_validate

    where = f"{doc['kind']} {doc['metadata']['name']}"
    if doc["apiVersion"].startswith("keda.sh/"):
        key = f"{doc['apiVersion']}/{doc['kind']}"
        assert key in keda, f"{where}: no CRD for {key} in {KEDA_CRDS}"
        errors = sorted(keda[key].iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{where} breaks KEDA's CRD schema: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
        )
    elif doc["apiVersion"] == "monitoring.coreos.com/v1":  # the operator's CRD is not here: check its shape
        assert doc["kind"] == "PrometheusRule" and set(doc["spec"]) == {"groups"}, where
    else:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(map(str, exc.path))
            raise AssertionError(
                f"{where} is not valid Kubernetes {KUBERNETES_VERSION}: {path}: {exc.message}"
            ) from None


# --- lint, render, validate ---------------------------------------------------------------------------------------
def test_chart_lints_with_the_default_and_the_production_values() -> None:
    for command in (LINT, LINT_CI):
        answer = run(command)
        assert "0 chart(s) failed" in answer.stdout, answer.stdout


VARIANTS = {
    "defaults": (TEMPLATE, ()),
    "sasl-tls-objectstorage": (TEMPLATE_CI, ()),
    "existing-secret-prometheusrule": (
        TEMPLATE_CI,
        ("kafka.sasl.existingSecret=kafka-scorer-credentials", "alerts.kind=prometheusRule"),
    ),
    "fixed-replicas": (TEMPLATE, ("worker.autoscaling.enabled=false", "serve.autoscaling.enabled=false")),
    "existing-claim-scale-to-zero": (
        TEMPLATE,
        ("models.pvc.existingClaim=trained-models", "worker.autoscaling.minReplicaCount=0"),
    ),
}
EXPECTED_KINDS = {
    "defaults": {
        "Deployment", "PodDisruptionBudget", "ScaledObject", "Service", "HorizontalPodAutoscaler",
        "PersistentVolumeClaim", "ConfigMap",
    },
    "sasl-tls-objectstorage": {
        "Deployment", "PodDisruptionBudget", "ScaledObject", "TriggerAuthentication", "Service",
        "HorizontalPodAutoscaler", "Secret", "ConfigMap",
    },
    "existing-secret-prometheusrule": {
        "Deployment", "PodDisruptionBudget", "ScaledObject", "TriggerAuthentication", "Service",
        "HorizontalPodAutoscaler", "PrometheusRule",
    },
    "fixed-replicas": {"Deployment", "PodDisruptionBudget", "Service", "PersistentVolumeClaim", "ConfigMap"},
    "existing-claim-scale-to-zero": {
        "Deployment", "PodDisruptionBudget", "ScaledObject", "Service", "HorizontalPodAutoscaler", "ConfigMap",
    },
}  # fmt: skip


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_rendered_manifest_is_valid(variant: str, keda_schemas: dict[str, Any]) -> None:
    command, sets = VARIANTS[variant]
    docs = render(command, *sets)
    assert kinds(docs) == EXPECTED_KINDS[variant]
    for doc in docs:
        validate(doc, keda_schemas)
    if "fixed-replicas" in variant:
        assert find(docs, "Deployment", WORKER)["spec"]["replicas"] == chart_values()["worker"]["replicas"]


def test_the_validation_catches_a_misspelled_field(default_docs: list[dict[str, Any]], keda_schemas: Any) -> None:
    """The schemas bite: a typo in a ScaledObject or a Deployment is an error, not silently dropped."""
    scaled = copy.deepcopy(find(default_docs, "ScaledObject"))
    scaled["spec"]["maxReplicas"] = scaled["spec"].pop("maxReplicaCount")
    with pytest.raises(AssertionError, match="maxReplicas"):
        validate(scaled, keda_schemas)
    scaled = copy.deepcopy(find(default_docs, "ScaledObject"))
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 3090  # KEDA's metadata values are strings
    with pytest.raises(AssertionError, match="lagThreshold"):
        validate(scaled, keda_schemas)
    deployment = copy.deepcopy(find(default_docs, "Deployment", WORKER))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 100
    with pytest.raises(AssertionError, match="terminationGracePeriod"):
        validate(deployment, keda_schemas)


# --- autoscaling --------------------------------------------------------------------------------------------------
def test_keda_scales_the_worker_on_its_groups_lag_up_to_the_partition_count(default_docs: list[dict[str, Any]]) -> None:
    values = chart_values()
    scaling = values["worker"]["autoscaling"]
    scaled = find(default_docs, "ScaledObject")
    spec, trigger = scaled["spec"], scaled["spec"]["triggers"][0]
    worker = find(default_docs, "Deployment", WORKER)
    env = env_of(container(worker, "worker"))

    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKER}
    assert "replicas" not in worker["spec"], "KEDA owns the replica count: a helm upgrade must not reset it"
    assert spec["maxReplicaCount"] == values["kafka"]["inputPartitions"] == 6
    assert spec["minReplicaCount"] == scaling["minReplicaCount"]
    assert spec["fallback"]["replicas"] <= spec["maxReplicaCount"]
    # The lag threshold is the documented arithmetic: throughput x drain time / safety factor.
    derived = math.floor(scaling["throughputPerReplica"] * scaling["targetDrainSeconds"] / scaling["safetyFactor"])
    assert trigger["metadata"]["lagThreshold"] == str(derived) == "3090"
    # KEDA reads the group and topic the workers consume, the way they start.
    assert trigger["type"] == "kafka"
    meta = trigger["metadata"]
    assert meta["bootstrapServers"] == env["SCORER_BOOTSTRAP_SERVERS"]
    assert meta["consumerGroup"] == env["SCORER_GROUP_ID"]
    assert meta["topic"] == env["SCORER_INPUT_TOPIC"]
    assert meta["offsetResetPolicy"] == env["SCORER_AUTO_OFFSET_RESET"]
    assert meta["allowIdleConsumers"] == "false"
    assert meta["excludePersistentLag"] == "true"
    assert meta["tls"] == "disable" and "authenticationRef" not in trigger
    # The HPA's 10 % tolerance never takes the last step N-1 -> N when N/(N-1) <= 1.1: fine at 6 partitions.
    up = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]
    n = spec["maxReplicaCount"]
    assert "tolerance" in up or n / (n - 1) > 1.1
    assert (
        spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
    )


def test_autoscaling_follows_the_partitions_and_an_explicit_threshold() -> None:
    docs = render(TEMPLATE, "kafka.inputPartitions=24", "worker.autoscaling.lagThreshold=500")
    spec = find(docs, "ScaledObject")["spec"]
    assert spec["maxReplicaCount"] == 24
    assert spec["triggers"][0]["metadata"]["lagThreshold"] == "500"
    capped = find(render(TEMPLATE, "worker.autoscaling.maxReplicaCount=3"), "ScaledObject")["spec"]
    assert capped["maxReplicaCount"] == 3
    ci = find(render(TEMPLATE_CI), "ScaledObject")["spec"]
    assert ci["maxReplicaCount"] == 12
    assert ci["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]["tolerance"] == "0.01"


def notes(tmp_path: Path, *sets: str) -> str:
    """NOTES.txt as `helm install` prints it (`helm template` leaves it out): a copy of the chart renders it."""
    copy_dir = tmp_path / "chart"
    if not copy_dir.exists():
        shutil.copytree(REPO / CHART, copy_dir)
    (copy_dir / "templates" / "zz-notes.yaml").write_text(
        'notes: {{ include (print .Template.BasePath "/NOTES.txt") . | toJson }}\n'
    )
    extra = [arg for pair in sets for arg in ("--set", pair)]
    out = run(f"{HELM} template scorer {copy_dir} --show-only templates/zz-notes.yaml", *extra).stdout
    return str(yaml.safe_load(out)["notes"])


def test_notes_warn_when_the_last_scale_up_step_is_within_the_hpa_tolerance(tmp_path: Path) -> None:
    assert "1..6 pods, one more per 3090 messages of lag" in notes(tmp_path)
    assert "WARNING" not in notes(tmp_path)
    warned = notes(tmp_path, "kafka.inputPartitions=12")
    assert "WARNING: maxReplicaCount is 12" in warned and "11 -> 12 pods" in warned
    assert "WARNING" not in notes(tmp_path, "kafka.inputPartitions=12", "worker.autoscaling.scaleUpTolerance=0.01")


def test_the_chart_refuses_values_that_break_its_invariants() -> None:
    assert "must exceed 90" in refused("worker.terminationGracePeriodSeconds=60")
    assert "must not exceed kafka.inputPartitions" in refused("worker.autoscaling.maxReplicaCount=7")
    assert "kafka.sasl.password is required" in refused("kafka.sasl.enabled=true", "kafka.sasl.username=u")
    assert "models.objectStorage.version is required" in refused(
        "models.source=objectStorage", "models.objectStorage.url=:s3:bucket/models"
    )
    assert "use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" in refused(
        "kafka.sasl.enabled=true", "kafka.sasl.existingSecret=s", "kafka.sasl.mechanism=GSSAPI"
    )
    assert "use pvc or objectStorage" in refused("models.source=nfs")


# --- the worker and serve pods ------------------------------------------------------------------------------------
def test_worker_pod_probes_stop_and_resources_match_the_scorer(default_docs: list[dict[str, Any]]) -> None:
    from stream_worker.tools import pool

    worker = find(default_docs, "Deployment", WORKER)
    pod = worker["spec"]["template"]
    c = container(worker, "worker")
    env = env_of(c)
    port = int(env["SCORER_METRICS_PORT"])

    assert c["args"] == ["worker"]
    assert env["SCORER_METRICS_HOST"] == "0.0.0.0"
    assert pod["spec"]["terminationGracePeriodSeconds"] > pool._STOP_GRACE_S, "above the pool's bounded stop"
    probes = {kind: c[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {kind: p["httpGet"]["path"] for kind, p in probes.items()} == {
        "startupProbe": "/readyz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    assert {port_number(c, p["httpGet"]["port"]) for p in probes.values()} == {port}
    startup = probes["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180, "a cold start takes up to ~100 s"
    assert all(p["timeoutSeconds"] >= 1 for p in probes.values())
    # One pool per pod, sized by the pod's cores (os.cpu_count() would see the node's).
    assert env["SCORER_PROCESSES"] == c["resources"]["requests"]["cpu"] == env["SCORER_INFERENCE_THREADS"]
    assert "memory" in c["resources"]["limits"]
    # Scrape annotations point at the same port.
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    # The PDB covers exactly the worker pods.
    pdb = find(default_docs, "PodDisruptionBudget", WORKER)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == worker["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert worker["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    check_image_contract(pod, c, env["SCORER_MODEL_DIR"])


def check_image_contract(pod: dict[str, Any], c: dict[str, Any], model_dir: str) -> None:
    """The pod runs as the image's user, with a read-only root and /tmp writable, models where the image looks."""
    dockerfile = (REPO / "deploy" / "scorer.Dockerfile").read_text()
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert user is not None
    security = pod["spec"]["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (int(user[1]), int(user[2]))
    assert security["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert "/tmp" in mounts, "the pool writes its metrics files under /tmp"
    assert f"SCORER_MODEL_DIR={model_dir}" in re.sub(r"\s+", "", dockerfile).replace("\\", "")
    assert mounts[model_dir]["readOnly"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_serve_deployment_service_and_hpa(default_docs: list[dict[str, Any]]) -> None:
    serve = find(default_docs, "Deployment", SERVE)
    pod = serve["spec"]["template"]
    c = container(serve, "serve")
    env = env_of(c)
    port = int(env["SCORER_PORT"])
    assert c["args"] == ["serve"] and env["SCORER_HOST"] == "0.0.0.0"
    assert {c[k]["httpGet"]["path"] for k in ("startupProbe", "readinessProbe")} == {"/readyz"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {port_number(c, c[k]["httpGet"]["port"]) for k in ("startupProbe", "livenessProbe", "readinessProbe")} == {
        port
    }
    service = find(default_docs, "Service", SERVE)
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert port_number(c, service["spec"]["ports"][0]["targetPort"]) == port
    hpa = find(default_docs, "HorizontalPodAutoscaler", SERVE)
    assert hpa["spec"]["scaleTargetRef"]["name"] == SERVE
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in serve["spec"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert env["SCORER_INFERENCE_THREADS"] == c["resources"]["requests"]["cpu"]
    assert find(default_docs, "PodDisruptionBudget", SERVE)["spec"]["minAvailable"] == 1
    check_image_contract(pod, c, env["SCORER_MODEL_DIR"])


@pytest.mark.parametrize("variant", ["defaults", "sasl-tls-objectstorage"])
def test_every_scorer_variable_is_a_valid_setting(variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart's SCORER_* variables are fields of the pydantic settings, and their values pass validation."""
    from stream_worker.common.settings import ServeSettings, Settings

    command, sets = VARIANTS[variant]
    docs = render(command, *sets)
    for name, model in ((WORKER, Settings), (SERVE, ServeSettings)):
        c = container(find(docs, "Deployment", name), "worker" if name == WORKER else "serve")
        for key in [k for k in os.environ if k.startswith("SCORER_")]:
            monkeypatch.delenv(key)
        fields = {f"SCORER_{field.upper()}" for field in model.model_fields}
        for entry in c["env"]:
            assert entry["name"] in fields, f"{name}: {entry['name']} is not a setting of {model.__name__}"
            monkeypatch.setenv(entry["name"], entry.get("value", "from-a-secret"))
        model()  # raises on a value of the wrong type or outside the choices


# --- secrets and the model volume ---------------------------------------------------------------------------------
def test_sasl_password_comes_from_one_secret_for_the_workers_and_keda(ci_docs: list[dict[str, Any]]) -> None:
    values = yaml.safe_load((REPO / CI_VALUES).read_text())
    worker = find(ci_docs, "Deployment", WORKER)
    c = container(worker, "worker")
    env = env_of(c)
    secret = find(ci_docs, "Secret")
    name = secret["metadata"]["name"]
    assert secret["stringData"] == {"username": "scorer", "password": values["kafka"]["sasl"]["password"]}
    assert env["SCORER_SASL_PASSWORD"] == {"secretKeyRef": {"name": name, "key": "password"}}
    assert env["SCORER_SASL_USERNAME"] == {"secretKeyRef": {"name": name, "key": "username"}}
    assert env["SCORER_SECURITY_PROTOCOL"] == "SASL_SSL" and env["SCORER_SASL_MECHANISM"] == "SCRAM-SHA-512"
    rendered = yaml.safe_dump_all([d for d in ci_docs if d["kind"] != "Secret"])
    assert values["kafka"]["sasl"]["password"] not in rendered, "the password only in the Secret"
    assert "checksum/kafka-sasl" in worker["spec"]["template"]["metadata"]["annotations"], "a new password rolls pods"

    trigger = find(ci_docs, "ScaledObject")["spec"]["triggers"][0]
    auth = find(ci_docs, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "username": (name, "username"),
        "password": (name, "password"),
        "ca": ("kafka-cluster-ca", "ca.crt"),
    }
    # The workers read the same CA from a mounted Secret.
    ca_mount = next(m for m in c["volumeMounts"] if m["name"] == "kafka-ca")
    ca_volume = next(v for v in worker["spec"]["template"]["spec"]["volumes"] if v["name"] == "kafka-ca")
    assert ca_volume["secret"]["secretName"] == "kafka-cluster-ca"
    assert yaml.safe_load(env["SCORER_KAFKA"]) == {"ssl.ca.location": f"{ca_mount['mountPath']}/ca.crt"}

    existing = render(TEMPLATE_CI, "kafka.sasl.existingSecret=kafka-scorer-credentials")
    assert "Secret" not in kinds(existing)
    env = env_of(container(find(existing, "Deployment", WORKER), "worker"))
    assert env["SCORER_SASL_PASSWORD"]["secretKeyRef"]["name"] == "kafka-scorer-credentials"
    refs = {r["parameter"]: r["name"] for r in find(existing, "TriggerAuthentication")["spec"]["secretTargetRef"]}
    assert refs["password"] == refs["username"] == "kafka-scorer-credentials"


def test_model_volume_is_a_read_only_claim_by_default(default_docs: list[dict[str, Any]]) -> None:
    claim = find(default_docs, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for name in (WORKER, SERVE):
        spec = find(default_docs, "Deployment", name)["spec"]["template"]["spec"]
        volume = next(v for v in spec["volumes"] if v["name"] == "models")
        assert volume["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"], "readOnly": True}
        assert "initContainers" not in spec


def test_init_container_copies_one_version_and_renames_it_when_complete(
    ci_docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    assert "PersistentVolumeClaim" not in kinds(ci_docs)
    for name in (WORKER, SERVE):
        spec = find(ci_docs, "Deployment", name)["spec"]["template"]["spec"]
        assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == "models")
    spec = find(ci_docs, "Deployment", WORKER)["spec"]["template"]["spec"]
    init = spec["initContainers"][0]
    env = env_of(init)
    assert env["MODEL_VERSION"] == "8" and env["MODEL_URL"] == ":s3,provider=AWS,env_auth=true:ml-models/sentiment"
    assert env["MODEL_DIR"] == env_of(spec["containers"][0])["SCORER_MODEL_DIR"]
    assert {m["mountPath"] for m in init["volumeMounts"]} >= {env["MODEL_DIR"]}
    assert init["envFrom"] == [{"secretRef": {"name": "model-store-credentials"}}]

    # Run its script with a stand-in rclone that copies a local folder: the version lands complete, or not at all.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    rclone = bin_dir / "rclone"
    rclone.write_text('#!/bin/sh\n# rclone copy --checksum SRC DST\nmkdir -p "$4" && cp -R "$3/." "$4/"\n')
    rclone.chmod(rclone.stat().st_mode | stat.S_IXUSR)
    store, models = tmp_path / "store", tmp_path / "models"
    (store / "8" / "variables").mkdir(parents=True)
    (store / "8" / "saved_model.pb").write_bytes(b"pb")
    models.mkdir()
    script = [*init["command"], init["args"][0]]
    base_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "MODEL_URL": str(store), "MODEL_DIR": str(models)}
    done = subprocess.run(script, env={**base_env, "MODEL_VERSION": "8"}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in models.iterdir()) == ["8"]
    assert (models / "8" / "saved_model.pb").read_bytes() == b"pb"
    (store / "9").mkdir()
    failed = subprocess.run(script, env={**base_env, "MODEL_VERSION": "9"}, capture_output=True, text=True, timeout=30)
    assert failed.returncode != 0 and "no saved_model.pb" in failed.stderr
    assert not (models / "9").exists(), "an incomplete copy never gets an integer name"


# --- alert rules --------------------------------------------------------------------------------------------------
def test_alert_rules_check_and_pass_their_unit_tests() -> None:
    assert "SUCCESS" in run(CHECK_RULES).stdout
    assert "SUCCESS" in run(TEST_RULES).stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    rules = yaml.safe_load((REPO / CHART / "files" / "alerts.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == {
        "ScorerConsumerLagGrowing",
        "ScorerDeadLetterRateHigh",
        "ScorerModelLoadFailed",
        "ScorerNoReadyWorkers",
    }
    cases = yaml.safe_load((REPO / "deploy" / "helm" / "alerts_test.yaml").read_text())
    checks = [check for test in cases["tests"] for check in test["alert_rule_test"]]
    fires = {c["alertname"] for c in checks if c["exp_alerts"]}
    quiet = {c["alertname"] for c in checks if not c["exp_alerts"]}
    assert fires == alerts and quiet == alerts


def test_alert_rules_read_metrics_the_scorer_exports() -> None:
    """Every scorer_* name in an expression is exported under that name (counters with _total)."""
    sources = ["stream_worker/common/metrics.py", "stream_worker/tools/pool.py", "stream_worker/serve/service.py"]
    declared: dict[str, str] = {}
    for source in sources:
        text = (REPO / source).read_text()
        for kind, name in re.findall(r"\b(Counter|Gauge|Histogram)(?:MetricFamily)?\(\s*\"(scorer_\w+)\"", text):
            declared[name] = kind
    exported = set()
    for name, kind in declared.items():
        suffixes = {"Counter": ["_total"], "Gauge": [""], "Histogram": ["_bucket", "_sum", "_count"]}[kind]
        exported |= {name + suffix for suffix in suffixes}
    rules = yaml.safe_load((REPO / CHART / "files" / "alerts.yaml").read_text())
    used = {m for g in rules["groups"] for r in g["rules"] for m in re.findall(r"\bscorer_\w+", r["expr"])}
    assert used, "the rules read scorer metrics"
    assert used <= exported, f"not exported by the scorer: {sorted(used - exported)}"


def test_the_chart_ships_the_checked_rule_file(default_docs: list[dict[str, Any]]) -> None:
    text = (REPO / CHART / "files" / "alerts.yaml").read_text()
    config = find(default_docs, "ConfigMap")
    assert yaml.safe_load(config["data"]["sentiment-scorer-alerts.yaml"]) == yaml.safe_load(text)
    rule = find(
        render(TEMPLATE, "alerts.kind=prometheusRule", "alerts.labels.release=kube-prometheus-stack"), "PrometheusRule"
    )
    assert rule["spec"] == yaml.safe_load(text)
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_readme_shows_the_commands_the_tests_run() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [command for command in README_COMMANDS if command not in readme]
    assert not missing, f"README.md's Kubernetes section lacks the commands the tests run: {missing}"


# --- the chart and the image together -----------------------------------------------------------------------------
def docker_run_args(pod: dict[str, Any], c: dict[str, Any], models: Path) -> list[str]:
    """``docker run`` options that reproduce the rendered container: user, read-only root and emptyDirs, dropped
    capabilities, memory limit, the model volume, the environment."""
    spec = pod["spec"]
    security, own = spec["securityContext"], c["securityContext"]
    args = ["--network", "host", "--user", f"{security['runAsUser']}:{security['runAsGroup']}"]
    if own.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if own.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    args += [f"--cap-drop={cap}" for cap in own["capabilities"]["drop"]]
    memory = c["resources"]["limits"]["memory"]
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", memory).groups()  # type: ignore[union-attr]
    args += ["--memory", f"{number}{unit[0].lower()}"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in c["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            args += ["--tmpfs", mount["mountPath"]]
        elif "persistentVolumeClaim" in volume:
            args += ["-v", f"{models}:{mount['mountPath']}:{'ro' if mount.get('readOnly') else 'rw'}"]
        else:
            raise AssertionError(f"no stand-in for volume {volume}")
    for entry in c["env"]:
        assert "value" in entry, f"{entry['name']} comes from {entry.get('valueFrom')}: not in the default values"
        args += ["-e", f"{entry['name']}={entry['value']}"]
    return args


def get(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0  # not listening yet


def test_rendered_worker_container_runs_and_answers_its_probes(
    scorer_image: str, kafka_broker: Any, topic_factory: Any, mounted_models: Path, tmp_path: Path
) -> None:
    repository, tag = scorer_image.rsplit(":", 1)
    topics = [topic_factory(kafka_broker, partitions=2), topic_factory(kafka_broker), topic_factory(kafka_broker)]
    port = _free_port()
    overrides = {
        "image": {"repository": repository, "tag": tag},
        "worker": {"metricsPort": port},
        "kafka": {
            "bootstrapServers": kafka_broker.bootstrap_servers,
            "inputTopic": topics[0],
            "outputTopic": topics[1],
            "deadLetterTopic": topics[2],
            "groupId": f"g-{topics[0]}",
        },
    }
    values = tmp_path / "smoke-values.yaml"
    values.write_text(yaml.safe_dump(overrides))
    docs = [doc for doc in yaml.safe_load_all(run(TEMPLATE, "--values", str(values)).stdout) if doc]
    worker = find(docs, "Deployment", WORKER)
    pod, c = worker["spec"]["template"], container(worker, "worker")
    assert c["image"] == scorer_image
    probe_port = port_number(c, c["livenessProbe"]["httpGet"]["port"])
    assert probe_port == port
    url = f"http://127.0.0.1:{probe_port}"
    liveness, readiness = c["livenessProbe"], c["readinessProbe"]
    name = f"scorer-helm-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", name, *docker_run_args(pod, c, mounted_models), c["image"], *c["args"])
    health: list[int] = []

    def logs() -> str:
        answer = docker("logs", "--tail", "40", name, check=False)
        return f"health answers {health[-5:]}\n{answer.stdout}{answer.stderr}"

    def ready() -> bool:
        running = docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip()
        assert running == "true", f"the container exited:\n{logs()}"
        status = get(url + c["livenessProbe"]["httpGet"]["path"], liveness["timeoutSeconds"])
        if status:
            health.append(status)
        return status != 0 and get(url + readiness["httpGet"]["path"], readiness["timeoutSeconds"]) == 200

    try:
        # Generous: the startup probe allows 180 s on a cluster node; this host may be busier than one.
        wait_for(ready, 400, f"{readiness['httpGet']['path']} answering 200", logs)
        assert health and set(health) == {200}, f"liveness must pass while the model loads: {health}"
        assert get(url + "/metrics", 10) == 200
        grace = pod["spec"]["terminationGracePeriodSeconds"]
        stopped = docker("stop", "-t", str(grace), name, timeout=grace + 60)
        assert stopped.returncode == 0
        assert exit_code(name) == 0, logs()
    finally:
        remove(name)
