"""The desired state of a DeepSeekDeployment: `spec` and everything under it.

Field names are the contract with users (docs/api.md): never rename one. Every field's
description is the text `kubectl explain dsd.spec...` shows, so it says what the field
does, its unit and what the default means. Cross-field rules are `CelRule`s (see
`rules.py`): the apiserver and pydantic check the same rules.
"""

import re
from typing import Annotated, Any, Final, Literal, Self

from pydantic import Field, field_validator, model_validator

from .engine_args import EngineType, KVCacheFormat, kv_cache_dtype_issues, kv_cache_format
from .patterns import (
    ENV_VAR_NAME,
    GPU_TYPE,
    IMAGE,
    MODEL_NAME,
    MODEL_URI,
    NAME,
    OPTIONAL_DNS_LABEL,
    OPTIONAL_DNS_SUBDOMAIN,
    PROMETHEUS_URL,
    QUANTITY,
    REVISION,
    SECRET_KEY,
    SERVED_NAME,
)
from .rules import CelRule, SpecModel, cross_field_error
from .secrets import (
    ARGS_MESSAGE,
    ENV_VALUE_MESSAGE,
    RESERVED_ENV,
    RESERVED_ENV_MESSAGE,
    SECRET_ENV_NAME,
    SECRET_FLAG_ARG,
    is_secret_env_name,
    is_secret_flag_arg,
)

Quantization = Literal["none", "fp8", "int8", "awq", "gptq"]
"""Weight format to serve: `none` is the checkpoint's native dtype (fp8 for R1, bf16 for
the distills); `fp8` is applied online by the engine to a 16-bit checkpoint; `int8`, `awq`
and `gptq` need a checkpoint already quantized that way (`spec.model.uri`)."""

PRE_QUANTIZED: Final[tuple[Quantization, ...]] = ("int8", "awq", "gptq")
"""Quantizations that need a pre-quantized checkpoint rather than an online conversion."""

