"""Rendering a DeepSeekDeployment into its children: content, ownership, determinism and
validity against the Kubernetes 1.37 OpenAPI schemas (kubernetes-validate)."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from deepseek_operator.api import API_VERSION, KIND, InvalidSpecError, parse_deployment
from deepseek_operator.catalog import size_deployment
from deepseek_operator.controller.handlers import WATCHED_RESOURCES
from deepseek_operator.render import (
    APPLY_ORDER,
    CHILD_KINDS,
    DEFAULT_ENGINE_IMAGES,
    DEFAULT_S3_DOWNLOAD_IMAGE,
    HPA_METRIC,
    MARKER_FILE,
    WORKLOAD_API_VERSIONS,
    RenderSettings,
    average_value,
    children_selector,
    default_qps_query,
    endpoint,
    milli_quantity,
    names,
    needs_download,
    pod_name_regex,
    pod_selector,
    qps_query,
    render,
    workload_kind,
    workload_replicas,
)
from deepseek_operator.render.engine import SGLANG_FLAGS, VLLM_FLAGS
from deepseek_operator.render.pod import startup_budget_seconds
from deepseek_operator.render.templating import environment, tojson

KUBERNETES_VERSION = "1.37.0"
SAMPLES = Path(__file__).parent.parent / "manifests" / "samples"
UID = "6f1c2a7e-0000-4000-8000-000000000001"
SETTINGS = RenderSettings()


def cr(spec: dict[str, Any], name: str = "r1", namespace: str = "ai", **status: Any) -> Any:
    """A parsed DeepSeekDeployment as read from a cluster (with a uid)."""
    return parse_deployment(
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace, "uid": UID},
            "spec": spec,
            "status": status,
        }
    )


def small(**spec: Any) -> dict[str, Any]:
    """A spec of the 7B distill on one A100 40GB, with `spec` merged over it."""
    base: dict[str, Any] = {
        "model": {"name": "deepseek-r1-distill-qwen-7b", "maxModelLen": 16384},
        "gpu": {"type": "A100-40GB", "maxConcurrentSequences": 4},
    }
    for key, value in spec.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return base


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = by_kind(objects, kind)
    return found


def engine_container(pod_template: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod_template["spec"]["containers"]
    assert container["name"] == "engine"
    return dict(container)


def sample_crs() -> list[Any]:
    crs = []
    for path in sorted(SAMPLES.glob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        obj["metadata"] |= {"namespace": "ai", "uid": UID}
        crs.append(parse_deployment(obj))
    return crs


# Specs covering every branch of rendering, validated below with the samples.
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": small(),
    "any-gpu": small(gpu={"type": ""}),
    "hpa": small(autoscaling={"mode": "hpa", "maxReplicas": 3}),
    "keda": small(autoscaling={"mode": "keda", "minReplicas": 0, "prometheus": {
        "query": 'sum(rate(gateway_requests_total{service="{name}"}[1m]))'}}),
    "no-retain": small(storage={"retainOnDelete": False, "storageClassName": "fast"}),
    "existing-claim": small(storage={"existingClaim": "shared-models"}),
    "pvc-source": small(model={"uri": "pvc://weights/r1/qwen-7b"}),
    "s3-source": small(model={"uri": "s3://models/qwen-7b/", "credentialsSecret": "s3-creds"}),
    "sglang-multi-node": {
        "model": {"name": "deepseek-r1", "maxModelLen": 8192},
        "engine": {"type": "sglang"},
        "gpu": {"type": "H100-80GB"},
    },
    "vllm-multi-node-hpa": {
        "model": {"name": "deepseek-r1", "maxModelLen": 8192},
        "gpu": {"type": "H100-80GB"},
        "autoscaling": {"mode": "hpa"},
    },
    "scheduling": small(
        scheduling={
            "nodeSelector": {"pool": "inference"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ai",
                             "effect": "NoSchedule"}],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {"matchExpressions": [
                                {"key": "zone", "operator": "In", "values": ["a"]}]},
                            {"matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                        ]
                    }
                },
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 10, "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"app": "x"}}}}
                    ]
                },
            },
            "priorityClassName": "inference",
            "runtimeClassName": "nvidia",
        }
    ),
    "access": small(
        access={
            "roles": {"owner": ["model:read", "model:write", "system:configure", "model:query"],
                      "viewer": ["model:read"]},
            "bindings": [
                {"role": "owner", "subjects": [{"kind": "User", "name": "alice@example.com"}]},
                {"role": "owner", "subjects": [{"kind": "ServiceAccount", "name": "ci"},
                                               {"kind": "User", "name": "alice@example.com"}]},
                {"role": "viewer", "subjects": [{"kind": "Group", "name": "everyone"}]},
            ],
        }
    ),
    "quantized": small(model={"uri": "hf://org/qwen-7b-awq", "quantization": "awq"}),
    "env-and-args": small(
        engine={
            "args": ["--enable-prefix-caching"],
            "apiKeySecret": {"name": "engine-key"},
            "env": [
                {"name": "HF_HUB_OFFLINE", "value": "0"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "t"}}},
                {"name": "DERIVED", "value": "$(TOKEN)-x"},
            ],
        }
    ),
}

ALL_CASES = [(f"sample:{dsd.metadata.name}", dsd) for dsd in sample_crs()] + [
    (name, cr(spec)) for name, spec in VARIANTS.items()
]
ALL_SETTINGS = RenderSettings(pod_monitor=True)


def validate(obj: dict[str, Any]) -> None:
    """Validate with the Kubernetes 1.37 schema (strict: unknown fields fail). CRD kinds the
    package has no schema for are checked for their pod templates and key fields."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        return
    except SchemaNotFoundError:
        pass
    kind = obj["kind"]
    expected = {
        "LeaderWorkerSet": "leaderworkerset.x-k8s.io/v1",
        "ScaledObject": "keda.sh/v1alpha1",
        "PodMonitor": "monitoring.coreos.com/v1",
    }
    assert obj["apiVersion"] == expected[kind]
    spec = obj["spec"]
    if kind == "LeaderWorkerSet":
        template = spec["leaderWorkerTemplate"]
        assert set(template) == {"size", "restartPolicy", "leaderTemplate", "workerTemplate"}
        for pod in (template["leaderTemplate"], template["workerTemplate"]):
            kubernetes_validate.validate(
                {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                 "template": pod},
                KUBERNETES_VERSION,
                strict=True,
            )
    elif kind == "ScaledObject":
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "prometheus"
        assert set(trigger["metadata"]) == {"serverAddress", "query", "threshold"}
        assert spec["scaleTargetRef"]["name"] == obj["metadata"]["name"]
    else:
        assert spec["podMetricsEndpoints"] == [
            {"port": "http", "path": "/metrics", "interval": "15s"}
        ]


@pytest.mark.parametrize(("case", "dsd"), ALL_CASES, ids=[case for case, _ in ALL_CASES])
def test_every_object_is_valid_for_kubernetes_1_37(case: str, dsd: Any) -> None:
    for obj in render(dsd, ALL_SETTINGS):
        validate(obj)


def test_rendering_is_the_same_across_processes_and_hash_seeds() -> None:
    """Same CR, same bytes: every sample rendered by two processes whose string hashing
    (and so set and dict-of-set order) differs. Within one process this cannot fail."""
    samples = sorted(str(p) for p in SAMPLES.glob("*.yaml"))
    outputs = []
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-m", "deepseek_operator.cli", "render",
             *[arg for sample in samples for arg in ("-f", sample)]],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed})
        outputs.append(result.stdout)
    assert outputs[0].count("kind: Deployment") >= 3 and outputs[0] == outputs[1]


