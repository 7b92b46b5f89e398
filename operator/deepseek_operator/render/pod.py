"""The pod template of the engine pods (Deployment pods, LeaderWorkerSet leaders and workers).

Numbers, each from a `RenderSettings` field (defaults in brackets):

- GPUs: `nvidia.com/gpu` requests = limits = sizing.gpus_per_pod.
- CPU request: cpu_per_gpu [4] cores per GPU; no CPU limit (throttling adds latency).
- Memory request = limit: memory_base_gib [16] + memory_gib_per_gpu [8] x GPUs (engine
  processes, tokenizer, weight staging) + the /dev/shm size, which the kubelet counts as
  the pod's memory.
- /dev/shm: a memory-backed emptyDir of shm_gib_per_gpu [2] GiB per GPU (NCCL and the
  engine's worker processes exchange tensors through it; Docker's 64 MiB default breaks
  tensor parallelism).
- Startup probe budget (seconds) = startup_base_seconds [600] + this pod's share of the
  weights (weights_gib / nodes per replica) / load_gib_per_second [0.25], rounded up to
  whole probe periods. The probe starts after the init container saw the download
  complete, so download time is not counted; R1 (642 GiB) on one 8 x H200 pod gets ~53 min.
- Termination grace (seconds) = drain_delay_seconds [10] + the longest a request still
  in flight may run, maxModelLen / min_decode_tokens_per_second [20 tokens/s], + 30 s for
  the engine to exit, within [60, 3600]. The preStop drain ends as soon as the engine has
  no running or queued requests, so the full grace is only used by long generations.

Security: the pods run as `run_as_user` [1000], non-root, no privilege escalation, all
capabilities dropped, RuntimeDefault seccomp: the Pod Security "restricted" profile. HOME
is an emptyDir (vLLM/SGLang images assume root's writable HOME for their kernel caches)
and HF_HUB_OFFLINE=1 keeps the hub out of serving. The root filesystem stays writable
because the engines JIT-compile kernels into paths other than HOME. The model cache is
mounted read-only; the ServiceAccount token is not mounted (engines call no API).
"""

import hashlib
import json
import math
from typing import Any, Final

from ..api import DeepSeekDeployment
from ..catalog import SizingResult
from .engine import (
    BUSY_METRICS,
    ENGINE_HOME,
    HEALTH_PATH,
    METRICS_PATH,
    PodRole,
    engine_command,
    k8s_literal,
)
from .labels import labels_for
from .names import model_cache_claim, service_account
from .scheduling import GPU_RESOURCE, pod_affinity, pod_tolerations
from .settings import RenderSettings
from .source import MARKER_FILE, MODEL_CACHE_MOUNT, ModelSource
from .templating import render_manifest, render_text

STARTUP_PERIOD_SECONDS: Final = 10
ENGINE_EXIT_SECONDS: Final = 30
MIN_GRACE_SECONDS: Final = 60
MAX_GRACE_SECONDS: Final = 3600
ENGINE_HOME_SIZE: Final = "20Gi"
RUNTIME_HASH_ANNOTATION: Final = "deepseek-operator.io/runtime-hash"
LWS_LEADER_ADDRESS_ENV: Final = "LWS_LEADER_ADDRESS"


def engine_image(dsd: DeepSeekDeployment, settings: RenderSettings) -> str:
    """spec.engine.image, or the settings' pinned image of spec.engine.type."""
    return dsd.spec.engine.image or settings.engine_image(dsd.spec.engine.type)


def startup_budget_seconds(sizing: SizingResult, settings: RenderSettings) -> int:
    """Seconds a pod may take from engine start to a healthy /health (module docstring)."""
    weights_per_pod = sizing.weights_gib / sizing.nodes_per_replica
    load = math.ceil(weights_per_pod / settings.load_gib_per_second)
    return settings.startup_base_seconds + load


def grace_seconds(dsd: DeepSeekDeployment, settings: RenderSettings) -> int:
    """terminationGracePeriodSeconds of an engine pod (module docstring)."""
    generation = math.ceil(dsd.spec.model.max_model_len / settings.min_decode_tokens_per_second)
    total = settings.drain_delay_seconds + generation + ENGINE_EXIT_SECONDS
    return max(MIN_GRACE_SECONDS, min(MAX_GRACE_SECONDS, total))