NativeDtype = Literal["bf16", "fp16", "fp8"]
AttentionKind = Literal["gqa", "mla"]
AutoscalingMode = Literal["operator", "hpa", "keda", "none"]
AccessMode = Literal["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]
Permission = Literal["model:read", "model:write", "system:configure", "model:query"]
SubjectKind = Literal["User", "Group", "ServiceAccount"]

SINGLE_WRITER_ACCESS_MODES: Final[tuple[AccessMode, ...]] = ("ReadWriteOnce", "ReadWriteOncePod")

DEFAULT_ROLES: Final[dict[str, list[Permission]]] = {
    "admin": ["model:read", "model:write", "system:configure"],
    "user": ["model:query"],
}

ROLE_NAME_MAX_LENGTH: Final = 20


class CustomModelFacts(SpecModel):
    """Facts the operator needs to size and serve a model that is not in its catalog.

    Take them from the model repository's config.json and file listing.
    """

    params_b: float = Field(
        alias="paramsB",
        gt=0,
        le=100_000,
        description="Total parameters, in billions (all experts of a mixture of experts).",
    )
    active_params_b: float = Field(
        0.0,
        alias="activeParamsB",
        ge=0,
        le=100_000,
        description=(
            "Parameters active per token of a mixture-of-experts model, in billions. 0 means a "
            "dense model (all parameters active)."
        ),
    )
    disk_gb: float = Field(
        0.0,
        alias="diskGB",
        ge=0,
        le=100_000,
        description=(
            "Size of the checkpoint on disk in GB (1e9 bytes). 0 means paramsB x bytes per "
            "parameter of nativeDtype."
        ),
    )
    native_dtype: NativeDtype = Field(
        "bf16",
        alias="nativeDtype",
        description="Data type of the checkpoint's weights (quantization none serves this).",
    )
    attention: AttentionKind = Field(
        "gqa",
        description=(
            "Attention kind: gqa (multi-head or grouped-query; KV cache sharded over "
            "tensor-parallel ranks up to numKeyValueHeads) or mla (multi-head latent "
            "attention, one latent KV cache held in full by every tensor-parallel rank)."
        ),
    )
    num_attention_heads: int = Field(
        alias="numAttentionHeads",
        ge=1,
        le=4096,
        description="config.json num_attention_heads: tensor-parallel size must divide it.",
    )
    num_key_value_heads: int = Field(
        0,
        alias="numKeyValueHeads",
        ge=0,
        le=4096,
        description=(
            "config.json num_key_value_heads. 0 means equal to numAttentionHeads "
            "(multi-head attention). Ignored for attention mla."
        ),
    )
    num_hidden_layers: int = Field(
        alias="numHiddenLayers",
        ge=1,
        le=4096,
        description="config.json num_hidden_layers: pipeline stages split these.",
    )
    hidden_size: int = Field(
        alias="hiddenSize",
        ge=1,
        le=1_048_576,
        description="config.json hidden_size: sizes the activation memory estimate.",
    )
    kv_bytes_per_token: int = Field(
        alias="kvBytesPerToken",
        ge=1,
        le=1 << 30,
        description=(
            "Bytes of 16-bit KV cache per token over all layers: 2 x layers x kv heads x "
            "head dim x 2 for gqa; layers x (kv_lora_rank + qk_rope_head_dim) x 2 for mla."
        ),
    )
    max_position_embeddings: int = Field(
        alias="maxPositionEmbeddings",
        ge=1,
        le=1 << 26,
        description="config.json max_position_embeddings: the longest maxModelLen allowed.",
    )

    cel_rules = (
        CelRule(
            rule=(
                "self.attention == 'mla' || self.numKeyValueHeads == 0 || "
                "self.numAttentionHeads % self.numKeyValueHeads == 0"
            ),
            message=(
                "numKeyValueHeads must divide numAttentionHeads (grouped-query attention); "
                "copy both from the model's config.json"
            ),
            field_path=".numKeyValueHeads",
            check=lambda f: (
                f.attention == "mla"
                or f.num_key_value_heads == 0
                or f.num_attention_heads % f.num_key_value_heads == 0
            ),
        ),
        CelRule(
            rule="self.activeParamsB <= self.paramsB",
            message="activeParamsB cannot exceed paramsB (total parameters)",
            field_path=".activeParamsB",
            check=lambda f: f.active_params_b <= f.params_b,
        ),
    )


class ModelSpec(SpecModel):
    """Which model to serve, where its weights come from, and how."""

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=MODEL_NAME,
        description=(
            "Catalog id of the model (`deepseek-operator models` lists them, e.g. "
            "deepseek-r1-distill-qwen-32b), or the name of a custom model described by "
            "facts."
        ),
    )
    uri: str = Field(
        "",
        max_length=1024,
        pattern=MODEL_URI,
        description=(
            "Where the weights come from: hf://ORG/REPO, s3://BUCKET/PREFIX or "
            "pvc://CLAIM/PATH (already on a volume, nothing is downloaded). Empty means "
            "hf:// of the catalog model's repository."
        ),
    )
    revision: str = Field(
        "main",
        min_length=1,
        max_length=128,
        pattern=REVISION,
        description="Branch, tag or commit of an hf:// repository.",
    )
    quantization: Quantization = Field(
        "none",
        description=(
            "Weight format: none serves the checkpoint's native dtype (fp8 for DeepSeek-R1, "
            "bf16 for the distills); fp8 is converted online by the engine; int8, awq and "
            "gptq need a checkpoint already quantized that way in uri. The KV cache stays "
            "16-bit unless engine.args set an fp8 --kv-cache-dtype."
        ),
    )
    max_model_len: int = Field(
        32768,
        alias="maxModelLen",
        ge=128,
        le=1 << 24,
        description=(
            "Longest sequence (prompt + generated tokens) a request may use. With "
            "maxConcurrentSequences it sizes the KV cache; at most the model's "
            "max_position_embeddings."
        ),
    )
    served_name: str = Field(
        "",
        alias="servedName",
        max_length=128,
        pattern=SERVED_NAME,
        description="Model name on the OpenAI-compatible API. Empty means the value of name.",
    )
    credentials_secret: str = Field(
        "",
        alias="credentialsSecret",
        max_length=253,
        pattern=OPTIONAL_DNS_SUBDOMAIN,
        description=(
            "Secret in the same namespace whose keys become environment variables of the "
            "download Job (HF_TOKEN for hf://; AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
            "optionally AWS_ENDPOINT_URL for s3://). Referenced, never copied. Empty: "
            "anonymous download."
        ),
    )
    facts: CustomModelFacts | None = Field(
        None,
        description=(
            "Facts of a custom model that is not in the catalog. When set, name is not "
            "looked up in the catalog and uri is required."
        ),
    )

    cel_rules = (
        CelRule(
            rule="!has(self.facts) || self.uri != ''",
            message=(
                "a custom model (facts set) needs uri: where to download its weights from "
                "(hf://, s3:// or pvc://)"
            ),
            field_path=".uri",
            check=lambda m: m.facts is None or m.uri != "",
        ),
        CelRule(
            rule="!(self.quantization in ['int8', 'awq', 'gptq']) || self.uri != ''",
            message=(
                "quantization int8, awq and gptq need a checkpoint quantized that way: set "
                "uri to it (the catalog repositories hold fp8 or bf16 weights), or use "
                "quantization none or fp8"
            ),
            field_path=".uri",
            check=lambda m: m.quantization not in PRE_QUANTIZED or m.uri != "",
        ),
        CelRule(
            rule="!has(self.facts) || self.maxModelLen <= self.facts.maxPositionEmbeddings",
            message=(
                "maxModelLen exceeds facts.maxPositionEmbeddings, the longest context the "
                "model supports: lower maxModelLen"
            ),
            field_path=".maxModelLen",
            check=lambda m: m.facts is None or m.max_model_len <= m.facts.max_position_embeddings,
        ),
    )