@pytest.mark.parametrize(("case", "dsd"), ALL_CASES, ids=[case for case, _ in ALL_CASES])
def test_every_object_is_labelled_owned_and_namespaced(case: str, dsd: Any) -> None:
    name = dsd.metadata.name
    owner = {"apiVersion": API_VERSION, "kind": KIND, "name": name, "uid": UID,
             "controller": True, "blockOwnerDeletion": True}
    for obj in render(dsd, ALL_SETTINGS):
        meta = obj["metadata"]
        assert meta["namespace"] == "ai"
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == "deepseek-deployment"
        assert labels["app.kubernetes.io/instance"] == name
        assert labels["app.kubernetes.io/managed-by"] == "deepseek-operator"
        assert labels["app.kubernetes.io/part-of"] == "deepseek-operator"
        assert labels["deepseek-operator.io/deployment"] == name
        assert labels["app.kubernetes.io/component"]
        assert _matches(children_selector(name), labels)
        retained = obj["kind"] == "PersistentVolumeClaim" and dsd.spec.storage.retain_on_delete
        assert meta.get("ownerReferences") == (None if retained else [owner])


def _matches(selector: str, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (term.split("=") for term in selector.split(",")))


def test_components_and_apply_order() -> None:
    dsd = cr(small(autoscaling={"mode": "hpa"}, access={
        "bindings": [{"role": "user", "subjects": [{"kind": "Group", "name": "g"}]}]}))
    objects = render(dsd, ALL_SETTINGS)
    assert [(o["kind"], o["metadata"]["labels"]["app.kubernetes.io/component"])
            for o in objects] == [
        ("ServiceAccount", "rbac"),
        ("ConfigMap", "rbac"),
        ("ConfigMap", "runtime"),
        ("ConfigMap", "gateway-policy"),
        ("Role", "rbac"),
        ("RoleBinding", "rbac"),
        ("NetworkPolicy", "network-policy"),
        ("PersistentVolumeClaim", "model-cache"),
        ("Job", "download"),
        ("Deployment", "server"),
        ("Service", "service"),
        ("HorizontalPodAutoscaler", "autoscaler"),
        ("PodMonitor", "monitoring"),
    ]


def test_owner_references_need_a_uid() -> None:
    dsd = cr(small()).model_copy(deep=True)
    dsd.metadata.uid = ""
    assert all("ownerReferences" not in o["metadata"] for o in render(dsd, SETTINGS))


def test_namespace_is_required() -> None:
    with pytest.raises(InvalidSpecError) as error:
        render(cr(small(), namespace=""), SETTINGS)
    assert error.value.paths == ("metadata.namespace",)


# --- model cache and download -------------------------------------------------------------


def test_model_cache_claim_is_sized_from_the_catalog_and_uses_the_cluster_default_class() -> None:
    objects = render(cr({"model": {"name": "deepseek-r1"}, "gpu": {"type": "H200-141GB"}}),
                     SETTINGS)
    claim = one(objects, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "r1-model-cache" == names.model_cache_claim(
        cr({"model": {"name": "deepseek-r1"}}))
    # 689 GB on disk x 1.25 = 861.25e9 bytes = 802.1 GiB, rounded up.
    assert claim["spec"] == {"accessModes": ["ReadWriteMany"],
                             "resources": {"requests": {"storage": "803Gi"}}}


def test_model_cache_claim_honours_size_class_and_access_mode() -> None:
    dsd = cr(small(storage={"size": "40Gi", "storageClassName": "fast",
                            "accessMode": "ReadWriteOnce"}, autoscaling={"mode": "none"}))
    assert one(render(dsd, SETTINGS), "PersistentVolumeClaim")["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "fast",
        "resources": {"requests": {"storage": "40Gi"}},
    }


def test_existing_claim_is_mounted_and_not_created() -> None:
    dsd = cr(VARIANTS["existing-claim"])
    objects = render(dsd, SETTINGS)
    assert not by_kind(objects, "PersistentVolumeClaim")
    assert names.model_cache_claim(dsd) == "shared-models"
    for pod in (one(objects, "Job")["spec"]["template"],
                one(objects, "Deployment")["spec"]["template"]):
        volume = pod["spec"]["volumes"][0]
        assert volume["persistentVolumeClaim"]["claimName"] == "shared-models"


def test_pvc_source_is_served_in_place_without_download() -> None:
    dsd = cr(VARIANTS["pvc-source"])
    objects = render(dsd, SETTINGS)
    assert not needs_download(dsd)
    assert not by_kind(objects, "PersistentVolumeClaim")
    assert not by_kind(objects, "Job")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "weights",
                                                          "readOnly": True}
    assert engine_container({"spec": pod})["args"][0] == "/models/r1/qwen-7b"


