"""GPU sizing of one replica: pure functions from model facts and serving settings to the
GPUs, the tensor/pipeline-parallel layout and the memory a replica needs.

Formula (docs/sizing.md explains it), for the most loaded GPU of a layout TP x PP::

    need   = weights x stage / TP  +  KV cache x stage / min(TP, kv_heads)  +  overhead
    usable = GPU memory (nvidia.com/gpu.memory, MiB) x gpuMemoryUtilization

- weights: for the checkpoint's own format (quantization none, or fp8 of an fp8
  checkpoint) its size on disk, disk_gb x 1e9 bytes (GB, not GiB). Otherwise parameters x
  bytes per parameter (fp8 1, int8 1, awq/gptq int4 0.5 + group-128 scales and zeros)
  x 1.03 for what quantized checkpoints keep in 16 bits (embeddings, lm_head, norms, MoE
  router) and their quantization scales.
- KV cache: kv_bytes_per_token x maxModelLen x maxConcurrentSequences: a KV cache
  holding every sequence at full length, 16-bit, or fp8 at half the bytes when
  spec.engine.args ask for an fp8 --kv-cache-dtype (api.engine_args). Tensor parallelism
  shards KV heads but each rank keeps at least one, so a rank holds 1/min(TP, kv_heads)
  of it: multi-head latent attention (DeepSeek-R1) has a single latent "head", which
  every rank holds in full (vLLM and SGLang without data-parallel attention).
- stage: pipeline parallelism splits the layers; the largest stage has ceil(layers / PP).
- overhead per GPU: RUNTIME_FIXED_GIB for CUDA graphs, NCCL buffers and other non-PyTorch
  allocations, plus the activations of one engine step: ACTIVATION_TOKENS tokens (8192,
  the batched-token budget vLLM's OpenAI server and SGLang's chunked prefill default to on
  data-centre GPUs) x hidden_size x 2 bytes x ACTIVATION_HIDDEN_MULTIPLE. The multiple
  bounds the tensors alive per token at the MLP peak, (2 x hidden + 3 x intermediate)
  16-bit values, for intermediate sizes up to ~5.4 x hidden (Qwen2.5-32B), and ignores
  that TP shards the intermediate: an overestimate on purpose. Engines measure the real
  peak at start-up and give the rest of their budget to the KV cache, so overestimating
  costs KV blocks, not a crash.

Layout: a GPU count is split as TP = the largest power of two dividing the count and the
attention heads (and, across nodes, the GPUs per node), PP = count / TP. Sizing tries counts
from small to large: powers of two up to one node (TP grows first: it is the smallest
power of two that fits and divides the heads; when the heads stop it, the node's remaining
GPUs become pipeline stages), then 2, 3, ... whole nodes, where TP is the per-node power
of two and PP spans the nodes (one pod per node). The first that fits wins.

FP8 on GPUs without FP8 tensor cores (Ampere: A10G, A100): vLLM serves FP8 weights as
weight-only W8A16 through its Marlin kernels, dense and mixture-of-experts alike (vLLM
docs, "FP8 W8A8"), so memory is sized as fp8 and `fp8_weight_only` is set. SGLang has the
same fallback for dense layers but not for FP8 mixture-of-experts layers, so an FP8 MoE
model (DeepSeek-R1) with SGLang on such a GPU is refused with the reason (its own
DeepSeek guide serves A100 with BF16, INT8 or AWQ weights instead).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..api import EngineType, KVCacheFormat, Quantization, SizingStatus
from .errors import SizingError
from .facts import BYTES_PER_PARAM, GIB, MIB, GPUFacts, ModelFacts, WeightFormat

QUANTIZED_ALLOWANCE: Final = 1.03
RUNTIME_FIXED_GIB: Final = 1.5
ACTIVATION_TOKENS: Final = 8192
ACTIVATION_HIDDEN_MULTIPLE: Final = 18
MAX_NODES_PER_REPLICA: Final = 8
"""Sizing gives up beyond this many nodes per replica: lower the context or quantize."""

REFERENCE_GPU: Final = "H100-80GB"
"""GPU sized against when spec.gpu.type is empty ("any node with enough memory"). The
result's `min_gpu_memory_mib` is the nvidia.com/gpu.memory a node's GPUs must report for
that layout; rendering requires it, so any GPU at least that large holds its share."""

KV_BYTES_PER_ELEMENT: Final[dict[KVCacheFormat, int]] = {"16-bit": 2, "fp8": 1}
"""Bytes of one KV cache element in each format (spec.engine.args --kv-cache-dtype)."""

_QUANTIZED_FORMAT: Final[dict[Quantization, WeightFormat]] = {
    "fp8": "fp8",
    "int8": "int8",
    "awq": "int4",
    "gptq": "int4",
}


@dataclass(frozen=True)
class Layout:
    """How one replica's GPUs are split: TP x PP GPUs in `nodes` pods of `gpus_per_pod`."""

    tensor_parallel_size: int
    pipeline_parallel_size: int
    gpus_per_pod: int
    nodes: int

    @property
    def gpus(self) -> int:
        """GPUs of the replica."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    def describe(self) -> str:
        """E.g. `TP 8 x PP 2 over 2 nodes`."""
        where = f" over {self.nodes} nodes" if self.nodes > 1 else ""
        return f"TP {self.tensor_parallel_size} x PP {self.pipeline_parallel_size}{where}"


class LayoutError(ValueError):
    """A GPU count that no tensor x pipeline split can use; the message says why."""


def layout_for_gpus(
    gpus: int, *, num_attention_heads: int, num_hidden_layers: int, gpus_per_node: int
) -> Layout:
    """Split `gpus` GPUs into TP x PP (see the module docstring).

    Raises LayoutError when `gpus` is above `gpus_per_node` but not a multiple of it, or
    needs more pipeline stages than the model has layers.
    """
    if gpus < 1:
        raise LayoutError(f"{gpus} GPUs: a replica needs at least one")
    nodes = 1
    shared = math.gcd(gpus, num_attention_heads)
    if gpus > gpus_per_node:
        if gpus % gpus_per_node:
            raise LayoutError(
                f"{gpus} GPUs cannot be split evenly over nodes of {gpus_per_node} GPUs: use "
                f"at most {gpus_per_node} or a multiple of {gpus_per_node}"
            )
        nodes = gpus // gpus_per_node
        shared = math.gcd(gpus_per_node, num_attention_heads)
    tensor_parallel = shared & -shared  # largest power of two dividing `shared`
    pipeline_parallel = gpus // tensor_parallel
    if pipeline_parallel > num_hidden_layers:
        raise LayoutError(
            f"{gpus} GPUs would need {pipeline_parallel} pipeline stages (tensor parallel "
            f"{tensor_parallel} must divide the {num_attention_heads} attention heads) but "
            f"the model has {num_hidden_layers} layers"
        )
    return Layout(tensor_parallel, pipeline_parallel, gpus // nodes, nodes)


def candidate_gpu_counts(gpus_per_node: int, max_nodes: int = MAX_NODES_PER_REPLICA) -> list[int]:
    """GPU counts automatic sizing tries, smallest first (see the module docstring)."""
    counts = {1 << i for i in range(gpus_per_node.bit_length()) if 1 << i <= gpus_per_node}
    counts |= {gpus_per_node * nodes for nodes in range(1, max_nodes + 1)}
    return sorted(counts)


def weight_format(model: ModelFacts, quantization: Quantization) -> WeightFormat:
    """The format weights are stored in on the GPU: the native dtype for `none`."""
    if quantization == "none":
        return model.native_dtype
    return _QUANTIZED_FORMAT[quantization]


def weights_bytes(model: ModelFacts, quantization: Quantization) -> float:
    """Bytes of one replica's weights (see the module docstring)."""
    fmt = weight_format(model, quantization)
    if fmt == model.native_dtype:
        return model.checkpoint_bytes
    return model.params_total_b * 1e9 * BYTES_PER_PARAM[fmt] * QUANTIZED_ALLOWANCE


