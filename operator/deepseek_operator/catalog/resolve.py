"""Catalog facts for a DeepSeekDeployment spec: its model, GPU, weights URI, cache size and
sizing. What rendering and the controller call; pure (reads only the packaged catalog)."""

import math
from typing import Final

from ..api import (
    PRE_QUANTIZED,
    SINGLE_WRITER_ACCESS_MODES,
    DeepSeekDeploymentSpec,
    GPUSpec,
    ModelSpec,
)
from .errors import SizingError
from .facts import GIB, GPUFacts, ModelFacts
from .loader import get_gpu, get_model, model_catalog
from .quantity import quantity_bytes
from .sizing import REFERENCE_GPU, SizingResult, size_replica, weights_bytes

CACHE_HEADROOM: Final = 1.25
"""Model cache size = checkpoint size x 1.25 when spec.storage.size is empty (see its
description and docs/sizing.md)."""


def resolve_model(model: ModelSpec) -> ModelFacts:
    """Facts of the spec's model: `spec.model.facts` for a custom model, else the catalog.

    Raises UnknownNameError (spec.model.name) for a name the catalog lacks, and
    SizingError (spec.model.facts) when facts are given for a catalog name (ambiguous).
    """
    if model.facts is not None:
        if model.name in model_catalog():
            raise SizingError(
                "spec.model.facts",
                f"{model.name!r} is a catalog model: remove facts, or give the custom model "
                "another name",
            )
        return ModelFacts.from_custom(model.name, model.facts)
    return get_model(model.name)


def resolve_gpu(gpu: GPUSpec) -> tuple[GPUFacts, bool]:
    """The GPU to size against and whether the spec left the type open (`any_gpu`).

    An empty spec.gpu.type sizes against REFERENCE_GPU (see its docstring). Raises
    UnknownNameError (spec.gpu.type) for a name the catalog lacks.
    """
    if gpu.type == "":
        return get_gpu(REFERENCE_GPU), True
    return get_gpu(gpu.type), False


def model_uri(model: ModelSpec) -> str:
    """Where the weights come from: spec.model.uri, or hf://REPO of the catalog model.

    Raises UnknownNameError as `resolve_model` does.
    """
    if model.uri:
        return model.uri
    return f"hf://{resolve_model(model).repo}"


def cache_size(spec: DeepSeekDeploymentSpec) -> str:
    """Size of the model cache claim as a Kubernetes quantity: spec.storage.size, or the
    downloaded checkpoint (`checkpoint_bytes`) x CACHE_HEADROOM rounded up to whole GiB
    (e.g. "803Gi")."""
    if spec.storage.size:
        return spec.storage.size
    return _default_cache_size(spec)


def _default_cache_size(spec: DeepSeekDeploymentSpec) -> str:
    return f"{math.ceil(checkpoint_bytes(spec) * CACHE_HEADROOM / GIB)}Gi"


def checkpoint_bytes(spec: DeepSeekDeploymentSpec) -> float:
    """Bytes the download writes to the model cache: the native checkpoint (quantization
    none or fp8: the engine converts to fp8 online), or an int8/awq/gptq checkpoint
    estimated like the weights (`sizing.weights_bytes`).

    Raises UnknownNameError as `resolve_model` does.
    """
    facts = resolve_model(spec.model)
    if spec.model.quantization in PRE_QUANTIZED:
        return weights_bytes(facts, spec.model.quantization)
    return facts.checkpoint_bytes


def _check_cache_size(spec: DeepSeekDeploymentSpec) -> None:
    """Refuse a spec.storage.size the checkpoint cannot fit in (the API allows size only
    for a claim the operator creates and fills: not with existingClaim or pvc:// weights).

    Raises SizingError naming spec.storage.size, with both sizes in GiB.
    """
    storage = spec.storage
    if not storage.size:
        return
    requested = float(quantity_bytes(storage.size))
    needed = checkpoint_bytes(spec)
    if requested < needed:
        raise SizingError(
            "spec.storage.size",
            f"{storage.size} ({requested / GIB:.1f} GiB) cannot hold the checkpoint "
            f"({needed / GIB:.1f} GiB on disk): use at least {_default_cache_size(spec)} "
            "(checkpoint x 1.25), or leave it empty for that default",
        )


def size_deployment(spec: DeepSeekDeploymentSpec) -> SizingResult:
    """Size one replica of the spec (see `sizing.size_replica` for the formula).

    Also refuses a spec.storage.size smaller than the checkpoint, and a multi-node replica
    on a single-writer model cache the operator would create: a ReadWriteOnce volume
    attaches to one node, a ReadWriteOncePod one to one pod.

    Raises UnknownNameError or SizingError naming the spec field to change.
    """
    model = resolve_model(spec.model)
    gpu, any_gpu = resolve_gpu(spec.gpu)
    result = size_replica(
        model,
        gpu,
        quantization=spec.model.quantization,
        max_model_len=spec.model.max_model_len,
        max_concurrent_sequences=spec.gpu.max_concurrent_sequences,
        gpus_per_node=spec.gpu.per_node,
        gpu_memory_utilization=spec.engine.gpu_memory_utilization,
        gpu_count=spec.gpu.count,
        engine=spec.engine.type,
        kv_cache_format=spec.engine.kv_cache_format,
        any_gpu=any_gpu,
    )
    _check_cache_size(spec)
    storage = spec.storage
    if (
        result.nodes_per_replica > 1
        and not storage.existing_claim
        and storage.access_mode in SINGLE_WRITER_ACCESS_MODES
    ):
        raise SizingError(
            "spec.storage.accessMode",
            f"one replica spans {result.nodes_per_replica} nodes ({result.gpus_per_replica} x "
            f"{result.gpu_type}, TP {result.tensor_parallel_size} x PP "
            f"{result.pipeline_parallel_size}) but a {storage.access_mode} volume mounts on "
            "one node: use ReadWriteMany, or give existingClaim",
        )
    return result