def test_hf_download_job_fills_the_cache_once_with_a_marker() -> None:
    dsd = cr(small(model={"credentialsSecret": "hf-token", "revision": "v1.0"}))
    job = one(render(dsd, SETTINGS), "Job")
    assert job["metadata"]["name"] == names.download_job(dsd, SETTINGS)
    assert job["metadata"]["name"].startswith("r1-download-")
    spec = job["spec"]
    assert spec["backoffLimit"] == 4
    assert "ttlSecondsAfterFinished" not in spec
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == DEFAULT_ENGINE_IMAGES["vllm"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_REPO": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "HF_REVISION": "v1.0",
        "HOME": "/tmp",
        "MARKER_FILE": MARKER_FILE,
        "MODEL_DIR": "/models/hf/deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "MODEL_SOURCE_ID": "hf://deepseek-ai/DeepSeek-R1-Distill-Qwen-7B@v1.0",
        "TERMINATION_LOG": "/dev/termination-log",
    }
    # Why a download failed reaches the pod's status, which ModelCached shows.
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["envFrom"] == [{"secretRef": {"name": "hf-token"}}]
    script = container["command"][2]
    assert '"$cli" download "$HF_REPO" --revision "$HF_REVISION"' in script
    assert 'exit 0' in script  # the marker short-circuit
    assert "permanent=3" in script  # permanent errors fail the Job through its podFailurePolicy
    (fail_job, _) = spec["podFailurePolicy"]["rules"]
    assert fail_job == {"action": "FailJob", "onExitCodes": {
        "containerName": "download", "operator": "In", "values": [3]}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"]


def test_download_job_name_follows_its_immutable_pod_template() -> None:
    main, pinned = cr(small()), cr(small(model={"revision": "abc123"}))
    assert names.download_job(main, SETTINGS) != names.download_job(pinned, SETTINGS)
    other_image = RenderSettings(hf_download_image="mirror/hf-cli:1")
    assert names.download_job(main, SETTINGS) != names.download_job(main, other_image)
    assert names.download_job(main, SETTINGS) == names.download_job(cr(small()), SETTINGS)


def test_s3_download_uses_the_aws_cli_and_the_secret_by_reference() -> None:
    job = one(render(cr(VARIANTS["s3-source"]), SETTINGS), "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == DEFAULT_S3_DOWNLOAD_IMAGE
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["S3_URI"] == "s3://models/qwen-7b/"
    assert env["MODEL_DIR"] == "/models/s3/models/qwen-7b"
    assert env["MODEL_SOURCE_ID"] == "s3://models/qwen-7b/"
    assert 'aws s3 sync "$S3_URI" "$MODEL_DIR"' in container["command"][2]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]


def test_serving_pods_wait_for_the_marker_of_the_same_source() -> None:
    objects = render(cr(small()), SETTINGS)
    job_env = one(objects, "Job")["spec"]["template"]["spec"]["containers"][0]["env"]
    (init,) = one(objects, "Deployment")["spec"]["template"]["spec"]["initContainers"]
    assert init["name"] == "wait-for-model"
    wanted = {e["name"]: e["value"] for e in job_env}
    for var in init["env"]:
        assert wanted[var["name"]] == var["value"]
    assert init["volumeMounts"][0]["readOnly"] is True


@pytest.mark.parametrize(
    ("model", "field"),
    [
        ({"uri": "s3://bucket/prefix", "revision": "v2"}, "spec.model.revision"),
        ({"uri": "pvc://claim/../etc"}, "spec.model.uri"),
        ({"uri": "hf://org/.."}, "spec.model.uri"),
    ],
)
def test_bad_sources_name_the_field(model: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpecError) as error:
        render(cr(small(model=model)), SETTINGS)
    assert error.value.paths == (field,)


def test_dollar_signs_in_paths_stay_literal() -> None:
    # The kubelet expands $(VAR) in args and env values; `$$` keeps a literal `$`.
    dsd = cr(small(model={"uri": "s3://bucket/$(HOME)/w"}))
    objects = render(dsd, SETTINGS)
    assert engine_container(one(objects, "Deployment")["spec"]["template"])["args"][0] == (
        "/models/s3/bucket/$$(HOME)/w")


# --- secrets ------------------------------------------------------------------------------


def test_secrets_are_referenced_never_copied() -> None:
    spec = VARIANTS["env-and-args"] | {"model": {**small()["model"],
                                                 "credentialsSecret": "hf-token"}}
    objects = render(cr(spec), SETTINGS)
    text = yaml.safe_dump_all(objects)
    # The credentials Secret appears only as the Job's envFrom reference.
    assert text.count("hf-token") == 1
    assert one(objects, "Job")["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [
        {"secretRef": {"name": "hf-token"}}]
    # The user's secretKeyRef is passed through as a reference, not resolved.
    env = engine_container(one(objects, "Deployment")["spec"]["template"])["env"]
    assert {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "t"}}} in env
    # The engine's API key: an environment variable from the Secret, named in the runtime.
    assert {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": "engine-key", "key": "api-key"}}} in env
    # The runtime ConfigMap lists environment names only, and the API key's Secret.
    runtime = yaml.safe_load(by_kind(objects, "ConfigMap")[1]["data"]["runtime.yaml"])
    assert runtime["pods"]["single"]["env"] == ["HOME", "VLLM_API_KEY", "VLLM_NO_USAGE_STATS",
                                                "HF_HUB_OFFLINE", "TOKEN", "DERIVED"]
    assert runtime["apiKeySecret"] == {"name": "engine-key", "key": "api-key"}
    assert "Secret" not in {o["kind"] for o in objects}


# --- the engine -----------------------------------------------------------------------------


def test_vllm_command_line() -> None:
    dsd = cr(small(model={"servedName": "r1-7b"}, engine={"gpuMemoryUtilization": 0.85}))
    container = engine_container(one(render(dsd, SETTINGS), "Deployment")["spec"]["template"])
    assert container["command"] == ["vllm", "serve"]
    assert container["args"] == [
        "/models/hf/deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "--served-model-name", "r1-7b",
        "--port", "8000",
        "--tensor-parallel-size", "1",
        "--pipeline-parallel-size", "1",
        "--max-model-len", "16384",
        "--max-num-seqs", "4",
        "--gpu-memory-utilization", "0.85",
        "--reasoning-parser", "deepseek_r1",
    ]
    assert container["image"] == DEFAULT_ENGINE_IMAGES["vllm"]
    assert container["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_sglang_command_line() -> None:
    dsd = cr(small(engine={"type": "sglang", "image": "mirror/sglang:1"},
                   model={"quantization": "fp8"}, gpu={"type": "L40S-48GB"}))
    container = engine_container(one(render(dsd, SETTINGS), "Deployment")["spec"]["template"])
    assert container["image"] == "mirror/sglang:1"
    assert container["command"] == ["python3", "-m", "sglang.launch_server"]
    assert container["args"] == [
        "--model-path", "/models/hf/deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
        "--served-model-name", "deepseek-r1-distill-qwen-7b",
        "--host", "0.0.0.0",
        "--port", "8000",
        "--tp-size", "1",
        "--context-length", "16384",
        "--max-running-requests", "4",
        "--mem-fraction-static", "0.9",
        "--enable-metrics",
        "--quantization", "fp8",
        "--reasoning-parser", "deepseek-r1",
    ]


@pytest.mark.parametrize(("quantization", "flag"),
                         [("none", None), ("fp8", "fp8"), ("awq", None), ("gptq", None),
                          ("int8", None)])
def test_quantization_flag(quantization: str, flag: str | None) -> None:
    dsd = cr(small(model={"quantization": quantization, "uri": "hf://org/ckpt"}))
    args = engine_container(one(render(dsd, SETTINGS), "Deployment")["spec"]["template"])["args"]
    assert (args[args.index("--quantization") + 1] if "--quantization" in args else None) == flag


CUSTOM_FACTS = {"paramsB": 7.0, "numAttentionHeads": 28, "numKeyValueHeads": 4,
                "numHiddenLayers": 28, "hiddenSize": 3584, "kvBytesPerToken": 57344,
                "maxPositionEmbeddings": 32768}


def test_custom_models_get_no_reasoning_parser() -> None:
    dsd = cr(small(model={"name": "my-model", "uri": "hf://me/my-model", "facts": CUSTOM_FACTS}))
    args = engine_container(one(render(dsd, SETTINGS), "Deployment")["spec"]["template"])["args"]
    assert "--reasoning-parser" not in args


def test_user_args_and_env_come_after_the_operators() -> None:
    dsd = cr(VARIANTS["env-and-args"])
    container = engine_container(one(render(dsd, SETTINGS), "Deployment")["spec"]["template"])
    assert container["args"][-1:] == ["--enable-prefix-caching"]
    assert container["env"] == [
        {"name": "HOME", "value": "/home/engine"},
        {"name": "VLLM_API_KEY",
         "valueFrom": {"secretKeyRef": {"name": "engine-key", "key": "api-key"}}},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "HF_HUB_OFFLINE", "value": "0"},  # the user's value replaces the operator's
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "t"}}},
        {"name": "DERIVED", "value": "$(TOKEN)-x"},
    ]