def kv_bytes_per_token(model: ModelFacts, kv_cache_format: KVCacheFormat = "16-bit") -> int:
    """Bytes of KV cache per token over all layers: the model's 16-bit figure, halved
    (rounded up) for an fp8 KV cache."""
    return math.ceil(model.kv_bytes_per_token * KV_BYTES_PER_ELEMENT[kv_cache_format] / 2)


def kv_cache_bytes(
    model: ModelFacts,
    max_model_len: int,
    max_concurrent_sequences: int,
    kv_cache_format: KVCacheFormat = "16-bit",
) -> float:
    """Bytes of KV cache in `kv_cache_format` for `max_concurrent_sequences` sequences of
    `max_model_len` tokens."""
    per_token = kv_bytes_per_token(model, kv_cache_format)
    return float(per_token * max_model_len * max_concurrent_sequences)


def overhead_bytes_per_gpu(model: ModelFacts) -> float:
    """Runtime overhead on each GPU: fixed allowance plus one step's activations."""
    activations = ACTIVATION_TOKENS * model.hidden_size * 2 * ACTIVATION_HIDDEN_MULTIPLE
    return RUNTIME_FIXED_GIB * GIB + activations


def bytes_per_gpu(model: ModelFacts, layout: Layout, weights: float, kv_cache: float) -> float:
    """Memory the most loaded GPU of `layout` needs for `weights` and `kv_cache` bytes."""
    layers = model.num_hidden_layers
    stage = math.ceil(layers / layout.pipeline_parallel_size) / layers
    tensor_parallel = layout.tensor_parallel_size
    return (
        weights * stage / tensor_parallel
        + kv_cache * stage / min(tensor_parallel, model.kv_heads)
        + overhead_bytes_per_gpu(model)
    )


