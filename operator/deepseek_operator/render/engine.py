"""The engine's command line and environment: vLLM or SGLang, single node or one node of
a multi-node replica.

vLLM (`vllm serve`, docs: "Engine Arguments", "Parallelism and Scaling"):
`--tensor-parallel-size`, `--pipeline-parallel-size`, `--max-model-len`, `--max-num-seqs`
(= spec.gpu.maxConcurrentSequences), `--gpu-memory-utilization`, `--served-model-name`,
`--reasoning-parser deepseek_r1`, `--port`. A replica spanning nodes runs one `vllm serve`
per pod without Ray: `--nnodes N --node-rank R --master-addr <leader>`, the workers with
`--headless` (only the leader serves HTTP).

SGLang (`python3 -m sglang.launch_server`, docs: "Server Arguments"): `--tp-size`,
`--pp-size`, `--context-length`, `--max-running-requests`, `--mem-fraction-static`,
`--served-model-name`, `--reasoning-parser deepseek-r1`, `--enable-metrics` (SGLang exports
/metrics only when asked), `--host 0.0.0.0 --port`; multi-node: `--nnodes N --node-rank R
--dist-init-addr <leader>:PORT`.

Quantization: `fp8` converts a 16-bit checkpoint online, so both engines get
`--quantization fp8`. For `int8`, `awq` and `gptq` the checkpoint carries its
quantization_config, which both engines read to pick their fastest kernel (vLLM upgrades
awq/gptq to its Marlin kernels only when the method is not forced), so no flag is passed:
forcing `awq` would select vLLM's slower kernel and `int8` has no single method name.
`none` passes nothing (DeepSeek-R1's own fp8 checkpoint is detected the same way).

The reasoning parser splits DeepSeek-R1's `<think>` section into `reasoning_content`. It is
set for catalog models (all of the R1 family); a custom model gets it only through
spec.engine.args, since not every model emits `<think>`.

API key (spec.engine.apiKeySecret; api/secrets.py has the engines' sources): vLLM reads
`VLLM_API_KEY`, which the container gets from the Secret by `secretKeyRef`; SGLang reads
only `--api-key`, so it gets `--api-key $(DEEPSEEK_ENGINE_API_KEY)` and that variable from
the Secret: the kubelet substitutes the value when it starts the container, so the pod
spec holds only the reference. spec.engine.args may not carry a secret flag (refused at
admission), so the operator's `$(...)` is the only one.

In multi-node replicas `$(LWS_LEADER_ADDRESS)` and `$(LWS_WORKER_INDEX)` are expanded by the
kubelet from the variables the LeaderWorkerSet controller injects into every container.

Flags the operator sets are listed once per engine (VLLM_FLAGS, SGLANG_FLAGS) and written
only through `_flag`, which refuses a flag missing from the list. spec.engine.args may not
set any of them: both engines take the last value of a repeated flag, so a user value
would silently win while status.sizing, the runtime ConfigMap, the probes and the Service
still describe the operator's.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from ..api import DeepSeekDeployment, EnvVar, FieldIssue, InvalidSpecError
from ..api.engine_args import flag_name, names_flag
from ..api.secrets import ENGINE_API_KEY_ENV, VLLM_API_KEY_ENV
from ..catalog import SizingResult, resolve_model
from .settings import RenderSettings

PodRole = Literal["single", "leader", "worker"]
"""A Deployment pod serves a whole replica; a LeaderWorkerSet leader serves the API for its
group and a worker only contributes GPUs."""

ENGINE_HOME: Final = "/home/engine"
"""Writable HOME (an emptyDir) for the non-root engine: Triton, torch.compile and FlashInfer
caches go under it."""

SGLANG_DIST_INIT_PORT: Final = 20000
"""Port on the leader where SGLang's nodes rendezvous (--dist-init-addr)."""

HEALTH_PATH: Final = "/health"
METRICS_PATH: Final = "/metrics"

BUSY_METRICS: Final[dict[str, tuple[str, ...]]] = {
    # vLLM V1 gauges (vllm/v1/metrics/loggers.py).
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    # SGLang gauges (docs: "Production Metrics").
    "sglang": ("sglang:num_running_reqs", "sglang:num_queue_reqs"),
}
"""Gauges that count requests in flight: the preStop drain waits for them to reach 0."""


@dataclass(frozen=True)
class OwnedFlag:
    """An engine flag the operator sets, which spec.engine.args therefore may not set.

    `names`: the flag as the operator writes it, then the aliases the engine also accepts
    (vLLM: `vllm serve --help`; SGLang: `launch_server --help`). `source`: where its value
    comes from, completing "<flag> is set by the operator ..." in the error message.
    `catalog_only`: owned only for catalog models (a custom model may set it itself).
    """

    names: tuple[str, ...]
    source: str
    catalog_only: bool = False