@pytest.mark.parametrize(
    ("engine", "args", "index", "message"),
    [
        ("vllm", ["--enable-prefix-caching", "--max-model-len", "999"], 1,
         "--max-model-len is set by the operator from spec.model.maxModelLen; "
         "change that field instead"),
        ("vllm", ["--max-model-len=999"], 0, "--max-model-len is set by the operator from "
                                             "spec.model.maxModelLen"),
        ("vllm", ["--max_num_seqs", "8"], 0, "--max-num-seqs is set by the operator from "
                                             "spec.gpu.maxConcurrentSequences"),
        ("vllm", ["--max-model", "999"], 0, "--max-model (taken as --max-model-len)"),
        ("vllm", ["--seed", "1", "-tp", "2"], 2, "-tp is set by the operator from "
                                                    "status.sizing"),
        ("vllm", ["--pipeline-parallel-size=2"], 0, "from status.sizing"),
        ("vllm", ["--port=9000"], 0, "spec.service.port sets the port clients use"),
        ("vllm", ["--host", "127.0.0.1"], 0, "--host is set by the operator to listen on all"),
        ("vllm", ["--model", "/other"], 0, "from spec.model.name and spec.model.uri"),
        ("vllm", ["--served-model-name=x"], 0, "from spec.model.servedName"),
        ("vllm", ["--gpu-memory-utilization", "0.5"], 0, "spec.engine.gpuMemoryUtilization"),
        ("vllm", ["-q", "awq"], 0, "-q is set by the operator from spec.model.quantization"),
        ("vllm", ["--reasoning-parser=qwen3"], 0, "for catalog models"),
        ("vllm", ["--nnodes", "2"], 0, "from the replica's node layout"),
        ("vllm", ["--headless"], 0, "from the replica's node layout"),
        ("sglang", ["--context-length", "999"], 0, "--context-length is set by the operator "
                                                   "from spec.model.maxModelLen"),
        ("sglang", ["--enable-torch-compile", "--tp=2"], 1, "--tp (taken as --tp-size) is set "
                                                            "by the operator from status.sizing"),
        ("sglang", ["--tensor-parallel-size", "2"], 0, "from status.sizing"),
        ("sglang", ["--pp-size=2"], 0, "from status.sizing"),
        ("sglang", ["--model", "/other"], 0, "from spec.model.name and spec.model.uri"),
        ("sglang", ["--max-running-requests=64"], 0, "spec.gpu.maxConcurrentSequences"),
        ("sglang", ["--mem-fraction-static", "0.5"], 0, "spec.engine.gpuMemoryUtilization"),
        ("sglang", ["--quantization=fp8"], 0, "from spec.model.quantization"),
        ("sglang", ["--port", "30000"], 0, "spec.service.port sets the port clients use"),
        ("sglang", ["--host=127.0.0.1"], 0, "to listen on all interfaces"),
        ("sglang", ["--dist-init-addr", "x:1"], 0, "from the replica's node layout"),
        ("sglang", ["--node-rank=1"], 0, "from the replica's node layout"),
    ],
)
def test_engine_args_cannot_set_the_operators_flags(engine: str, args: list[str], index: int,
                                                    message: str) -> None:
    dsd = cr(small(engine={"type": engine, "args": args}))
    with pytest.raises(InvalidSpecError) as error:
        render(dsd, SETTINGS)
    assert error.value.paths == (f"spec.engine.args[{index}]",)
    assert message in error.value.issues[0].message


def test_every_refused_engine_arg_is_named() -> None:
    dsd = cr(small(engine={"args": ["--port", "1", "--enable-prefix-caching", "-pp=2"]}))
    with pytest.raises(InvalidSpecError) as error:
        render(dsd, SETTINGS)
    assert error.value.paths == ("spec.engine.args[0]", "spec.engine.args[3]")


@pytest.mark.parametrize(
    ("engine", "args"),
    [
        # Longer flags that start with an operator's flag are other flags.
        ("vllm", ["--enable-prefix-caching", "--max-num-batched-tokens=8192",
                  "--model-impl", "vllm", "--master-port", "29600"]),
        ("sglang", ["--chunked-prefill-size", "4096", "--enable-metrics-for-all-schedulers",
                    "--quantization-param-path=/x"]),
    ],
)
def test_other_engine_args_are_appended(engine: str, args: list[str]) -> None:
    dsd = cr(small(engine={"type": engine, "args": args}))
    container = engine_container(one(render(dsd, SETTINGS), "Deployment")["spec"]["template"])
    assert container["args"][-len(args):] == args


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_custom_models_may_choose_their_reasoning_parser(engine: str) -> None:
    dsd = cr(small(model={"name": "my-model", "uri": "hf://me/my-model", "facts": CUSTOM_FACTS},
                   engine={"type": engine, "args": ["--reasoning-parser", "qwen3"]}))
    args = engine_container(one(render(dsd, SETTINGS), "Deployment")["spec"]["template"])["args"]
    assert args[-2:] == ["--reasoning-parser", "qwen3"]
    assert args.count("--reasoning-parser") == 1


@pytest.mark.parametrize(("case", "flags"), [("vllm-multi-node-hpa", VLLM_FLAGS),
                                             ("sglang-multi-node", SGLANG_FLAGS)])
def test_every_flag_the_operator_writes_is_refused_in_engine_args(case: str,
                                                                  flags: dict[str, Any]) -> None:
    # The fp8 variant also writes --quantization; leader and worker write the node flags.
    spec = VARIANTS[case] | {"model": {**VARIANTS[case]["model"], "quantization": "fp8"}}
    group = one(render(cr(spec), SETTINGS), "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    written = {arg for template in (group["leaderTemplate"], group["workerTemplate"])
               for arg in engine_container(template)["args"] if arg.startswith("-")}
    assert written <= flags.keys()
    for flag in written:
        with pytest.raises(InvalidSpecError):
            render(cr(spec | {"engine": {**spec.get("engine", {}), "args": [flag]}}), SETTINGS)


def test_pod_shape_gpus_shm_probes_and_security() -> None:
    dsd = cr(small(gpu={"type": "H100-80GB", "count": 2}))
    sizing = size_deployment(dsd.spec)
    deployment = one(render(dsd, SETTINGS), "Deployment")
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    single_writer = one(render(cr(small(gpu={"type": "H100-80GB", "count": 2}, storage={
        "accessMode": "ReadWriteOnce"}, autoscaling={"mode": "none"})), SETTINGS), "Deployment")
    assert single_writer["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 0, "maxUnavailable": 1}, "a surge pod could not mount the cache"
    pod = deployment["spec"]["template"]["spec"]
    container = engine_container(deployment["spec"]["template"])
    assert container["resources"] == {
        "requests": {"cpu": "8", "memory": "36Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "36Gi", "nvidia.com/gpu": "2"},
    }
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}} in pod[
        "volumes"]
    assert {"name": "model-cache", "mountPath": "/models", "readOnly": True} in container[
        "volumeMounts"]
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= SETTINGS.startup_base_seconds + sizing.weights_gib / 0.25
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert deployment["spec"]["progressDeadlineSeconds"] > budget
    # Grace: drain delay + 16384 tokens at 20 tokens/s + 30 s for the engine to exit.
    assert pod["terminationGracePeriodSeconds"] == 10 + math.ceil(16384 / 20) + 30
    assert "preStop" in container["lifecycle"]
    assert pod["serviceAccountName"] == names.service_account(dsd) == "r1"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_grace_period_is_bounded() -> None:
    for length, grace in [(128, 60), (131072, 3600)]:
        dsd = cr({"model": {"name": "deepseek-r1-distill-qwen-1.5b", "maxModelLen": length},
                  "gpu": {"type": "H100-80GB", "maxConcurrentSequences": 1}})
        pod = one(render(dsd, SETTINGS), "Deployment")["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] == grace


# --- scheduling -----------------------------------------------------------------------------


def test_gpu_product_affinity_and_toleration() -> None:
    pod = one(render(cr(small()), SETTINGS), "Deployment")["spec"]["template"]["spec"]
    assert pod["affinity"] == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "nvidia.com/gpu.product", "operator": "In",
             "values": ["NVIDIA-A100-SXM4-40GB"]}]}]}}}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_any_gpu_requires_enough_gpu_memory() -> None:
    dsd = cr(VARIANTS["any-gpu"])
    need = size_deployment(dsd.spec).min_gpu_memory_mib
    pod = one(render(dsd, SETTINGS), "Deployment")["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [
        {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": [str(need - 1)]}]}]


def test_user_scheduling_is_merged() -> None:
    pod = one(render(cr(VARIANTS["scheduling"]), SETTINGS), "Deployment")["spec"]["template"][
        "spec"]
    gpu = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A100-SXM4-40GB"]}
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert terms == [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}, gpu]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}],
         "matchExpressions": [gpu]},
    ]
    assert "podAntiAffinity" in pod["affinity"]
    assert pod["nodeSelector"] == {"pool": "inference"}
    assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu", "dedicated"]
    assert pod["priorityClassName"] == "inference"
    assert pod["runtimeClassName"] == "nvidia"