@dataclass(frozen=True)
class SizingResult:
    """The GPUs and memory of one replica. Memory in GiB (2^30 bytes).

    `weights_gib` and `kv_cache_gib` are one copy for the whole replica; `overhead_gib`
    sums every GPU's overhead. `memory_per_gpu_gib` is what the most loaded GPU needs
    (it counts KV heads every tensor-parallel rank must hold); `usable_gib_per_gpu` what
    one GPU offers. `min_gpu_memory_mib` is the smallest nvidia.com/gpu.memory label
    value (MiB) of a GPU that holds the per-GPU need at this utilisation: rendering
    requires it when `any_gpu` is true.

    `weight_format` is how weights sit in GPU memory (the native dtype for quantization
    none). `fp8_weight_only` is true when FP8 weights run on this GPU without FP8 tensor
    cores (vLLM's Marlin W8A16 path). `requires_fp8_gpu` is true when the engine cannot run
    these weights without FP8 tensor cores at all (SGLang with an FP8 mixture of experts):
    with `any_gpu`, rendering must then also require such a GPU. `kv_cache_format` is how
    the KV cache stores an element and `kv_bytes_per_token` its bytes per token in that
    format (half the model's 16-bit figure for fp8).
    """

    model: str
    gpu_type: str
    any_gpu: bool
    engine: EngineType
    quantization: Quantization
    weight_format: WeightFormat
    fp8_weight_only: bool
    requires_fp8_gpu: bool
    max_model_len: int
    max_concurrent_sequences: int
    kv_cache_format: KVCacheFormat
    kv_bytes_per_token: int
    gpu_memory_utilization: float
    tensor_parallel_size: int
    pipeline_parallel_size: int
    gpus_per_replica: int
    gpus_per_pod: int
    nodes_per_replica: int
    weights_gib: float
    kv_cache_gib: float
    overhead_gib: float
    overhead_per_gpu_gib: float
    memory_per_gpu_gib: float
    usable_gib_per_gpu: float
    gpu_memory_gib: float
    min_gpu_memory_mib: int

    @property
    def total_gib(self) -> float:
        """weights + KV cache + overhead of the replica."""
        return self.weights_gib + self.kv_cache_gib + self.overhead_gib

    @property
    def gpu_memory_required_gib(self) -> float:
        """GPU memory the replica needs over all its GPUs (per-GPU need x GPUs)."""
        return self.memory_per_gpu_gib * self.gpus_per_replica

    def to_status(self) -> SizingStatus:
        """The `status.sizing` block, GiB rounded to 0.1."""
        return SizingStatus(
            gpu_type=self.gpu_type,
            gpus_per_replica=self.gpus_per_replica,
            gpus_per_pod=self.gpus_per_pod,
            tensor_parallel_size=self.tensor_parallel_size,
            pipeline_parallel_size=self.pipeline_parallel_size,
            nodes_per_replica=self.nodes_per_replica,
            gpu_memory_required_gib=round(self.gpu_memory_required_gib, 1),
            memory_per_gpu_gib=round(self.memory_per_gpu_gib, 1),
            weights_gib=round(self.weights_gib, 1),
            kv_cache_gib=round(self.kv_cache_gib, 1),
        )