def _from_field(field: str) -> str:
    return f"from {field}; change that field instead"


_SIZING = ("from status.sizing, which follows spec.gpu.type and spec.gpu.count; change "
           "those fields instead")
_PORT = ("as the port the probes, the PodMonitor and the Service target; spec.service.port "
         "sets the port clients use")
_HOST = "to listen on all interfaces, for the probes and the Service; it cannot be changed"
_NODES = "from the replica's node layout (status.sizing.nodesPerReplica); it cannot be changed"
_DATA_PARALLEL = ("to 1: a pod holds one copy of the model on the GPUs status.sizing gives "
                  "it; for more copies raise replicas or autoscaling.maxReplicas")
_REASONING = ("for catalog models, whose replies all start with a <think> section; it "
              "cannot be changed")


def _table(*flags: OwnedFlag) -> dict[str, OwnedFlag]:
    return {flag.names[0]: flag for flag in flags}


VLLM_FLAGS: Final = _table(
    # The weights' directory is the positional argument; `--model` is its option form.
    OwnedFlag(("--model",), _from_field("spec.model.name and spec.model.uri")),
    OwnedFlag(("--served-model-name",), _from_field("spec.model.servedName")),
    OwnedFlag(("--port",), _PORT),
    OwnedFlag(("--host",), _HOST),  # not written: vLLM's default is all interfaces
    OwnedFlag(("--tensor-parallel-size", "-tp"), _SIZING),
    OwnedFlag(("--pipeline-parallel-size", "-pp"), _SIZING),
    OwnedFlag(("--data-parallel-size", "-dp"), _DATA_PARALLEL),  # not written: default 1
    OwnedFlag(("--max-model-len",), _from_field("spec.model.maxModelLen")),
    OwnedFlag(("--max-num-seqs",), _from_field("spec.gpu.maxConcurrentSequences")),
    OwnedFlag(("--gpu-memory-utilization",), _from_field("spec.engine.gpuMemoryUtilization")),
    OwnedFlag(("--quantization", "-q"), _from_field("spec.model.quantization")),
    OwnedFlag(("--reasoning-parser",), _REASONING, catalog_only=True),
    OwnedFlag(("--nnodes", "-n"), _NODES),
    OwnedFlag(("--node-rank", "-r"), _NODES),
    OwnedFlag(("--master-addr",), _NODES),
    OwnedFlag(("--headless",), _NODES),
)
"""Flags `vllm serve` gets from the operator, by the name the operator writes."""

SGLANG_FLAGS: Final = _table(
    OwnedFlag(("--model-path", "--model"), _from_field("spec.model.name and spec.model.uri")),
    OwnedFlag(("--served-model-name",), _from_field("spec.model.servedName")),
    OwnedFlag(("--host",), _HOST),
    OwnedFlag(("--port",), _PORT),
    OwnedFlag(("--tp-size", "--tensor-parallel-size"), _SIZING),
    OwnedFlag(("--pp-size", "--pipeline-parallel-size"), _SIZING),
    OwnedFlag(("--dp-size", "--data-parallel-size"), _DATA_PARALLEL),  # not written: default 1
    OwnedFlag(("--context-length",), _from_field("spec.model.maxModelLen")),
    OwnedFlag(("--max-running-requests",), _from_field("spec.gpu.maxConcurrentSequences")),
    OwnedFlag(("--mem-fraction-static",), _from_field("spec.engine.gpuMemoryUtilization")),
    OwnedFlag(("--enable-metrics",),
              "for the PodMonitor and the autoscaler's queries; it cannot be changed"),
    OwnedFlag(("--quantization",), _from_field("spec.model.quantization")),
    OwnedFlag(("--reasoning-parser",), _REASONING, catalog_only=True),
    OwnedFlag(("--api-key",), _from_field("spec.engine.apiKeySecret (a Secret)")),
    OwnedFlag(("--nnodes",), _NODES),
    OwnedFlag(("--node-rank",), _NODES),
    OwnedFlag(("--dist-init-addr",), _NODES),
)
"""Flags `sglang.launch_server` gets from the operator, by the name the operator writes."""


def _flag(owned: Mapping[str, OwnedFlag], name: str, *values: str) -> list[str]:
    """`[name, *values]` for the command line. Raises KeyError when `name` is not in
    `owned`: every flag the operator writes must be listed there, or spec.engine.args could
    override it unnoticed."""
    if name not in owned:
        raise KeyError(f"{name} is written by the operator but missing from its flag list")
    return [name, *values]