class KeyRef(SpecModel):
    """A key of a Secret or ConfigMap in the deployment's namespace (Kubernetes
    SecretKeySelector / ConfigMapKeySelector)."""

    name: str = Field(min_length=1, max_length=253, pattern=OPTIONAL_DNS_SUBDOMAIN,
                      description="Name of the Secret or ConfigMap.")
    key: str = Field(min_length=1, max_length=253, description="Key in its data.")
    optional: bool | None = Field(None, description="Start even when it is missing.")


class FieldRef(SpecModel):
    """A field of the pod (Kubernetes ObjectFieldSelector), e.g. metadata.name."""

    field_path: str = Field(alias="fieldPath", min_length=1, max_length=256,
                            description="Path of the field, e.g. status.podIP.")
    api_version: str | None = Field(None, alias="apiVersion", max_length=64,
                                    description="Version of fieldPath's schema (v1).")


class ResourceFieldRef(SpecModel):
    """A resource limit or request of a container (Kubernetes ResourceFieldSelector)."""

    resource: str = Field(min_length=1, max_length=64, description="e.g. limits.memory.")
    container_name: str | None = Field(None, alias="containerName", max_length=63,
                                       description="Container; default: the engine.")
    # Not empty: the apiserver cannot convert an empty quantity and answers 500, which
    # would retry forever instead of stalling (found by the hostile-input suite).
    divisor: str | None = Field(None, min_length=1, max_length=64, pattern=QUANTITY,
                                description="Unit of the value, a quantity such as 1Mi.")


class EnvVarSource(SpecModel):
    """Where a variable's value comes from (Kubernetes EnvVarSource): exactly one source."""

    secret_key_ref: KeyRef | None = Field(None, alias="secretKeyRef",
                                          description="A key of a Secret.")
    config_map_key_ref: KeyRef | None = Field(None, alias="configMapKeyRef",
                                              description="A key of a ConfigMap.")
    field_ref: FieldRef | None = Field(None, alias="fieldRef", description="A pod field.")
    resource_field_ref: ResourceFieldRef | None = Field(
        None, alias="resourceFieldRef", description="A container resource.")

    cel_rules = (
        CelRule(
            rule="[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.fieldRef), "
                 "has(self.resourceFieldRef)].filter(x, x).size() == 1",
            message="give exactly one of secretKeyRef, configMapKeyRef, fieldRef, "
                    "resourceFieldRef",
            field_path="",
            check=lambda v: sum(x is not None for x in (
                v.secret_key_ref, v.config_map_key_ref, v.field_ref,
                v.resource_field_ref)) == 1,
        ),
    )


class Toleration(SpecModel):
    """A taint the serving pods tolerate (Kubernetes Toleration)."""

    key: str | None = Field(None, max_length=316, description="Taint key; empty: any key.")
    operator: Literal["Exists", "Equal"] | None = Field(
        None, description="Equal (default) or Exists.")
    value: str | None = Field(None, max_length=63, description="Taint value (a string).")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect; empty: all effects.")
    toleration_seconds: int | None = Field(
        None, alias="tolerationSeconds", ge=0,
        description="NoExecute only: how long a pod stays after the taint appears, seconds.")


class EnvVar(SpecModel):
    """An environment variable of the engine container (Kubernetes EnvVar)."""

    name: str = Field(
        min_length=1, max_length=256, pattern=ENV_VAR_NAME, description="Variable name."
    )
    value: str | None = Field(None, max_length=32768, description="Literal value.")
    value_from: EnvVarSource | None = Field(
        None,
        alias="valueFrom",
        description="Source of the value (Kubernetes EnvVarSource: secretKeyRef, ...).",
    )

    cel_rules = (
        CelRule(
            rule="!(has(self.value) && has(self.valueFrom))",
            message="give value or valueFrom, not both",
            field_path=".valueFrom",
            check=lambda e: e.value is None or e.value_from is None,
        ),
        CelRule(
            rule=f"!has(self.value) || !self.name.matches(r'{SECRET_ENV_NAME}')",
            message=ENV_VALUE_MESSAGE,
            field_path=".value",
            check=lambda e: e.value is None or not is_secret_env_name(e.name),
        ),
        CelRule(
            rule="!(self.name in [" + ", ".join(f"'{n}'" for n in RESERVED_ENV) + "])",
            message=RESERVED_ENV_MESSAGE,
            field_path=".name",
            check=lambda e: e.name not in RESERVED_ENV,
        ),
    )