def size_replica(
    model: ModelFacts,
    gpu: GPUFacts,
    *,
    quantization: Quantization = "none",
    max_model_len: int,
    max_concurrent_sequences: int,
    gpus_per_node: int = 8,
    gpu_memory_utilization: float = 0.9,
    gpu_count: int = 0,
    engine: EngineType = "vllm",
    kv_cache_format: KVCacheFormat = "16-bit",
    any_gpu: bool = False,
    max_nodes: int = MAX_NODES_PER_REPLICA,
) -> SizingResult:
    """Size one replica of `model` on `gpu` GPUs (formula and sources: module docstring).

    `gpu_count` 0 chooses the smallest layout that fits; otherwise that many GPUs must fit
    and split into TP x PP. `kv_cache_format` fp8 halves the KV cache (spec.engine.args
    --kv-cache-dtype). `any_gpu` records that the spec named no GPU type and `gpu` is the
    reference GPU.

    Raises SizingError naming the spec field to change, with the numbers:
    spec.model.maxModelLen (beyond the model's context, or the KV cache does not fit),
    spec.gpu.count (too few GPUs, or a count no layout can use), spec.gpu.type (the
    weights do not fit in `max_nodes` nodes), spec.model.quantization (the engine cannot
    run this weight format on this GPU).
    """
    _check_inputs(
        model,
        max_model_len,
        max_concurrent_sequences,
        gpus_per_node,
        gpu_memory_utilization,
        gpu_count,
    )
    fmt = weight_format(model, quantization)
    fp8_without_tensor_cores = fmt == "fp8" and not gpu.fp8
    engine_needs_fp8_cores = engine == "sglang" and fmt == "fp8" and model.is_moe
    if engine_needs_fp8_cores and fp8_without_tensor_cores:
        raise SizingError("spec.model.quantization", _sglang_fp8_message(model, gpu, quantization))

    weights = weights_bytes(model, quantization)
    kv_cache = kv_cache_bytes(model, max_model_len, max_concurrent_sequences, kv_cache_format)
    usable = gpu.memory_mib * MIB * gpu_memory_utilization

    def layout_of(count: int) -> Layout:
        return layout_for_gpus(
            count,
            num_attention_heads=model.num_attention_heads,
            num_hidden_layers=model.num_hidden_layers,
            gpus_per_node=gpus_per_node,
        )

    def fits(layout: Layout) -> bool:
        return bytes_per_gpu(model, layout, weights, kv_cache) <= usable

    smallest = _smallest_fit(candidate_gpu_counts(gpus_per_node, max_nodes), layout_of, fits)
    if gpu_count:
        try:
            layout = layout_of(gpu_count)
        except LayoutError as error:
            raise SizingError("spec.gpu.count", str(error)) from None
        if not fits(layout):
            hint = (
                f"the smallest layout that fits is {smallest.gpus} x {gpu.name} "
                f"({smallest.describe()}): set spec.gpu.count to {smallest.gpus} or 0"
                if smallest
                else "no layout within "
                f"{max_nodes} nodes fits: lower maxModelLen, quantize or choose a larger GPU"
            )
            raise SizingError(
                "spec.gpu.count",
                _shortfall(
                    model, gpu, layout, weights, kv_cache, usable, fmt, gpu_memory_utilization
                )
                + f"; {hint}",
            )
    elif smallest:
        layout = smallest
    else:
        raise _no_fit(
            model,
            gpu,
            layout_of,
            gpus_per_node,
            max_nodes,
            weights,
            kv_cache,
            usable,
            fmt,
            gpu_memory_utilization,
        )

    per_gpu = bytes_per_gpu(model, layout, weights, kv_cache)
    overhead = overhead_bytes_per_gpu(model)
    return SizingResult(
        model=model.name,
        gpu_type=gpu.name,
        any_gpu=any_gpu,
        engine=engine,
        quantization=quantization,
        weight_format=fmt,
        fp8_weight_only=fp8_without_tensor_cores,
        requires_fp8_gpu=engine_needs_fp8_cores,
        max_model_len=max_model_len,
        max_concurrent_sequences=max_concurrent_sequences,
        kv_cache_format=kv_cache_format,
        kv_bytes_per_token=kv_bytes_per_token(model, kv_cache_format),
        gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=layout.tensor_parallel_size,
        pipeline_parallel_size=layout.pipeline_parallel_size,
        gpus_per_replica=layout.gpus,
        gpus_per_pod=layout.gpus_per_pod,
        nodes_per_replica=layout.nodes,
        weights_gib=weights / GIB,
        kv_cache_gib=kv_cache / GIB,
        overhead_gib=overhead * layout.gpus / GIB,
        overhead_per_gpu_gib=overhead / GIB,
        memory_per_gpu_gib=per_gpu / GIB,
        usable_gib_per_gpu=usable / GIB,
        gpu_memory_gib=gpu.memory_gib,
        min_gpu_memory_mib=math.ceil(per_gpu / MIB / gpu_memory_utilization),
    )


def _smallest_fit(
    counts: list[int], layout_of: Callable[[int], Layout], fits: Callable[[Layout], bool]
) -> Layout | None:
    for count in counts:
        try:
            candidate = layout_of(count)
        except LayoutError:
            continue
        if fits(candidate):
            return candidate
    return None


