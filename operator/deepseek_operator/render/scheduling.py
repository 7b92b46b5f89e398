"""Where the serving pods may run: GPU node affinity and tolerations, merged with the
user's spec.scheduling.

GPU nodes are recognised by the labels of NVIDIA GPU feature discovery:
`nvidia.com/gpu.product` (the catalog GPU's product string) when spec.gpu.type names a GPU,
else `nvidia.com/gpu.memory` (MiB per GPU) greater than what sizing needs. GPU nodes
commonly carry the `nvidia.com/gpu` NoSchedule taint, which the pods tolerate.
"""

from typing import Any, Final

from ..api import DeepSeekDeployment, FieldIssue, InvalidSpecError
from ..catalog import SizingResult, get_gpu

GPU_RESOURCE: Final = "nvidia.com/gpu"
GPU_PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL: Final = "nvidia.com/gpu.memory"

GPU_TOLERATION: Final[dict[str, str]] = {
    "key": GPU_RESOURCE,
    "operator": "Exists",
    "effect": "NoSchedule",
}

_AFFINITY = "spec.scheduling.affinity"


def gpu_requirement(sizing: SizingResult) -> dict[str, Any]:
    """The node selector requirement that picks nodes with the right GPUs.

    A named GPU type: its product label. No type (`sizing.any_gpu`): GPUs reporting at
    least `sizing.min_gpu_memory_mib` MiB (the `Gt` operator is strict, hence minus one).
    """
    if sizing.any_gpu:
        return {
            "key": GPU_MEMORY_LABEL,
            "operator": "Gt",
            "values": [str(sizing.min_gpu_memory_mib - 1)],
        }
    return {
        "key": GPU_PRODUCT_LABEL,
        "operator": "In",
        "values": [get_gpu(sizing.gpu_type).product],
    }


def pod_affinity(dsd: DeepSeekDeployment, sizing: SizingResult) -> dict[str, Any]:
    """spec.scheduling.affinity with the GPU requirement added to every required node
    selector term (terms are ORed, so each must carry it), or as the only term.

    Raises InvalidSpecError naming the part of spec.scheduling.affinity that is not shaped
    like a Kubernetes NodeAffinity where the requirement must be merged in. Everything
    else is passed through for the apiserver to validate.
    """
    user = dsd.spec.scheduling.affinity
    _no_fractions(user, _AFFINITY)
    node = _mapping(user.get("nodeAffinity", {}), f"{_AFFINITY}.nodeAffinity")
    required_path = f"{_AFFINITY}.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    required = _mapping(node.get("requiredDuringSchedulingIgnoredDuringExecution", {}),
                        required_path)
    terms = required.get("nodeSelectorTerms", [])
    if not isinstance(terms, list):
        raise _shape_error(f"{required_path}.nodeSelectorTerms", "a list of node selector terms")
    requirement = gpu_requirement(sizing)
    merged_terms: list[dict[str, Any]] = []
    for index, term in enumerate(terms):
        term_path = f"{required_path}.nodeSelectorTerms[{index}]"
        term = _mapping(term, term_path)
        expressions = term.get("matchExpressions", [])
        if not isinstance(expressions, list):
            raise _shape_error(f"{term_path}.matchExpressions", "a list of requirements")
        merged_terms.append({**term, "matchExpressions": [*expressions, requirement]})
    if not merged_terms:
        merged_terms = [{"matchExpressions": [requirement]}]
    return {
        **user,
        "nodeAffinity": {
            **node,
            "requiredDuringSchedulingIgnoredDuringExecution": {
                **required,
                "nodeSelectorTerms": merged_terms,
            },
        },
    }


def pod_tolerations(dsd: DeepSeekDeployment) -> list[dict[str, Any]]:
    """The nvidia.com/gpu toleration, then spec.scheduling.tolerations (minus a copy of it)."""
    user = [t.model_dump(exclude_none=True) for t in dsd.spec.scheduling.tolerations]
    user = [t for t in user if t != GPU_TOLERATION]
    return [dict(GPU_TOLERATION), *user]


def _no_fractions(value: Any, path: str) -> None:
    """Raise InvalidSpecError naming the first number with a fraction under ``path``: no
    field of a Kubernetes Affinity takes one (weights are integers, values strings), and
    the renderer writes only exact values."""
    if isinstance(value, float):
        raise InvalidSpecError([FieldIssue(path, f"{value!r} is not a valid value here: "
                                                 "Kubernetes wants an integer or a string")])
    if isinstance(value, dict):
        for key, item in value.items():
            _no_fractions(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_fractions(item, f"{path}[{index}]")


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _shape_error(path, "an object")
    return value


def _shape_error(path: str, expected: str) -> InvalidSpecError:
    return InvalidSpecError(
        [FieldIssue(path, f"must be {expected} (Kubernetes NodeAffinity) to merge the GPU "
                          "node requirement into it")]
    )