class SecretKeyRef(SpecModel):
    """A key of a Secret in the deployment's namespace that holds a secret value."""

    name: str = Field(min_length=1, max_length=253, pattern=OPTIONAL_DNS_SUBDOMAIN,
                      description="Name of the Secret, in the DeepSeekDeployment's namespace.")
    key: str = Field("api-key", min_length=1, max_length=253, pattern=SECRET_KEY,
                     description="Key in the Secret's data whose value is the secret.")


class EngineSpec(SpecModel):
    """The inference engine that serves the model."""

    type: EngineType = Field("vllm", description="Inference engine: vllm or sglang.")
    image: str = Field(
        "",
        max_length=512,
        pattern=IMAGE,
        description="Engine container image. Empty means the operator's pinned image for type.",
    )
    args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default=[],
        max_length=128,
        description=(
            "Extra engine arguments, appended after the ones the operator sets. "
            "--kv-cache-dtype with an fp8 value (vllm: fp8, fp8_e4m3, fp8_e5m2; sglang: "
            "fp8_e4m3, fp8_e5m2) halves the KV cache that sizing counts; values other than "
            "those and the 16-bit ones (auto; vllm bfloat16, float16; sglang bf16, bfloat16) "
            "are refused."
        ),
    )
    env: list[EnvVar] = Field(
        default=[],
        max_length=128,
        description="Extra environment variables of the engine container; names are unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    api_key_secret: SecretKeyRef | None = Field(
        None,
        alias="apiKeySecret",
        description=(
            "Secret key holding the API key the engine requires on its OpenAI API (vLLM "
            "and SGLang --api-key). The engine container gets it from the Secret as an "
            "environment variable, never in its arguments; the gateway reads the Secret "
            "and sends it to the engine (Authorization: Bearer), and refuses requests "
            "while the Secret is missing. Callers still authenticate to the gateway with "
            "their Kubernetes token. Unset: the engine takes no key (the NetworkPolicy "
            "admits only the gateway and the metrics scraper). A changed key reaches the "
            "engine when its pods restart."
        ),
    )
    gpu_memory_utilization: float = Field(
        0.9,
        alias="gpuMemoryUtilization",
        ge=0.1,
        le=1.0,
        description=(
            "Fraction of each GPU's memory the engine may use for weights, KV cache and "
            "activations (vLLM --gpu-memory-utilization, SGLang --mem-fraction-static). "
            "Sizing divides by it."
        ),
    )

    cel_rules = (
        CelRule(
            rule=f"self.args.all(a, !a.matches(r'{SECRET_FLAG_ARG}'))",
            message=ARGS_MESSAGE,
            field_path=".args",
            check=lambda e: not any(is_secret_flag_arg(arg) for arg in e.args),
        ),
    )

    @field_validator("env")
    @classmethod
    def _unique_env_names(cls, env: list[EnvVar]) -> list[EnvVar]:
        names = [var.name for var in env]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate environment variable names: {', '.join(duplicates)}")
        return env

    @model_validator(mode="after")
    def _known_kv_cache_dtype(self) -> Self:
        issues = kv_cache_dtype_issues(self.type, self.args)
        if issues:
            raise cross_field_error([(f".args[{index}]", message) for index, message in issues])
        return self

    @property
    def kv_cache_format(self) -> KVCacheFormat:
        """How the KV cache stores an element: fp8 when args ask for an fp8
        --kv-cache-dtype, else 16-bit (see `engine_args`)."""
        return kv_cache_format(self.type, self.args)


class GPUSpec(SpecModel):
    """The GPUs of one replica."""

    type: str = Field(
        "",
        max_length=64,
        pattern=GPU_TYPE,
        description=(
            "Catalog GPU (`deepseek-operator models` lists them, e.g. H100-80GB); pods get "
            "node affinity on its nvidia.com/gpu.product label. Empty means any node whose "
            "GPUs have enough memory (nvidia.com/gpu.memory), sized against the reference "
            "GPU H100-80GB."
        ),
    )
    count: int = Field(
        0,
        ge=0,
        le=128,
        description=(
            "GPUs per replica. 0 means sized by the operator (status.sizing shows the "
            "result). Up to perNode it is one pod; above, a multiple of perNode spread over "
            "nodes."
        ),
    )
    per_node: int = Field(
        8,
        alias="perNode",
        ge=1,
        le=16,
        description=(
            "GPUs per node. A replica needing more GPUs than this spans nodes (pipeline "
            "parallel, one pod per node)."
        ),
    )
    max_concurrent_sequences: int = Field(
        16,
        alias="maxConcurrentSequences",
        ge=1,
        le=4096,
        description=(
            "Sequences one replica serves at once at full maxModelLen; sizes the KV cache."
        ),
    )

    cel_rules = (
        CelRule(
            # perNode < 1 is refused by its own minimum; the guard keeps this rule from
            # adding a "modulus by zero" evaluation error to that message.
            rule=("self.perNode < 1 || self.count <= self.perNode "
                  "|| self.count % self.perNode == 0"),
            message=(
                "a count above perNode must be a multiple of perNode: a replica spans whole "
                "nodes, one pod per node"
            ),
            field_path=".count",
            check=lambda g: g.count <= g.per_node or g.count % g.per_node == 0,
        ),
    )


