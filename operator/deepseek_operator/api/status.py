"""The observed state of a DeepSeekDeployment: `status`, written only by the operator.

Conventions of Kubernetes status (kstatus): `observedGeneration` plus `conditions` with
type/status/reason/message/lastTransitionTime, so `kubectl wait --for=condition=Ready`,
Argo CD and Flux understand health. Every field is optional: a fresh object has no status.
"""

from enum import StrEnum
from typing import Final, Literal

from pydantic import Field

from .patterns import CONDITION_REASON, CONDITION_TYPE
from .rules import StatusModel

Phase = Literal["Pending", "Downloading", "Starting", "Ready", "Degraded", "Failed"]
"""One word for the printer column; conditions carry the detail.

Pending: waiting for storage or GPUs. Downloading: the model cache is being filled.
Starting: pods are loading the model. Ready: every desired replica is ready. Degraded:
serving, but fewer replicas ready than desired. Failed: the spec can never work (Stalled).
"""

ConditionStatus = Literal["True", "False", "Unknown"]

MAX_CONDITIONS: Final = 16


class ConditionType(StrEnum):
    """Condition types the operator sets (docs/api.md, "Status", says what each means)."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    STALLED = "Stalled"
    STORAGE_READY = "StorageReady"
    MODEL_CACHED = "ModelCached"
    SCHEDULED = "Scheduled"
    AUTOSCALER_READY = "AutoscalerReady"


class Condition(StatusModel):
    """One aspect of the observed state (same shape as metav1.Condition)."""

    type: str = Field(
        min_length=1,
        max_length=316,
        pattern=CONDITION_TYPE,
        description="Condition type in CamelCase, e.g. Ready, ModelCached.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=CONDITION_REASON,
        description="Machine-readable CamelCase reason for the last transition.",
    )
    message: str = Field(
        "", max_length=32768, description="Human-readable detail of the last transition."
    )
    last_transition_time: str = Field(
        alias="lastTransitionTime",
        json_schema_extra={"format": "date-time"},
        description="When status last changed (RFC 3339, UTC, e.g. 2025-01-31T12:00:00Z).",
    )
    observed_generation: int | None = Field(
        None,
        alias="observedGeneration",
        ge=0,
        description="metadata.generation the condition was computed from.",
    )


class SizingStatus(StatusModel):
    """What the operator computed for one replica (see `deepseek-operator size`)."""

    gpu_type: str | None = Field(
        None,
        alias="gpuType",
        max_length=64,
        description="Catalog GPU sized against (the reference GPU when spec.gpu.type is empty).",
    )
    gpus_per_replica: int | None = Field(
        None, alias="gpusPerReplica", ge=0, description="GPUs of one replica."
    )
    gpus_per_pod: int | None = Field(
        None, alias="gpusPerPod", ge=0, description="nvidia.com/gpu limit of each pod."
    )
    tensor_parallel_size: int | None = Field(
        None, alias="tensorParallelSize", ge=0, description="Tensor-parallel size."
    )
    pipeline_parallel_size: int | None = Field(
        None, alias="pipelineParallelSize", ge=0, description="Pipeline-parallel size."
    )
    nodes_per_replica: int | None = Field(
        None, alias="nodesPerReplica", ge=0, description="Nodes (pods) one replica spans."
    )
    gpu_memory_required_gib: float | None = Field(
        None,
        alias="gpuMemoryRequiredGiB",
        ge=0,
        description="GPU memory one replica needs over all its GPUs, GiB.",
    )
    memory_per_gpu_gib: float | None = Field(
        None,
        alias="memoryPerGPUGiB",
        ge=0,
        description="GPU memory the most loaded GPU needs, GiB.",
    )
    weights_gib: float | None = Field(
        None, alias="weightsGiB", ge=0, description="Model weights of one replica, GiB."
    )
    kv_cache_gib: float | None = Field(
        None,
        alias="kvCacheGiB",
        ge=0,
        description="KV cache for maxConcurrentSequences x maxModelLen tokens (one copy), GiB.",
    )


class AutoscalingStatus(StatusModel):
    """The autoscaler's last observation and decision."""

    observed_qps: float | None = Field(
        None, alias="observedQPS", ge=0, description="Requests per second over all replicas."
    )
    target_qps_per_replica: float | None = Field(
        None,
        alias="targetQPSPerReplica",
        ge=0,
        description="Per-replica throughput used for the decision, requests per second.",
    )
    computed_replicas: int | None = Field(
        None,
        alias="computedReplicas",
        ge=0,
        description="ceil(observedQPS / targetQPSPerReplica), before bounds and stabilization.",
    )
    desired_replicas: int | None = Field(
        None,
        alias="desiredReplicas",
        ge=0,
        description="Replicas after min/max bounds and stabilization windows.",
    )
    last_scale_time: str | None = Field(
        None,
        alias="lastScaleTime",
        json_schema_extra={"format": "date-time"},
        description="When the autoscaler last changed spec.replicas (RFC 3339, UTC).",
    )
    reason: str | None = Field(None, max_length=1024, description="Why the last decision was made.")