@pytest.mark.parametrize(
    ("affinity", "field"),
    [
        ({"nodeAffinity": []}, "spec.scheduling.affinity.nodeAffinity"),
        ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": {}}}},
         "spec.scheduling.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
         ".nodeSelectorTerms"),
        ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": "zone"}]}}},
         "spec.scheduling.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
         ".nodeSelectorTerms[0].matchExpressions"),
    ],
)
def test_malformed_node_affinity_names_the_field(affinity: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpecError) as error:
        render(cr(small(scheduling={"affinity": affinity})), SETTINGS)
    assert error.value.paths == (field,)


# --- multi-node replicas --------------------------------------------------------------------


def test_multi_node_replica_is_a_leader_worker_set() -> None:
    dsd = cr(VARIANTS["vllm-multi-node-hpa"])
    sizing = size_deployment(dsd.spec)
    assert sizing.nodes_per_replica == 2
    assert workload_kind(dsd, sizing) == workload_kind(dsd) == "LeaderWorkerSet"
    objects = render(dsd, SETTINGS)
    assert not by_kind(objects, "Deployment")
    lws = one(objects, "LeaderWorkerSet")
    assert lws["metadata"]["name"] == names.workload(dsd)
    assert "replicas" not in lws["spec"]  # mode hpa
    group = lws["spec"]["leaderWorkerTemplate"]
    assert group["size"] == 2
    assert lws["spec"]["networkConfig"] == {"subdomainPolicy": "UniquePerReplica"}
    # LWS v0.8.0 gives maxUnavailable to its leader StatefulSet, which refuses 0: with the
    # Deployment's make-before-break 1 / 0 the real controller never made a group.
    assert lws["spec"]["rolloutStrategy"]["rollingUpdateConfiguration"] == {
        "maxSurge": 0, "maxUnavailable": 1}
    leader, worker = group["leaderTemplate"], group["workerTemplate"]
    leader_args = engine_container(leader)["args"]
    assert leader_args[leader_args.index("--tensor-parallel-size") + 1] == "8"
    assert leader_args[leader_args.index("--pipeline-parallel-size") + 1] == "2"
    assert leader_args[-6:] == ["--nnodes", "2", "--node-rank", "0",
                                "--master-addr", "$(LWS_LEADER_ADDRESS)"]
    worker_container = engine_container(worker)
    assert worker_container["args"][-7:] == [
        "--nnodes", "2", "--node-rank", "$(LWS_WORKER_INDEX)",
        "--master-addr", "$(LWS_LEADER_ADDRESS)", "--headless"]
    assert "ports" not in worker_container and "readinessProbe" not in worker_container
    for pod in (leader, worker):
        assert engine_container(pod)["resources"]["limits"]["nvidia.com/gpu"] == "8"
    # The Service and the scale selector pick the leaders only.
    service = one(objects, "Service")
    assert _matches(pod_selector("r1"), leader["metadata"]["labels"])
    assert not _matches(pod_selector("r1"), worker["metadata"]["labels"])
    assert service["spec"]["selector"] == {"deepseek-operator.io/deployment": "r1",
                                           "app.kubernetes.io/component": "server"}
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": "r1"}


def test_sglang_multi_node_arguments() -> None:
    lws = one(render(cr(VARIANTS["sglang-multi-node"]), SETTINGS), "LeaderWorkerSet")
    worker = engine_container(lws["spec"]["leaderWorkerTemplate"]["workerTemplate"])
    assert worker["args"][-6:] == ["--nnodes", "2", "--node-rank", "$(LWS_WORKER_INDEX)",
                                   "--dist-init-addr", "$(LWS_LEADER_ADDRESS):20000"]
    assert worker["args"][worker["args"].index("--pp-size") + 1] == "2"


# --- replicas, autoscaling, service -------------------------------------------------------


@pytest.mark.parametrize(
    ("autoscaling", "replicas", "desired", "expected"),
    [
        ({"mode": "none"}, 3, None, 3),
        ({"mode": "none"}, 0, 5, 0),
        ({"mode": "operator", "minReplicas": 1, "maxReplicas": 4}, 2, None, 2),
        ({"mode": "operator", "minReplicas": 1, "maxReplicas": 4}, 2, 3, 3),
        ({"mode": "operator", "minReplicas": 2, "maxReplicas": 4}, 1, None, 2),
        ({"mode": "operator", "minReplicas": 1, "maxReplicas": 4}, 1, 9, 4),
        ({"mode": "hpa"}, 2, 3, None),
        ({"mode": "keda"}, 2, 3, None),
    ],
)
def test_workload_replicas(autoscaling: dict[str, Any], replicas: int, desired: int | None,
                           expected: int | None) -> None:
    status = {"autoscaling": {"desiredReplicas": desired}} if desired is not None else {}
    dsd = cr(small(autoscaling=autoscaling, replicas=replicas), **status)
    assert workload_replicas(dsd) == expected
    deployment = one(render(dsd, SETTINGS), "Deployment")
    assert deployment["spec"].get("replicas") == expected


def test_service_and_endpoint() -> None:
    dsd = cr(small(service={"port": 443}))
    service = one(render(dsd, SETTINGS), "Service")
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {"deepseek-operator.io/deployment": "r1",
                     "app.kubernetes.io/component": "server"},
        "ports": [{"name": "http", "port": 443, "targetPort": "http", "protocol": "TCP"}],
    }
    assert endpoint(dsd, SETTINGS) == "http://r1.ai.svc.cluster.local:443/v1"
    assert endpoint(dsd, RenderSettings(cluster_domain="k8s.internal")) == (
        "http://r1.ai.svc.k8s.internal:443/v1")


def test_selectors() -> None:
    assert children_selector("r1") == (
        "deepseek-operator.io/deployment=r1,app.kubernetes.io/managed-by=deepseek-operator")
    assert pod_selector("r1") == (
        "deepseek-operator.io/deployment=r1,app.kubernetes.io/component=server")