class PrometheusSpec(SpecModel):
    """Where the autoscaler reads the request rate."""

    url: str = Field(
        "http://prometheus-operated.monitoring:9090",
        max_length=2048,
        pattern=PROMETHEUS_URL,
        description="Base URL of the Prometheus HTTP API.",
    )
    query: str = Field(
        "",
        max_length=4096,
        description=(
            "PromQL giving the requests per second over all replicas. Empty means the "
            "operator's query for the engine's request counter."
        ),
    )


class AutoscalingSpec(SpecModel):
    """Scaling on request rate: replicas = ceil(QPS / targetQPSPerReplica)."""

    mode: AutoscalingMode = Field(
        "operator",
        description=(
            "operator: the operator's autoscaler writes the scale subresource; hpa: a "
            "HorizontalPodAutoscaler; keda: a KEDA ScaledObject; none: replicas is honoured."
        ),
    )
    min_replicas: int = Field(
        1,
        alias="minReplicas",
        ge=0,
        le=1024,
        description=(
            "Fewest replicas. 0 lets the operator and KEDA scale to zero after "
            "scaleToZeroIdleSeconds without traffic (not hpa); with the default query "
            "this needs the operator run with the gateway, whose queue shows the first "
            "request while no replica runs."
        ),
    )
    max_replicas: int = Field(4, alias="maxReplicas", ge=1, le=1024, description="Most replicas.")
    target_qps_per_replica: float = Field(
        2.0,
        alias="targetQPSPerReplica",
        gt=0,
        le=100_000,
        description="Requests per second one replica serves well (measure it with a load test).",
    )
    interval_seconds: int = Field(
        15,
        alias="intervalSeconds",
        ge=5,
        le=3600,
        description="Seconds between two autoscaler evaluations.",
    )
    scale_up_stabilization_seconds: int = Field(
        60,
        alias="scaleUpStabilizationSeconds",
        ge=0,
        le=3600,
        description=(
            "Seconds of recommendations considered before scaling up: the lowest one wins, "
            "as in the HPA (0: at once). The default, 60, keeps bursts shorter than a "
            "minute from adding replicas that would load the model after the burst."
        ),
    )
    scale_down_stabilization_seconds: int = Field(
        300,
        alias="scaleDownStabilizationSeconds",
        ge=0,
        le=3600,
        description="Seconds of recommendations considered before scaling down.",
    )
    scale_up_tolerance: float = Field(
        0.06,
        alias="scaleUpTolerance",
        ge=0,
        lt=1,
        description=(
            "Shortfall the autoscaler tolerates before scaling up, as a fraction of the "
            "current replicas' capacity, below 1 (the HPA's behavior.scaleUp.tolerance; "
            "HPA default 0.1). Rendered into the HPA in mode hpa (Kubernetes >= 1.35), "
            "which needs a multiple of 0.001."
        ),
    )
    scale_down_tolerance: float = Field(
        0.1,
        alias="scaleDownTolerance",
        ge=0,
        lt=1,
        description=(
            "Spare capacity the autoscaler tolerates before scaling down, as a fraction of "
            "the current replicas' capacity, below 1 (the HPA's "
            "behavior.scaleDown.tolerance). Rendered into the HPA in mode hpa (Kubernetes "
            ">= 1.35), which needs a multiple of 0.001."
        ),
    )
    scale_to_zero_idle_seconds: int = Field(
        600,
        alias="scaleToZeroIdleSeconds",
        ge=0,
        le=86400,
        description=(
            "With minReplicas 0: seconds of no requests before the last replica goes (in "
            "mode operator, scaleDownStabilizationSeconds must have passed too)."
        ),
    )
    prometheus: PrometheusSpec = Field(
        default_factory=PrometheusSpec, description="Source of the request rate."
    )

    cel_rules = (
        CelRule(
            rule="self.minReplicas <= self.maxReplicas",
            message=(
                "minReplicas must not exceed maxReplicas: raise maxReplicas or lower minReplicas"
            ),
            field_path=".minReplicas",
            check=lambda a: a.min_replicas <= a.max_replicas,
        ),
        CelRule(
            rule="self.mode != 'hpa' || self.minReplicas >= 1",
            message=(
                "a HorizontalPodAutoscaler cannot scale to zero: set minReplicas to 1 or more, "
                "or use mode operator or keda"
            ),
            field_path=".minReplicas",
            check=lambda a: a.mode != "hpa" or a.min_replicas >= 1,
        ),
        CelRule(
            rule="self.targetQPSPerReplica > 0.0",
            message=(
                "targetQPSPerReplica must be greater than 0: it is the requests per second "
                "one replica serves, measured with a load test"
            ),
            field_path=".targetQPSPerReplica",
            check=lambda a: a.target_qps_per_replica > 0,
        ),
    )