def _check_inputs(
    model: ModelFacts,
    max_model_len: int,
    max_concurrent_sequences: int,
    gpus_per_node: int,
    gpu_memory_utilization: float,
    gpu_count: int,
) -> None:
    if max_model_len < 1 or max_model_len > model.max_position_embeddings:
        raise SizingError(
            "spec.model.maxModelLen",
            f"{max_model_len} tokens: {model.name} supports 1 to "
            f"{model.max_position_embeddings} (max_position_embeddings)",
        )
    if max_concurrent_sequences < 1:
        raise SizingError("spec.gpu.maxConcurrentSequences", "must be at least 1")
    if gpus_per_node < 1:
        raise SizingError("spec.gpu.perNode", "must be at least 1")
    if not 0 < gpu_memory_utilization <= 1:
        raise SizingError("spec.engine.gpuMemoryUtilization", "must be in (0, 1]")
    if gpu_count < 0:
        raise SizingError("spec.gpu.count", "must be 0 (sized by the operator) or more")


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def _what(model: ModelFacts, fmt: WeightFormat) -> str:
    return f"{model.name} ({fmt} weights)"


def _usable(gpu: GPUFacts, usable: float, utilization: float) -> str:
    # A utilization other than the default is named: it may be what does not fit.
    field = "" if utilization == 0.9 else ", spec.engine.gpuMemoryUtilization"
    return f"{_gib(usable)} usable ({gpu.memory_gib:.1f} GiB x {utilization:.2f}{field})"


def _shortfall(
    model: ModelFacts,
    gpu: GPUFacts,
    layout: Layout,
    weights: float,
    kv_cache: float,
    usable: float,
    fmt: WeightFormat,
    utilization: float,
) -> str:
    overhead = overhead_bytes_per_gpu(model)
    need = bytes_per_gpu(model, layout, weights, kv_cache)
    return (
        f"{_what(model, fmt)} needs ~{_gib(weights + kv_cache + overhead * layout.gpus)} per "
        f"replica (weights {_gib(weights)} + KV cache {_gib(kv_cache)} + overhead "
        f"{_gib(overhead)} per GPU); on {layout.gpus} x {gpu.name} ({layout.describe()}) the "
        f"most loaded GPU needs {_gib(need)} but each gives {_usable(gpu, usable, utilization)}"
    )


def _no_fit(
    model: ModelFacts,
    gpu: GPUFacts,
    layout_of: Callable[[int], Layout],
    gpus_per_node: int,
    max_nodes: int,
    weights: float,
    kv_cache: float,
    usable: float,
    fmt: WeightFormat,
    utilization: float,
) -> SizingError:
    largest: Layout | None = None
    for count in reversed(candidate_gpu_counts(gpus_per_node, max_nodes)):
        try:
            largest = layout_of(count)
            break
        except LayoutError:
            continue
    if largest is None:  # every count needs more pipeline stages than the model has layers
        return SizingError(
            "spec.gpu.perNode",
            f"no split of up to {max_nodes} nodes of {gpus_per_node} GPUs suits {model.name}",
        )
    detail = _shortfall(model, gpu, largest, weights, kv_cache, usable, fmt, utilization)
    if bytes_per_gpu(model, largest, weights, 0.0) > usable:
        return SizingError(
            "spec.gpu.type",
            f"{detail}; that is the largest layout tried ({max_nodes} nodes of {gpus_per_node} "
            "GPUs) and the weights alone do not fit: choose a GPU with more memory or a "
            "smaller quantization",
        )
    return SizingError(
        "spec.model.maxModelLen",
        f"{detail}; that is the largest layout tried ({max_nodes} nodes of {gpus_per_node} "
        "GPUs) and the KV cache is what does not fit: lower maxModelLen or "
        "spec.gpu.maxConcurrentSequences",
    )


def _sglang_fp8_message(model: ModelFacts, gpu: GPUFacts, quantization: Quantization) -> str:
    served = "the checkpoint's native fp8" if quantization == "none" else "fp8"
    return (
        f"SGLang cannot serve {model.name} as {served} weights on {gpu.name}: the model is a "
        f"mixture of experts and {gpu.family} GPUs (compute capability "
        f"{gpu.compute_capability}) have no FP8 tensor cores, for which SGLang has no "
        "weight-only fallback; use engine.type vllm (FP8 weight-only through Marlin "
        "kernels), a checkpoint quantized to int8 or awq in spec.model.uri, or a GPU with "
        "FP8 (compute capability 8.9 or newer)"
    )