def pod_resources(sizing: SizingResult, settings: RenderSettings) -> dict[str, Any]:
    """Container resources of an engine pod (module docstring)."""
    gpus = sizing.gpus_per_pod
    memory = settings.memory_base_gib + settings.memory_gib_per_gpu * gpus + shm_gib(
        sizing, settings)
    return {
        "requests": {
            "cpu": str(settings.cpu_per_gpu * gpus),
            "memory": f"{memory}Gi",
            GPU_RESOURCE: str(gpus),
        },
        "limits": {"memory": f"{memory}Gi", GPU_RESOURCE: str(gpus)},
    }


def shm_gib(sizing: SizingResult, settings: RenderSettings) -> int:
    """Size of /dev/shm in GiB."""
    return settings.shm_gib_per_gpu * sizing.gpus_per_pod


def marker_env(source: ModelSource) -> list[dict[str, str]]:
    """Environment that tells a script where the weights go and what the marker holds."""
    return [
        {"name": "MARKER_FILE", "value": MARKER_FILE},
        {"name": "MODEL_DIR", "value": k8s_literal(source.model_dir)},
        {"name": "MODEL_SOURCE_ID", "value": k8s_literal(source.source_id)},
    ]


def runtime_hash(runtime: dict[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of `runtime` as canonical JSON: a pod template
    annotation that changes exactly when the effective engine configuration does."""
    canonical = json.dumps(runtime, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def pod_template(
    dsd: DeepSeekDeployment,
    sizing: SizingResult,
    settings: RenderSettings,
    source: ModelSource,
    role: PodRole,
    runtime: dict[str, Any],
) -> dict[str, Any]:
    """The pod template (metadata + spec) of an engine pod in `role`.

    `runtime` is the effective configuration also written to the `<name>-runtime`
    ConfigMap; its hash is annotated on the template. Raises InvalidSpecError as
    `scheduling.pod_affinity` does.
    """
    scheduling = dsd.spec.scheduling
    engine = engine_command(dsd, sizing, settings, source.model_dir, role)
    serves_http = role != "worker"
    budget = startup_budget_seconds(sizing, settings)
    image = engine_image(dsd, settings)
    drain = render_text(
        "scripts/drain.py.j2",
        delay_seconds=settings.drain_delay_seconds,
        port=settings.engine_port,
        metrics_path=METRICS_PATH,
        busy_metrics=BUSY_METRICS[dsd.spec.engine.type],
        host_env="" if serves_http else LWS_LEADER_ADDRESS_ENV,
    )
    wait = render_text("scripts/wait-for-model.sh.j2") if source.scheme != "pvc" else ""
    return render_manifest(
        "pod-template.yaml.j2",
        labels=labels_for(dsd, "server" if serves_http else "server-worker"),
        annotations={RUNTIME_HASH_ANNOTATION: runtime_hash(runtime)},
        service_account=service_account(dsd),
        grace_seconds=grace_seconds(dsd, settings),
        priority_class_name=scheduling.priority_class_name,
        runtime_class_name=scheduling.runtime_class_name,
        uid=settings.run_as_user,
        gid=settings.run_as_group,
        node_selector=scheduling.node_selector,
        affinity=pod_affinity(dsd, sizing),
        tolerations=pod_tolerations(dsd),
        wait_script=wait,
        marker_env=marker_env(source),
        image=image,
        command=engine.command,
        args=engine.args,
        env=engine.env,
        serves_http=serves_http,
        port=settings.engine_port,
        resources=pod_resources(sizing, settings),
        health_path=HEALTH_PATH,
        startup_period_seconds=STARTUP_PERIOD_SECONDS,
        startup_failure_threshold=math.ceil(budget / STARTUP_PERIOD_SECONDS),
        drain_script=drain,
        cache_mount=MODEL_CACHE_MOUNT,
        engine_home=ENGINE_HOME,
        claim=model_cache_claim(dsd),
        shm_size=f"{shm_gib(sizing, settings)}Gi",
        home_size=ENGINE_HOME_SIZE,
    )