class StorageSpec(SpecModel):
    """The model cache: a PersistentVolumeClaim filled once and mounted read-only by every pod."""

    size: str = Field(
        "",
        max_length=32,
        pattern=QUANTITY,
        description=(
            "Requested size (a Kubernetes quantity, e.g. 900Gi). Empty means the weights on "
            "disk x 1.25."
        ),
    )
    storage_class_name: str = Field(
        "",
        alias="storageClassName",
        max_length=253,
        pattern=OPTIONAL_DNS_SUBDOMAIN,
        description="StorageClass of the claim. Empty omits the field: the cluster default.",
    )
    access_mode: AccessMode = Field(
        "ReadWriteMany",
        alias="accessMode",
        description=(
            "Access mode of the claim the operator creates. ReadWriteOnce attaches to one "
            "node and ReadWriteOncePod to one pod, so they fit a single single-node replica."
        ),
    )
    existing_claim: str = Field(
        "",
        alias="existingClaim",
        max_length=253,
        pattern=OPTIONAL_DNS_SUBDOMAIN,
        description=(
            "Use this PersistentVolumeClaim instead of creating one. The operator never "
            "deletes it, and it keeps its own size, StorageClass and access modes: size, "
            "storageClassName and retainOnDelete false are refused with it, accessMode is "
            "not used. Refused with a pvc:// model.uri, whose claim the pods mount instead."
        ),
    )
    retain_on_delete: bool = Field(
        True,
        alias="retainOnDelete",
        description=(
            "Keep the model cache the operator created when the DeepSeekDeployment is "
            "deleted. false deletes it with the DeepSeekDeployment; refused when the "
            "operator creates no claim (existingClaim, or a pvc:// model.uri)."
        ),
    )


class Subject(SpecModel):
    """Who a binding grants a role to (an RBAC subject)."""

    kind: SubjectKind = Field(description="User, Group or ServiceAccount.")
    name: str = Field(
        min_length=1, max_length=253, description="Name of the user, group or account."
    )
    namespace: str = Field(
        "",
        max_length=63,
        pattern=OPTIONAL_DNS_LABEL,
        description="Namespace of a ServiceAccount. Empty means the DeepSeekDeployment's.",
    )

    # RBAC checks a ServiceAccount subject's name as an object name (DNS subdomain) and
    # refuses the RoleBinding otherwise; users and groups are free-form strings there.
    cel_rules = (
        CelRule(
            rule=(
                "self.kind != 'ServiceAccount' || "
                f"self.name.matches(r'{OPTIONAL_DNS_SUBDOMAIN}')"
            ),
            message=(
                "a ServiceAccount's name is a lower-case DNS subdomain: lower-case letters, "
                "digits, '-' and '.', starting and ending with a letter or digit"
            ),
            field_path=".name",
            check=lambda s: s.kind != "ServiceAccount"
            or re.fullmatch(OPTIONAL_DNS_SUBDOMAIN, s.name) is not None,
        ),
    )


class AccessBinding(SpecModel):
    """Grants one role to subjects."""

    role: str = Field(
        min_length=1, max_length=ROLE_NAME_MAX_LENGTH, description="A key of access.roles."
    )
    subjects: list[Subject] = Field(min_length=1, max_length=64, description="Who gets the role.")


RoleName = Annotated[str, Field(pattern=NAME, max_length=ROLE_NAME_MAX_LENGTH)]
PermissionSet = Annotated[
    list[Permission],
    Field(min_length=1, max_length=4, json_schema_extra={"x-kubernetes-list-type": "set"}),
]