def owned_flags(dsd: DeepSeekDeployment) -> list[OwnedFlag]:
    """The flags of spec.engine.type that the operator sets for `dsd` (see OwnedFlag).

    Raises the catalog's UnknownNameError for a model neither in the catalog nor custom.
    """
    table = VLLM_FLAGS if dsd.spec.engine.type == "vllm" else SGLANG_FLAGS
    custom = resolve_model(dsd.spec.model).custom
    return [flag for flag in table.values() if not (custom and flag.catalog_only)]


_FLAG_AND_VALUE = re.compile(r"--?[A-Za-z][-\w]*\s")
"""`--flag value` or `-f value` in one string."""


def check_engine_args(dsd: DeepSeekDeployment) -> None:
    """Refuse spec.engine.args that set a flag the operator sets (see `owned_flags`),
    as `--flag value`, `--flag=value`, an alias or an abbreviation.

    Also refuses a flag and its value in one string (`"--foo 4"`), which the engine's
    argparse would take for a positional argument and fail on.

    Raises InvalidSpecError with one issue per offending element, its path
    `spec.engine.args[<index>]`, saying which spec field to change instead.
    """
    owned = owned_flags(dsd)
    issues: list[FieldIssue] = []
    for index, arg in enumerate(dsd.spec.engine.args):
        name = flag_name(arg)
        if name is None:
            continue
        joined = _FLAG_AND_VALUE.match(arg)
        if joined:  # argparse would take it for a positional argument
            # The value is not quoted: it may be a secret, and this message reaches status.
            issues.append(FieldIssue(f"spec.engine.args[{index}]",
                                     f"{joined.group().strip()} and its value are in one "
                                     "string: give them as two list elements"))
            continue
        for flag in owned:
            if names_flag(name, flag.names):
                given = name if name in flag.names else f"{name} (taken as {flag.names[0]})"
                issues.append(FieldIssue(f"spec.engine.args[{index}]",
                                         f"{given} is set by the operator {flag.source}"))
                break
    if issues:
        raise InvalidSpecError(issues)


def k8s_literal(text: str) -> str:
    """`text` escaped for a container's command, args or env value, where the kubelet would
    otherwise expand `$(VAR)`: `$$` stands for a literal `$`."""
    return text.replace("$", "$$")


@dataclass(frozen=True)
class EngineCommand:
    """What the engine container runs: `command`, `args` (operator's, then the user's) and
    `env` as Kubernetes EnvVar dicts (operator's sorted by name, then the user's in their
    order, so `$(VAR)` references among the user's keep working)."""

    command: list[str]
    args: list[str]
    env: list[dict[str, object]]


def served_model_name(dsd: DeepSeekDeployment) -> str:
    """Model name on the OpenAI API: spec.model.servedName, or spec.model.name."""
    return dsd.spec.model.served_name or dsd.spec.model.name


def engine_command(
    dsd: DeepSeekDeployment,
    sizing: SizingResult,
    settings: RenderSettings,
    model_dir: str,
    role: PodRole,
) -> EngineCommand:
    """The engine command line of a pod in `role`, serving the weights in `model_dir`.

    Raises InvalidSpecError naming the element of spec.engine.args that sets a flag the
    operator sets (see `check_engine_args`), and the catalog's UnknownNameError when the
    model is neither in the catalog nor custom (rendering resolves it before, so this does
    not happen in practice).
    """
    check_engine_args(dsd)
    build = _vllm if dsd.spec.engine.type == "vllm" else _sglang
    command, args = build(dsd, sizing, str(settings.engine_port), model_dir, role)
    return EngineCommand(command, args + list(dsd.spec.engine.args), engine_env(dsd))


