"""Facts about models and GPUs (package data), and GPU sizing as pure functions.

Everything public is re-exported here (facts, loader, sizing, resolve, errors are stable
import paths too). Imports only `api`.
"""

from .errors import SizingError, UnknownNameError
from .facts import BYTES_PER_PARAM, GB, GIB, MIB, GPUFacts, ModelFacts, WeightFormat
from .loader import CatalogDataError, get_gpu, get_model, gpu_catalog, model_catalog
from .resolve import (
    CACHE_HEADROOM,
    cache_size,
    checkpoint_bytes,
    model_uri,
    resolve_gpu,
    resolve_model,
    size_deployment,
)
from .sizing import (
    ACTIVATION_HIDDEN_MULTIPLE,
    ACTIVATION_TOKENS,
    KV_BYTES_PER_ELEMENT,
    MAX_NODES_PER_REPLICA,
    QUANTIZED_ALLOWANCE,
    REFERENCE_GPU,
    RUNTIME_FIXED_GIB,
    Layout,
    LayoutError,
    SizingResult,
    bytes_per_gpu,
    candidate_gpu_counts,
    kv_bytes_per_token,
    kv_cache_bytes,
    layout_for_gpus,
    overhead_bytes_per_gpu,
    size_replica,
    weight_format,
    weights_bytes,
)

__all__ = [
    "ACTIVATION_HIDDEN_MULTIPLE",
    "ACTIVATION_TOKENS",
    "BYTES_PER_PARAM",
    "CACHE_HEADROOM",
    "GB",
    "GIB",
    "KV_BYTES_PER_ELEMENT",
    "MAX_NODES_PER_REPLICA",
    "MIB",
    "QUANTIZED_ALLOWANCE",
    "REFERENCE_GPU",
    "RUNTIME_FIXED_GIB",
    "CatalogDataError",
    "GPUFacts",
    "Layout",
    "LayoutError",
    "ModelFacts",
    "SizingError",
    "SizingResult",
    "UnknownNameError",
    "WeightFormat",
    "bytes_per_gpu",
    "cache_size",
    "candidate_gpu_counts",
    "checkpoint_bytes",
    "get_gpu",
    "get_model",
    "gpu_catalog",
    "kv_bytes_per_token",
    "kv_cache_bytes",
    "layout_for_gpus",
    "model_catalog",
    "model_uri",
    "overhead_bytes_per_gpu",
    "resolve_gpu",
    "resolve_model",
    "size_deployment",
    "size_replica",
    "weight_format",
    "weights_bytes",
]