class AccessSpec(SpecModel):
    """Who may use and manage the model; rendered into the `<name>-rbac` ConfigMap and Roles."""

    roles: dict[RoleName, PermissionSet] = Field(
        default=DEFAULT_ROLES,
        max_length=16,
        description=(
            "Role name (lower-case DNS label of at most 20 characters) to permissions: "
            "model:read, model:write, system:configure, model:query. Giving roles replaces "
            "the defaults admin and user."
        ),
    )
    bindings: list[AccessBinding] = Field(
        default=[], max_length=32, description="Roles granted to users, groups and accounts."
    )

    cel_rules = (
        CelRule(
            rule="self.bindings.all(b, b.role in self.roles)",
            message="every binding's role must be a key of roles: define the role or fix its name",
            field_path=".bindings",
            check=lambda a: all(b.role in a.roles for b in a.bindings),
        ),
    )

    @field_validator("roles")
    @classmethod
    def _unique_permissions(cls, roles: dict[str, list[Permission]]) -> dict[str, list[Permission]]:
        for role, permissions in roles.items():
            if len(set(permissions)) != len(permissions):
                raise ValueError(f"role {role!r} lists a permission twice")
        return roles


class SchedulingSpec(SpecModel):
    """Extra placement constraints for the serving pods (added to the operator's own)."""

    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default={}, alias="nodeSelector", max_length=32, description="Node labels pods require."
    )
    tolerations: list[Toleration] = Field(
        default=[],
        max_length=32,
        description="Kubernetes tolerations, added to the nvidia.com/gpu toleration.",
    )
    affinity: dict[str, Any] = Field(
        default={},
        description="Kubernetes affinity, merged with the operator's GPU node affinity.",
    )
    priority_class_name: str = Field(
        "",
        alias="priorityClassName",
        max_length=253,
        pattern=OPTIONAL_DNS_SUBDOMAIN,
        description="PriorityClass of the pods. Empty: the cluster default.",
    )
    runtime_class_name: str = Field(
        "",
        alias="runtimeClassName",
        max_length=253,
        pattern=OPTIONAL_DNS_SUBDOMAIN,
        description="RuntimeClass of the pods (e.g. nvidia). Empty: the node default.",
    )


SERVICE_TYPE_MESSAGE: Final = (
    "the engine Service stays ClusterIP: NodePort or LoadBalancer would expose the raw "
    "engine, which checks no token and writes no audit line. Expose the gateway instead "
    "(Helm value gateway.service.type=LoadBalancer, or a NodePort/Ingress in front of the "
    "deepseek-gateway Service) and set spec.service.type to ClusterIP"
)
"""Why spec.service.type is refused for NodePort and LoadBalancer, and the way out."""


class ServiceSpec(SpecModel):
    """The Service in front of the replicas (OpenAI-compatible HTTP API, reached through
    the gateway)."""

    type: ServiceType = Field(
        "ClusterIP",
        description=(
            "ClusterIP only: NodePort and LoadBalancer are refused, because they would "
            "expose the engine without authentication; expose the gateway's Service "
            "instead (Helm value gateway.service.type)."
        ),
    )
    port: int = Field(8000, ge=1, le=65535, description="Service port of the OpenAI API.")

    cel_rules = (
        CelRule(
            rule="self.type == 'ClusterIP'",
            message=SERVICE_TYPE_MESSAGE,
            field_path=".type",
            check=lambda s: s.type == "ClusterIP",
        ),
    )


_CREATES_CACHE: Final = (
    "(self.storage.existingClaim == '' && !self.model.uri.startsWith('pvc://'))"
)
"""CEL: the operator creates (and may delete) the model-cache claim."""
_OR_CREATE: Final = (
    ", or drop existingClaim (and the pvc:// uri) to have the operator create the model cache"
)


def _creates_cache(spec: "DeepSeekDeploymentSpec") -> bool:
    """`_CREATES_CACHE` in Python."""
    return spec.storage.existing_claim == "" and not spec.model.uri.startswith("pvc://")


DEFAULT_MIN_DOWNLOAD_MIB_PER_SECOND: Final = 10.0
DEFAULT_STALL_SECONDS: Final = 900


class DownloadSpec(SpecModel):
    """Bounds of the download Job that fills the model cache (docs/api.md, "Download
    progress"): a deadline derived from the checkpoint size and a minimum rate, and how long
    no progress at all counts as a stall."""

    min_mib_per_second: float = Field(
        DEFAULT_MIN_DOWNLOAD_MIB_PER_SECOND,
        alias="minMiBPerSecond",
        gt=0,
        le=1048576,
        description=(
            "Slowest link the download is allowed, MiB/s (2^20 bytes per second): the Job's "
            "activeDeadlineSeconds is the checkpoint size at this rate plus one hour for "
            "start-up. 10 MiB/s gives the full R1 (641.7 GiB) about 19 hours."
        ),
    )
    active_deadline_seconds: int | None = Field(
        None,
        alias="activeDeadlineSeconds",
        ge=1,
        le=2592000,
        description=(
            "The download Job's activeDeadlineSeconds, replacing the one derived from "
            "minMiBPerSecond. The Job fails with DeadlineExceeded when it runs longer "
            "(retries included)."
        ),
    )
    stall_seconds: int = Field(
        DEFAULT_STALL_SECONDS,
        alias="stallSeconds",
        ge=30,
        le=86400,
        description=(
            "Seconds without one byte of progress after which ModelCached says "
            "DownloadStalled (a Warning event; delete the download pod to restart it: the "
            "download resumes from what is on the claim)."
        ),
    )