def _vllm(dsd: DeepSeekDeployment, sizing: SizingResult, port: str, model_dir: str,
          role: PodRole) -> tuple[list[str], list[str]]:
    """(command, operator-owned args) of `vllm serve` (flags: VLLM_FLAGS)."""
    spec, flags = dsd.spec, VLLM_FLAGS
    args = [
        k8s_literal(model_dir),
        *_flag(flags, "--served-model-name", served_model_name(dsd)),
        *_flag(flags, "--port", port),
        *_flag(flags, "--tensor-parallel-size", str(sizing.tensor_parallel_size)),
        *_flag(flags, "--pipeline-parallel-size", str(sizing.pipeline_parallel_size)),
        *_flag(flags, "--max-model-len", str(spec.model.max_model_len)),
        *_flag(flags, "--max-num-seqs", str(spec.gpu.max_concurrent_sequences)),
        *_flag(flags, "--gpu-memory-utilization", repr(spec.engine.gpu_memory_utilization)),
    ]
    if spec.model.quantization == "fp8":
        args += _flag(flags, "--quantization", "fp8")
    if not resolve_model(spec.model).custom:
        args += _flag(flags, "--reasoning-parser", "deepseek_r1")
    if role != "single":
        args += [
            *_flag(flags, "--nnodes", str(sizing.nodes_per_replica)),
            *_flag(flags, "--node-rank", "0" if role == "leader" else "$(LWS_WORKER_INDEX)"),
            *_flag(flags, "--master-addr", "$(LWS_LEADER_ADDRESS)"),
        ]
    if role == "worker":
        args += _flag(flags, "--headless")
    return ["vllm", "serve"], args


def _sglang(dsd: DeepSeekDeployment, sizing: SizingResult, port: str, model_dir: str,
            role: PodRole) -> tuple[list[str], list[str]]:
    """(command, operator-owned args) of `sglang.launch_server` (flags: SGLANG_FLAGS)."""
    spec, flags = dsd.spec, SGLANG_FLAGS
    args = [
        *_flag(flags, "--model-path", k8s_literal(model_dir)),
        *_flag(flags, "--served-model-name", served_model_name(dsd)),
        *_flag(flags, "--host", "0.0.0.0"),
        *_flag(flags, "--port", port),
        *_flag(flags, "--tp-size", str(sizing.tensor_parallel_size)),
    ]
    if sizing.pipeline_parallel_size > 1:
        args += _flag(flags, "--pp-size", str(sizing.pipeline_parallel_size))
    if spec.engine.api_key_secret is not None:
        args += _flag(flags, "--api-key", f"$({ENGINE_API_KEY_ENV})")
    args += [
        *_flag(flags, "--context-length", str(spec.model.max_model_len)),
        *_flag(flags, "--max-running-requests", str(spec.gpu.max_concurrent_sequences)),
        *_flag(flags, "--mem-fraction-static", repr(spec.engine.gpu_memory_utilization)),
        *_flag(flags, "--enable-metrics"),
    ]
    if spec.model.quantization == "fp8":
        args += _flag(flags, "--quantization", "fp8")
    if not resolve_model(spec.model).custom:
        args += _flag(flags, "--reasoning-parser", "deepseek-r1")
    if role != "single":
        args += [
            *_flag(flags, "--nnodes", str(sizing.nodes_per_replica)),
            *_flag(flags, "--node-rank", "0" if role == "leader" else "$(LWS_WORKER_INDEX)"),
            *_flag(flags, "--dist-init-addr", f"$(LWS_LEADER_ADDRESS):{SGLANG_DIST_INIT_PORT}"),
        ]
    return ["python3", "-m", "sglang.launch_server"], args


def engine_env(dsd: DeepSeekDeployment) -> list[dict[str, object]]:
    """Environment of the engine container: the operator's variables sorted by name (the
    API key from spec.engine.apiKeySecret by `secretKeyRef`), then spec.engine.env in its
    order. A user variable with an operator variable's name
    replaces it (Kubernetes env lists are keyed by name under server-side apply)."""
    own = {
        "HF_HUB_OFFLINE": "1",  # weights are local; never reach for the hub while serving
        "HOME": ENGINE_HOME,
    }
    if dsd.spec.engine.type == "vllm":
        own["VLLM_NO_USAGE_STATS"] = "1"  # no usage reports from inside a cluster
    own_vars: dict[str, dict[str, object]] = {
        name: {"name": name, "value": value} for name, value in own.items()}
    key = dsd.spec.engine.api_key_secret
    if key is not None:
        name = VLLM_API_KEY_ENV if dsd.spec.engine.type == "vllm" else ENGINE_API_KEY_ENV
        own_vars[name] = {"name": name, "valueFrom": {
            "secretKeyRef": {"name": key.name, "key": key.key}}}
    user = [_env_var(var) for var in dsd.spec.engine.env]
    overridden = {var.name for var in dsd.spec.engine.env}
    mine = [var for name, var in sorted(own_vars.items()) if name not in overridden]
    return mine + user


def _env_var(var: EnvVar) -> dict[str, object]:
    entry: dict[str, object] = {"name": var.name}
    if var.value is not None:
        entry["value"] = var.value
    if var.value_from is not None:
        entry["valueFrom"] = var.value_from.model_dump(exclude_none=True)
    return entry