class ModelCacheStatus(StatusModel):
    """Progress of the download that fills the model cache, while it runs (and the last
    figures of one that stalled or failed). Bytes are bytes (1 GiB = 2^30 bytes); figures
    come from the download container's progress lines (controller/progress.py)."""

    bytes_present: int | None = Field(
        None, alias="bytesPresent", ge=0,
        description="Bytes in the model directory on the claim (partial files included).",
    )
    bytes_expected: int | None = Field(
        None, alias="bytesExpected", ge=0,
        description=("Bytes of the whole checkpoint: the source's file list when it gives "
                     "one (s3://), else the catalog's checkpoint size."),
    )
    percent: float | None = Field(
        None, ge=0, le=100, description="bytesPresent / bytesExpected x 100, at most 100.",
    )
    bytes_per_second: float | None = Field(
        None, alias="bytesPerSecond", ge=0,
        description="Download rate over the last minute, bytes per second.",
    )
    eta_seconds: int | None = Field(
        None, alias="etaSeconds", ge=0,
        description="Seconds left at bytesPerSecond (absent while the rate is 0 or unknown).",
    )
    last_progress_time: str | None = Field(
        None, alias="lastProgressTime", json_schema_extra={"format": "date-time"},
        description="When bytesPresent last grew (RFC 3339, UTC, the download pod's clock).",
    )
    sample_time: str | None = Field(
        None, alias="sampleTime", json_schema_extra={"format": "date-time"},
        description="When these figures were measured (RFC 3339, UTC, the pod's clock).",
    )
    deadline_seconds: int | None = Field(
        None, alias="deadlineSeconds", ge=0,
        description="The download Job's activeDeadlineSeconds.",
    )


class DeepSeekDeploymentStatus(StatusModel):
    """Observed state of a DeepSeekDeployment."""

    observed_generation: int | None = Field(
        None,
        alias="observedGeneration",
        ge=0,
        description="metadata.generation this status describes.",
    )
    phase: Phase | None = Field(
        None,
        description="Pending, Downloading, Starting, Ready, Degraded or Failed (see conditions).",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=MAX_CONDITIONS,
        description="Current conditions, one per type.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    replicas: int | None = Field(
        None, ge=0, description="Replicas that exist (the scale subresource reads it)."
    )
    ready_replicas: int | None = Field(
        None, alias="readyReplicas", ge=0, description="Replicas ready to serve."
    )
    desired_replicas: int | None = Field(
        None,
        alias="desiredReplicas",
        ge=0,
        description=(
            "Replicas the workload is asked for now, by whoever owns the count: spec.replicas "
            "(modes none and operator), the HorizontalPodAutoscaler or KEDA."
        ),
    )
    selector: str | None = Field(
        None,
        max_length=4096,
        description="Label selector of the serving pods (the scale subresource reads it).",
    )
    endpoint: str | None = Field(
        None, max_length=2048,
        description=("Base URL of the OpenAI-compatible API: the gateway's when the operator "
                     "runs with --gateway-url (as the chart runs it), else the engine "
                     "Service's."),
    )
    sizing: SizingStatus | None = Field(None, description="GPU sizing of one replica.")
    model_cache: ModelCacheStatus | None = Field(
        None, alias="modelCache",
        description="Progress of the download that fills the model cache, while it runs.",
    )
    autoscaling: AutoscalingStatus | None = Field(
        None, description="Last autoscaler observation and decision."
    )