class DeepSeekDeploymentSpec(SpecModel):
    """Desired state: a model served on GPUs, its cache, scaling, access and Service."""

    model: ModelSpec = Field(description="The model and its weights.")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="The inference engine.")
    gpu: GPUSpec = Field(default_factory=GPUSpec, description="GPUs of one replica.")
    replicas: int = Field(
        1,
        ge=0,
        le=1024,
        description=(
            "Desired replicas (the scale subresource). Mode none: the count. Mode "
            "operator: set by the operator's autoscaler. Modes hpa and keda: not used; "
            "status.desiredReplicas shows the count they chose."
        ),
    )
    autoscaling: AutoscalingSpec = Field(
        default_factory=AutoscalingSpec, description="Scaling on request rate."
    )
    storage: StorageSpec = Field(default_factory=StorageSpec, description="The model cache.")
    download: DownloadSpec = Field(
        default_factory=DownloadSpec,
        description="Deadline and stall detection of the download that fills the model cache.",
    )
    access: AccessSpec = Field(default_factory=AccessSpec, description="Roles and bindings.")
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec, description="Extra pod placement constraints."
    )
    service: ServiceSpec = Field(default_factory=ServiceSpec, description="The Service.")

    cel_rules = (
        CelRule(
            rule=f"{_CREATES_CACHE} || self.storage.size == ''",
            message=(
                "storage.size applies only to a model cache the operator creates; "
                "existingClaim and the claim of a pvc:// model.uri keep their own size: "
                f"remove size{_OR_CREATE}"
            ),
            field_path=".storage.size",
            check=lambda s: _creates_cache(s) or s.storage.size == "",
        ),
        CelRule(
            rule=f"{_CREATES_CACHE} || self.storage.storageClassName == ''",
            message=(
                "storage.storageClassName applies only to a model cache the operator "
                "creates; existingClaim and the claim of a pvc:// model.uri keep their own "
                f"StorageClass: remove storageClassName{_OR_CREATE}"
            ),
            field_path=".storage.storageClassName",
            check=lambda s: _creates_cache(s) or s.storage.storage_class_name == "",
        ),
        CelRule(
            rule=f"{_CREATES_CACHE} || self.storage.retainOnDelete",
            message=(
                "storage.retainOnDelete false applies only to a model cache the operator "
                "creates: it never deletes existingClaim or the claim of a pvc:// "
                f"model.uri: remove retainOnDelete{_OR_CREATE}"
            ),
            field_path=".storage.retainOnDelete",
            check=lambda s: _creates_cache(s) or s.storage.retain_on_delete,
        ),
        CelRule(
            rule="self.storage.existingClaim == '' || !self.model.uri.startsWith('pvc://')",
            message=(
                "storage.existingClaim is not used with a pvc:// model.uri: the pods mount "
                "the claim the uri names; remove existingClaim"
            ),
            field_path=".storage.existingClaim",
            check=lambda s: s.storage.existing_claim == "" or not s.model.uri.startswith("pvc://"),
        ),
        CelRule(
            # What breaks: a ReadWriteOnce volume attaches to one node and a
            # ReadWriteOncePod volume to one pod, but replicas land on different GPU nodes.
            # An existing claim's own access modes are the user's choice.
            rule=(
                "self.storage.existingClaim != '' || "
                "self.storage.accessMode == 'ReadWriteMany' || "
                "(self.replicas <= 1 && "
                "(self.autoscaling.mode == 'none' || self.autoscaling.maxReplicas <= 1))"
            ),
            message=(
                "accessMode ReadWriteOnce/ReadWriteOncePod lets one node (one pod) mount the "
                "model cache, but more than one replica can run: use ReadWriteMany, or set "
                "replicas 1 and autoscaling.maxReplicas 1 (or autoscaling.mode none), or give "
                "existingClaim"
            ),
            field_path=".storage.accessMode",
            check=lambda s: (
                s.storage.existing_claim != ""
                or s.storage.access_mode == "ReadWriteMany"
                or (
                    s.replicas <= 1
                    and (s.autoscaling.mode == "none" or s.autoscaling.max_replicas <= 1)
                )
            ),
        ),
    )