def test_hpa_targets_the_per_replica_request_rate() -> None:
    dsd = cr(small(autoscaling={"mode": "hpa", "minReplicas": 2, "maxReplicas": 5,
                                "targetQPSPerReplica": 1.5, "scaleUpStabilizationSeconds": 30,
                                "scaleDownStabilizationSeconds": 600, "scaleUpTolerance": 0.05}))
    hpa = one(render(dsd, SETTINGS), "HorizontalPodAutoscaler")
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "r1"},
        "minReplicas": 2,
        "maxReplicas": 5,
        "metrics": [{"type": "Pods", "pods": {
            "metric": {"name": HPA_METRIC},
            "target": {"type": "AverageValue", "averageValue": "1500m"}}}],
        "behavior": {"scaleUp": {"stabilizationWindowSeconds": 30, "tolerance": "50m"},
                     "scaleDown": {"stabilizationWindowSeconds": 600, "tolerance": "100m"}},
    }


def test_keda_scaled_object() -> None:
    dsd = cr(small(engine={"type": "sglang"}, autoscaling={
        "mode": "keda", "targetQPSPerReplica": 3.0, "intervalSeconds": 30,
        "prometheus": {"url": "http://prom:9090"}}))
    scaled = one(render(dsd, SETTINGS), "ScaledObject")
    assert scaled["spec"]["pollingInterval"] == 30
    assert scaled["spec"]["triggers"] == [{
        "type": "prometheus",
        "metricType": "AverageValue",
        "metadata": {"serverAddress": "http://prom:9090", "query": default_qps_query(dsd),
                     "threshold": "3.0"}}]


def test_keda_scales_to_zero_after_the_idle_time() -> None:
    def spec_of(minimum: int) -> dict[str, Any]:
        dsd = cr(small(autoscaling={"mode": "keda", "minReplicas": minimum,
                                    "scaleToZeroIdleSeconds": 900, "prometheus": {
                                        "query": "sum(rate(gateway_requests_total[1m]))"}}))
        return dict(one(render(dsd, SETTINGS), "ScaledObject")["spec"])

    assert spec_of(0)["minReplicaCount"] == 0
    assert spec_of(0)["cooldownPeriod"] == 900
    assert "cooldownPeriod" not in spec_of(1)


@pytest.mark.parametrize(("minimum", "floor"), [(0, 1), (1, 1), (3, 3)])
def test_keda_falls_back_to_holding_the_replica_count(minimum: int, floor: int) -> None:
    dsd = cr(small(autoscaling={"mode": "keda", "minReplicas": minimum, "maxReplicas": 6,
                                "prometheus": {"query": "sum(rate(requests_total[1m]))"}}))
    scaled = one(render(dsd, SETTINGS), "ScaledObject")
    assert scaled["metadata"]["annotations"] == {"scaledobject.keda.sh/hpa-excluded-labels":
                                                 "app.kubernetes.io/managed-by,"
                                                 "deepseek-operator.io/deployment"}
    # Never 0 (KEDA's loop would scale a failing query to zero) nor `static`.
    assert scaled["spec"]["fallback"] == {"failureThreshold": 3, "replicas": floor,
                                          "behavior": "currentReplicasIfHigher"}

def test_default_queries_per_engine() -> None:
    pods = 'pod=~"r1-([0-9]+|[a-z0-9]{1,10}-[a-z0-9]{5})"'
    assert default_qps_query(cr(small())) == (
        f'sum(rate(vllm:request_success_total{{namespace="ai",{pods}}}[1m]))')
    assert default_qps_query(cr(small(engine={"type": "sglang"}))) == (
        f'sum(rate(sglang:num_requests_total{{namespace="ai",{pods}}}[1m]))')


def test_query_placeholders() -> None:
    query = ('sum(rate(my_requests_total{namespace="{namespace}",app="{name}",'
             'pod=~"{pod_regex}"}[5m]))')
    dsd = cr(small(autoscaling={"prometheus": {"query": query}}))
    assert qps_query(dsd) == (
        'sum(rate(my_requests_total{namespace="ai",app="r1",'
        'pod=~"r1-([0-9]+|[a-z0-9]{1,10}-[a-z0-9]{5})"}[5m]))')
    assert qps_query(cr(small())) == default_qps_query(cr(small()))


GATEWAY_RATE = ('sum(rate(deepseek_gateway_requests_total{namespace="ai",deployment="r1"}'
                '[1m]))')
GATEWAY_QUEUE = 'sum(deepseek_gateway_queued_requests{namespace="ai",deployment="r1"})'


def test_with_the_gateway_the_default_query_reads_its_requests_and_queue() -> None:
    dsd = cr(small(autoscaling={"minReplicas": 0}))
    expected = f"({GATEWAY_RATE} + {GATEWAY_QUEUE}) or {GATEWAY_RATE} or {GATEWAY_QUEUE}"
    assert default_qps_query(dsd, gateway=True) == expected
    assert qps_query(dsd, gateway=True) == expected
    # An override still wins over the gateway's query.
    override = cr(small(autoscaling={"prometheus": {"query": "sum(up)"}}))
    assert qps_query(override, gateway=True) == "sum(up)"


def test_keda_reads_the_same_gateway_query_as_the_operator() -> None:
    dsd = cr(small(autoscaling={"mode": "keda", "minReplicas": 0,
                                "prometheus": {"url": "http://prom:9090"}}))
    scaled = one(render(dsd, RenderSettings(gateway=True)), "ScaledObject")
    assert scaled["spec"]["triggers"][0]["metadata"]["query"] == qps_query(dsd, gateway=True)
    assert "deepseek_gateway_queued_requests" in qps_query(dsd, gateway=True)


@pytest.mark.parametrize("mode", ["operator", "keda"])
def test_scale_to_zero_on_the_engine_query_is_refused_without_the_gateway(mode: str) -> None:
    dsd = cr(small(autoscaling={"mode": mode, "minReplicas": 0}))
    with pytest.raises(InvalidSpecError) as error:
        render(dsd, SETTINGS)
    assert error.value.paths == ("spec.autoscaling.minReplicas",)
    assert "--gateway" in str(error.value)
    assert render(dsd, RenderSettings(gateway=True))  # the gateway's queue sees the request


