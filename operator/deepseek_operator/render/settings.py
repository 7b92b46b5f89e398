"""Operator-wide rendering settings: images, cluster domain and the heuristics that size pods.

Rendering reads no global configuration: the controller (or the CLI) builds one
`RenderSettings` and passes it in. Every field has a default, so `RenderSettings()` works.
"""

import re
from dataclasses import dataclass
from typing import Final

from ..api import EngineType

DEFAULT_ENGINE_IMAGES: Final[dict[EngineType, str]] = {
    # vLLM's OpenAI-compatible server image, tagged like its PyPI releases (vllm 0.33.0).
    "vllm": "vllm/vllm-openai:v0.33.0",
    # SGLang's image, tagged like its PyPI releases (sglang 0.5.23).
    "sglang": "lmsysorg/sglang:v0.5.23",
}
"""Pinned default engine images (Docker Hub names; mirror them for air-gapped clusters)."""

DEFAULT_S3_DOWNLOAD_IMAGE: Final = "amazon/aws-cli:2.31.0"
"""AWS CLI v2 image for s3:// downloads (it honours AWS_ENDPOINT_URL for S3-compatible stores)."""

DEFAULT_SCRAPER_POD_LABELS: Final[tuple[tuple[str, str], ...]] = (
    ("app.kubernetes.io/name", "prometheus"),)
"""Pods of the metrics scraper the engine NetworkPolicy admits by default (the label the
Prometheus Operator and the prometheus Helm chart put on Prometheus pods)."""


@dataclass(frozen=True)
class RenderSettings:
    """Settings of one operator installation that shape every rendered object.

    Images:
    - `vllm_image`, `sglang_image`: the engine image when spec.engine.image is empty.
    - `hf_download_image`: image of the hf:// download Job. Empty means the serving engine's
      image: both engine images ship huggingface_hub and its `hf` CLI, and the GPU nodes
      pull that image anyway, so an air-gapped cluster mirrors nothing more.
    - `s3_download_image`: image of the s3:// download Job (needs `aws` and `sh`).

    Cluster:
    - `cluster_domain`: DNS domain of Services, for `endpoint()` (kubelet --cluster-domain).
    - `pod_monitor`: render a PodMonitor (monitoring.coreos.com/v1); set it only where the
      Prometheus Operator's CRDs exist.
    - `hpa_tolerance`: put spec.autoscaling's tolerances into the HPA's
      `behavior.*.tolerance`; only on Kubernetes >= 1.35, where that field is on by default
      (HPAConfigurableTolerance: alpha 1.33, beta 1.35, GA 1.37). Older apiservers reject
      or drop it; their HPAs keep the 10 % default in both directions.
    - `gateway`: the gateway (`deepseek-operator gateway`) fronts every DeepSeekDeployment:
      the default autoscaling query reads its request counter and queued gauge
      (`render.autoscaling`), so minReplicas 0 works without a query of one's own.
    - `gateway_url`: base URL of the gateway's Service (e.g.
      `http://deepseek-gateway.deepseek-operator-system.svc`); when set, `status.endpoint`
      is `<gateway_url>/v1`, where callers go, instead of the engine Service (which only
      the gateway may reach).
    - `gateway_service_account`: `NAMESPACE/NAME` of the gateway's ServiceAccount. When
      set, a deployment with spec.engine.apiKeySecret gets a Role and RoleBinding letting
      that account `get` exactly that Secret (`render.engine_key_access`), so the gateway
      needs no cluster-wide access to Secrets. Empty: none is rendered.
    - `scraper_namespace_labels`, `scraper_pod_labels`: label pairs (matchLabels) of the
      namespaces and pods of the metrics scraper the engine NetworkPolicy admits
      (`render.network`); empty namespace labels: any namespace.
    - `engine_port`: container port of the engine's HTTP server (OpenAI API, /health,
      /metrics).
    - `run_as_user`, `run_as_group`: UID and GID the engine and download containers run as
      (the GID is also the download pod's fsGroup); non-root so the pods meet the Pod
      Security "restricted" profile.
    - `storage_class_name`: StorageClass of the model caches the operator creates when
      spec.storage.storageClassName is empty; empty: omit the field (the cluster default).

    Pod sizing heuristics (documented where they are used, in `render.pod`):
    - `startup_base_seconds`: engine start-up besides reading weights (CUDA init,
      torch.compile, CUDA graph capture), seconds.
    - `load_gib_per_second`: slowest expected read rate of weights from the model cache,
      GiB/s (network volumes: 0.25 is a conservative figure).
    - `min_decode_tokens_per_second`: slowest expected generation speed of one sequence,
      tokens/s; with maxModelLen it bounds how long an in-flight request may still run.
    - `drain_delay_seconds`: seconds a stopping pod keeps serving before draining, so
      Service endpoints are updated first.
    - `cpu_per_gpu` (cores), `memory_base_gib` and `memory_gib_per_gpu` (GiB): container
      CPU/memory requests; `shm_gib_per_gpu` (GiB): size of the memory-backed /dev/shm
      that NCCL and the engine's worker processes share.

    Raises ValueError from `__post_init__` for a non-positive number, an empty image or a
    gateway_service_account that is not NAMESPACE/NAME.
    """

    vllm_image: str = DEFAULT_ENGINE_IMAGES["vllm"]
    sglang_image: str = DEFAULT_ENGINE_IMAGES["sglang"]
    hf_download_image: str = ""
    s3_download_image: str = DEFAULT_S3_DOWNLOAD_IMAGE
    cluster_domain: str = "cluster.local"
    pod_monitor: bool = False
    hpa_tolerance: bool = True
    gateway: bool = False
    gateway_url: str = ""
    gateway_service_account: str = ""
    scraper_namespace_labels: tuple[tuple[str, str], ...] = ()
    scraper_pod_labels: tuple[tuple[str, str], ...] = DEFAULT_SCRAPER_POD_LABELS
    engine_port: int = 8000
    run_as_user: int = 1000
    run_as_group: int = 1000
    storage_class_name: str = ""
    startup_base_seconds: int = 600
    load_gib_per_second: float = 0.25
    min_decode_tokens_per_second: float = 20.0
    drain_delay_seconds: int = 10
    cpu_per_gpu: int = 4
    memory_base_gib: int = 16
    memory_gib_per_gpu: int = 8
    shm_gib_per_gpu: int = 2

    def __post_init__(self) -> None:
        for name in ("vllm_image", "sglang_image", "s3_download_image", "cluster_domain"):
            if not getattr(self, name):
                raise ValueError(f"RenderSettings.{name} must not be empty")
        for name in (
            "engine_port",
            "run_as_user",
            "run_as_group",
            "startup_base_seconds",
            "load_gib_per_second",
            "min_decode_tokens_per_second",
            "cpu_per_gpu",
            "memory_base_gib",
            "memory_gib_per_gpu",
            "shm_gib_per_gpu",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"RenderSettings.{name} must be positive")
        if self.drain_delay_seconds < 0:
            raise ValueError("RenderSettings.drain_delay_seconds must not be negative")
        if self.gateway_service_account and not re.fullmatch(
                r"[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?",
                self.gateway_service_account):
            raise ValueError("RenderSettings.gateway_service_account must be NAMESPACE/NAME")
        if self.engine_port > 65535:
            raise ValueError("RenderSettings.engine_port must be a port number (1-65535)")

    def engine_image(self, engine: EngineType) -> str:
        """The default image of `engine` (vllm or sglang)."""
        return self.vllm_image if engine == "vllm" else self.sglang_image
