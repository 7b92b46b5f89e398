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

In multi-node replicas `$(LWS_LEADER_ADDRESS)` and `$(LWS_WORKER_INDEX)` are expanded by the
kubelet from the variables the LeaderWorkerSet controller injects into every container.
"""

from dataclasses import dataclass
from typing import Final, Literal

from ..api import DeepSeekDeployment, EnvVar
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

    Raises the catalog's UnknownNameError when the model is neither in the catalog nor
    custom (rendering resolves it before, so this does not happen in practice).
    """
    spec = dsd.spec
    reasoning = not resolve_model(spec.model).custom
    port = str(settings.engine_port)
    if spec.engine.type == "vllm":
        command = ["vllm", "serve"]
        args = [
            k8s_literal(model_dir),
            "--served-model-name",
            served_model_name(dsd),
            "--port",
            port,
            "--tensor-parallel-size",
            str(sizing.tensor_parallel_size),
            "--pipeline-parallel-size",
            str(sizing.pipeline_parallel_size),
            "--max-model-len",
            str(spec.model.max_model_len),
            "--max-num-seqs",
            str(spec.gpu.max_concurrent_sequences),
            "--gpu-memory-utilization",
            repr(spec.engine.gpu_memory_utilization),
        ]
        if spec.model.quantization == "fp8":
            args += ["--quantization", "fp8"]
        if reasoning:
            args += ["--reasoning-parser", "deepseek_r1"]
        if role != "single":
            args += [
                "--nnodes",
                str(sizing.nodes_per_replica),
                "--node-rank",
                "0" if role == "leader" else "$(LWS_WORKER_INDEX)",
                "--master-addr",
                "$(LWS_LEADER_ADDRESS)",
            ]
        if role == "worker":
            args.append("--headless")
    else:
        command = ["python3", "-m", "sglang.launch_server"]
        args = [
            "--model-path",
            k8s_literal(model_dir),
            "--served-model-name",
            served_model_name(dsd),
            "--host",
            "0.0.0.0",
            "--port",
            port,
            "--tp-size",
            str(sizing.tensor_parallel_size),
        ]
        if sizing.pipeline_parallel_size > 1:
            args += ["--pp-size", str(sizing.pipeline_parallel_size)]
        args += [
            "--context-length",
            str(spec.model.max_model_len),
            "--max-running-requests",
            str(spec.gpu.max_concurrent_sequences),
            "--mem-fraction-static",
            repr(spec.engine.gpu_memory_utilization),
            "--enable-metrics",
        ]
        if spec.model.quantization == "fp8":
            args += ["--quantization", "fp8"]
        if reasoning:
            args += ["--reasoning-parser", "deepseek-r1"]
        if role != "single":
            args += [
                "--nnodes",
                str(sizing.nodes_per_replica),
                "--node-rank",
                "0" if role == "leader" else "$(LWS_WORKER_INDEX)",
                "--dist-init-addr",
                f"$(LWS_LEADER_ADDRESS):{SGLANG_DIST_INIT_PORT}",
            ]
    return EngineCommand(command, args + list(spec.engine.args), engine_env(dsd))


def engine_env(dsd: DeepSeekDeployment) -> list[dict[str, object]]:
    """Environment of the engine container: the operator's variables sorted by name, then
    spec.engine.env in its order. A user variable with an operator variable's name
    replaces it (Kubernetes env lists are keyed by name under server-side apply)."""
    own = {
        "HF_HUB_OFFLINE": "1",  # weights are local; never reach for the hub while serving
        "HOME": ENGINE_HOME,
    }
    if dsd.spec.engine.type == "vllm":
        own["VLLM_NO_USAGE_STATS"] = "1"  # no usage reports from inside a cluster
    user = [_env_var(var) for var in dsd.spec.engine.env]
    overridden = {var.name for var in dsd.spec.engine.env}
    mine: list[dict[str, object]] = [
        {"name": name, "value": value} for name, value in sorted(own.items())
        if name not in overridden
    ]
    return mine + user


def _env_var(var: EnvVar) -> dict[str, object]:
    entry: dict[str, object] = {"name": var.name}
    if var.value is not None:
        entry["value"] = var.value
    if var.value_from is not None:
        entry["valueFrom"] = var.value_from
    return entry