def test_the_engine_network_policy_admits_the_gateway_scraper_and_own_pods() -> None:
    dsd = cr(small())
    policy = one(render(dsd, SETTINGS), "NetworkPolicy")
    assert policy["metadata"]["name"] == names.network_policy(dsd) == "r1-engine"
    own = {"deepseek-operator.io/deployment": "r1",
           "app.kubernetes.io/managed-by": "deepseek-operator"}
    http = [{"port": "http", "protocol": "TCP"}]
    assert policy["spec"] == {
        "podSelector": {"matchLabels": own},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [{"namespaceSelector": {}, "podSelector": {
                "matchLabels": {"app.kubernetes.io/name": "deepseek-gateway"}}}],
             "ports": http},
            {"from": [{"namespaceSelector": {}, "podSelector": {
                "matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
             "ports": http},
            {"from": [{"podSelector": {"matchLabels": own}}]},
        ],
    }
    # Every pod of the deployment carries the labels the policy selects.
    pod_labels = one(render(dsd, SETTINGS), "Deployment")["spec"]["template"]["metadata"][
        "labels"]
    assert own.items() <= pod_labels.items()


def _empty_match_labels(value: Any) -> bool:
    if isinstance(value, dict):
        return value.get("matchLabels") == {} or any(
            _empty_match_labels(v) for v in value.values())
    return isinstance(value, list) and any(_empty_match_labels(v) for v in value)


@pytest.mark.parametrize(("case", "dsd"), ALL_CASES, ids=[c for c, _ in ALL_CASES])
def test_no_selector_renders_an_empty_match_labels(case: str, dsd: Any) -> None:
    """The apiserver drops an empty matchLabels from what it stores, so a rendered one
    would be drift on every reconcile."""
    for obj in render(dsd, ALL_SETTINGS) + render(dsd, RenderSettings(scraper_pod_labels=())):
        assert not _empty_match_labels(obj), (obj["kind"], obj["metadata"]["name"])


def test_the_scraper_rule_follows_the_settings() -> None:
    settings = RenderSettings(scraper_namespace_labels=(("team", "monitoring"),),
                              scraper_pod_labels=(("app", "vmagent"), ("tier", "metrics")))
    policy = one(render(cr(small()), settings), "NetworkPolicy")
    assert policy["spec"]["ingress"][1]["from"] == [
        {"namespaceSelector": {"matchLabels": {"team": "monitoring"}},
         "podSelector": {"matchLabels": {"app": "vmagent", "tier": "metrics"}}}]


def test_the_gateway_policy_config_map_starts_from_the_sizing() -> None:
    dsd = cr(small(gpu={"maxConcurrentSequences": 12}, autoscaling={"intervalSeconds": 30}))
    objects = render(dsd, SETTINGS)
    policy_map = next(o for o in by_kind(objects, "ConfigMap")
                      if o["metadata"]["name"] == names.gateway_policy_config_map(dsd))
    assert policy_map["metadata"]["name"] == "r1-gateway-policy"
    assert policy_map["metadata"]["annotations"] == {"deepseek-operator.io/create-only": "data"}
    policy = yaml.safe_load(policy_map["data"]["policy.yaml"])
    # Model load (the startup probe's budget) plus one autoscaler interval.
    budget = startup_budget_seconds(size_deployment(dsd.spec), SETTINGS)
    assert budget > 600
    assert policy == {"queueTimeoutSeconds": budget + 30, "maxQueuedRequests": 24,
                      "maxConcurrentPerReplica": 12,
                      "dataProtection": {"mode": "audit", "blockThreshold": 0.5}}


@pytest.mark.parametrize("query", ['sum(rate(x{ns="{namespce}"}[1m]))', "   "])
def test_bad_query_overrides_name_the_field(query: str) -> None:
    dsd = cr(small(autoscaling={"mode": "keda", "prometheus": {"query": query}}))
    with pytest.raises(InvalidSpecError) as error:
        render(dsd, SETTINGS)
    assert error.value.paths == ("spec.autoscaling.prometheus.query",)


@pytest.mark.parametrize(("qps", "quantity"),
                         [(2.0, "2"), (1.5, "1500m"), (0.25, "250m"), (100000.0, "100000")])
def test_average_value(qps: float, quantity: str) -> None:
    assert average_value(qps) == quantity


def test_hpa_without_tolerance_support_leaves_the_field_out() -> None:
    dsd = cr(small(autoscaling={"mode": "hpa"}))
    hpa = one(render(dsd, RenderSettings(hpa_tolerance=False)), "HorizontalPodAutoscaler")
    assert hpa["spec"]["behavior"] == {"scaleUp": {"stabilizationWindowSeconds": 60},
                                       "scaleDown": {"stabilizationWindowSeconds": 300}}


@pytest.mark.parametrize("field", ["scaleUpTolerance", "scaleDownTolerance"])
def test_a_tolerance_finer_than_the_hpa_resolution_names_the_field(field: str) -> None:
    dsd = cr(small(autoscaling={"mode": "hpa", field: 0.0625}))
    with pytest.raises(InvalidSpecError) as error:
        render(dsd, SETTINGS)
    assert error.value.paths == (f"spec.autoscaling.{field}",)
    assert "0.0625 is finer than the HorizontalPodAutoscaler's resolution" in str(error.value)
    # The operator's own autoscaler has no such limit.
    assert render(cr(small(autoscaling={"mode": "operator", field: 0.0625})), SETTINGS)


@pytest.mark.parametrize(("value", "quantity"),
                         [(0.0, "0"), (0.06, "60m"), (0.1, "100m"), (0.5, "500m"), (0.0004, "0")])
def test_milli_quantity_is_the_canonical_form(value: float, quantity: str) -> None:
    assert milli_quantity(value) == quantity


def test_a_target_below_the_hpa_resolution_names_the_field() -> None:
    dsd = cr(small(autoscaling={"mode": "hpa", "targetQPSPerReplica": 0.0001}))
    with pytest.raises(InvalidSpecError) as error:
        render(dsd, SETTINGS)
    assert error.value.paths == ("spec.autoscaling.targetQPSPerReplica",)


def test_pod_monitor_only_when_enabled() -> None:
    dsd = cr(small())
    assert not by_kind(render(dsd, SETTINGS), "PodMonitor")
    monitor = one(render(dsd, RenderSettings(pod_monitor=True)), "PodMonitor")
    assert monitor["spec"]["selector"] == {"matchLabels": {
        "deepseek-operator.io/deployment": "r1", "app.kubernetes.io/component": "server"}}


# --- access -------------------------------------------------------------------------------


def test_default_roles_without_bindings_render_no_roles() -> None:
    objects = render(cr(small()), SETTINGS)
    assert not by_kind(objects, "Role") and not by_kind(objects, "RoleBinding")
    rbac = yaml.safe_load(by_kind(objects, "ConfigMap")[0]["data"]["permissions.yaml"])
    assert rbac == {"roles": {"admin": ["model:read", "model:write", "system:configure"],
                              "user": ["model:query"]},
                    "bindings": []}
    account = one(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_roles_and_bindings_grant_the_matching_verbs() -> None:
    objects = render(cr(VARIANTS["access"]), SETTINGS)
    roles = {r["metadata"]["name"]: r["rules"] for r in by_kind(objects, "Role")}
    assert list(roles) == ["r1-owner", "r1-viewer"]
    assert roles["r1-viewer"] == [{"apiGroups": ["deepseek-operator.io"],
                                   "resources": ["deepseekdeployments"],
                                   "resourceNames": ["r1"], "verbs": ["get", "list", "watch"]}]
    owner = roles["r1-owner"]
    assert [r for r in owner if r["resources"] == ["configmaps"]] == [
        {"apiGroups": [""], "resources": ["configmaps"],
         "resourceNames": ["r1-rbac", "r1-runtime", "r1-gateway-policy"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["configmaps"],
         "resourceNames": ["r1-gateway-policy"], "verbs": ["update", "patch"]},
    ]
    query = {"apiGroups": ["deepseek-operator.io"], "resources": ["deepseekdeployments/query"],
             "resourceNames": ["r1"], "verbs": ["create"]}
    assert query in owner
    assert not any(r["resources"] in (["services"], ["services/proxy"]) for r in owner)
    assert any("delete" in rule["verbs"] for rule in owner)
    bindings = {b["metadata"]["name"]: b for b in by_kind(objects, "RoleBinding")}
    assert bindings["r1-owner"]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r1-owner"}
    assert bindings["r1-owner"]["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice@example.com"},
        {"kind": "ServiceAccount", "name": "ci", "namespace": "ai"},
    ]
    rbac = yaml.safe_load(by_kind(objects, "ConfigMap")[0]["data"]["permissions.yaml"])
    assert rbac["roles"]["viewer"] == ["model:read"]
    assert [b["role"] for b in rbac["bindings"]] == ["owner", "viewer"]


def test_runtime_config_map_holds_the_effective_configuration() -> None:
    dsd = cr(small())
    objects = render(dsd, SETTINGS)
    runtime_map = by_kind(objects, "ConfigMap")[1]
    assert runtime_map["metadata"]["name"] == names.runtime_config_map(dsd) == "r1-runtime"
    runtime = yaml.safe_load(runtime_map["data"]["runtime.yaml"])
    container = engine_container(one(objects, "Deployment")["spec"]["template"])
    assert runtime["pods"]["single"]["args"] == container["args"]
    assert runtime["image"] == container["image"]
    assert runtime["sizing"]["tensorParallelSize"] == 1
    assert runtime["model"]["directory"] == container["args"][0]


def test_runtime_hash_annotation_follows_the_configuration() -> None:
    def annotation(spec: dict[str, Any]) -> str:
        template = one(render(cr(spec), SETTINGS), "Deployment")["spec"]["template"]
        return str(template["metadata"]["annotations"]["deepseek-operator.io/runtime-hash"])

    assert annotation(small()) == annotation(small())
    assert annotation(small()) != annotation(small(engine={"args": ["--enforce-eager"]}))


# --- templating safety ----------------------------------------------------------------------

HOSTILE = [
    "a\n---\napiVersion: v1\nkind: Secret",
    "{x: 1}",
    "key: value",
    "- item",
    "&anchor *alias !!python/object",
    'quote " and \\ backslash',
    "line\u2028separator\u0085next\ufeffbom",
    "emoji \U0001f600 and \x07 bell",
    "'single'",
]


def test_user_strings_cannot_inject_yaml() -> None:
    dsd = cr(small(engine={"args": HOSTILE, "env": [
        {"name": f"V{i}", "value": text} for i, text in enumerate(HOSTILE)]}))
    objects = render(dsd, SETTINGS)
    assert [o["kind"] for o in objects] == [o["kind"] for o in render(cr(small()), SETTINGS)]
    container = engine_container(one(objects, "Deployment")["spec"]["template"])
    assert container["args"][-len(HOSTILE):] == HOSTILE
    assert [e["value"] for e in container["env"][-len(HOSTILE):]] == HOSTILE


def test_templates_insert_values_only_through_tojson() -> None:
    with pytest.raises(TypeError, match="tojson"):
        environment().from_string("key: {{ value }}").render(value="x")
    with pytest.raises(jinja2.UndefinedError):
        environment().from_string("key: {{ missing | tojson }}").render()
    with pytest.raises(TypeError, match="floats"):
        tojson({"a": [1.5]})


def test_default_images_name_no_registry_host() -> None:
    # Docker Hub short names: a first path component with a dot or a port is a registry.
    settings = RenderSettings()
    for image in (settings.vllm_image, settings.sglang_image, settings.s3_download_image):
        first = image.split("/")[0]
        assert "." not in first and ":" not in first, image
        assert ":" in image.split("/")[-1], f"{image} is not pinned to a tag"


@pytest.mark.parametrize("field", ["vllm_image", "engine_port", "load_gib_per_second",
                                   "drain_delay_seconds"])
def test_settings_reject_nonsense(field: str) -> None:
    bad: dict[str, Any] = {"vllm_image": "", "engine_port": 0, "load_gib_per_second": 0.0,
                           "drain_delay_seconds": -1}
    with pytest.raises(ValueError, match=field):
        RenderSettings(**{field: bad[field]})


@pytest.mark.parametrize(("pod", "matches"), [
    ("r1-7d9f8c6b5-x2k4q", True),  # Deployment: pod-template-hash and random suffix
    ("r1-0", True), ("r1-12", True),  # LeaderWorkerSet leaders
    ("r1-0-1", False),  # a LeaderWorkerSet worker: no API server
    ("r1-x-0", False),  # the leader of a DeepSeekDeployment named r1-x
    ("r1-x-7d9f8c6b5-x2k4q", False),  # a pod of the Deployment r1-x
])
def test_serving_pod_pattern(pod: str, matches: bool) -> None:
    assert (re.fullmatch(pod_name_regex("r1"), pod) is not None) is matches


@pytest.mark.parametrize(("engine", "arg"), [
    ("vllm", "--data-parallel-size"), ("vllm", "-dp"), ("sglang", "--dp-size"),
    ("sglang", "--data-parallel-size"),
])
def test_data_parallel_is_refused_it_would_need_more_gpus_than_the_pod_has(
        engine: str, arg: str) -> None:
    dsd = cr(small(engine={"type": engine, "args": [arg, "2"]}))
    with pytest.raises(InvalidSpecError) as error:
        render(dsd, SETTINGS)
    assert error.value.paths == ("spec.engine.args[0]",)
    assert "for more copies raise replicas or autoscaling.maxReplicas" in str(error.value)


@pytest.mark.parametrize("arg", ["--enable-prefix-caching true", "-O 3"])
def test_a_flag_and_its_value_in_one_string_is_refused(arg: str) -> None:
    dsd = cr(small(engine={"args": ["--seed", "1", arg]}))
    with pytest.raises(InvalidSpecError) as error:
        render(dsd, SETTINGS)
    assert error.value.paths == ("spec.engine.args[2]",)
    assert "and its value are in one string" in str(error.value)
    assert arg not in str(error.value)  # the value is never quoted: it may be a secret


# Child kinds are declared once (render/kinds.py): everything render emits is declared,
# watched by the operator, and covered by the chart's ClusterRole.
REPO = Path(__file__).parent.parent



def _emitted() -> set[tuple[str, str]]:
    return {(o["apiVersion"], o["kind"]) for _, dsd in ALL_CASES
            for o in render(dsd, ALL_SETTINGS)}


def test_every_kind_render_emits_is_declared_and_watched() -> None:
    emitted = _emitted()
    declared = {(c.api_version, c.kind) for c in CHILD_KINDS}
    assert emitted <= declared
    # The cases reach every declared kind, so a kind render stopped emitting shows here.
    assert declared == emitted
    plural = {(c.api_version, c.kind): c.plural for c in CHILD_KINDS}
    watched = set(WATCHED_RESOURCES)
    assert {(api_version, plural[(api_version, kind)]) for api_version, kind in emitted} <= watched


def test_workloads_and_order_derive_from_the_table() -> None:
    assert WORKLOAD_API_VERSIONS == {"Deployment": "apps/v1",
                                     "LeaderWorkerSet": "leaderworkerset.x-k8s.io/v1"}
    assert APPLY_ORDER["PersistentVolumeClaim"] < APPLY_ORDER["Job"] < APPLY_ORDER["Deployment"]
    assert APPLY_ORDER["Deployment"] < APPLY_ORDER["HorizontalPodAutoscaler"]


def test_the_cluster_role_lets_the_operator_watch_and_apply_every_kind() -> None:
    # The chart's default ClusterRole, as `make manifests` renders it into the base.
    text = (REPO / "manifests" / "base" / "operator.yaml").read_text()
    role = next(d for d in yaml.safe_load_all(text)
                if d and d.get("kind") == "ClusterRole"
                and d["metadata"]["name"] == "deepseek-operator")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        if rule.get("resourceNames"):
            continue  # granted on named objects only
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    for kind in CHILD_KINDS:
        group = kind.api_version.rpartition("/")[0]
        verbs = granted.get((group, kind.plural), set())
        assert {"get", "list", "watch", "create", "patch", "delete"} <= verbs, kind
