"""The packaged catalog: complete, internally consistent, equal to the project's shared facts,
and lookups that fail with the known names."""

import re
from typing import Any

import pytest

from deepseek_operator.api import CustomModelFacts, GPUSpec, ModelSpec, parse_spec
from deepseek_operator.catalog import (
    BYTES_PER_PARAM,
    REFERENCE_GPU,
    ModelFacts,
    SizingError,
    UnknownNameError,
    cache_size,
    get_gpu,
    get_model,
    gpu_catalog,
    model_catalog,
    model_uri,
    resolve_gpu,
    resolve_model,
)
from deepseek_operator.catalog.quantity import quantity_bytes

R1_FAMILY = [
    "deepseek-r1",
    "deepseek-r1-0528",
    "deepseek-r1-distill-qwen-1.5b",
    "deepseek-r1-distill-qwen-7b",
    "deepseek-r1-distill-qwen-14b",
    "deepseek-r1-distill-qwen-32b",
    "deepseek-r1-distill-llama-8b",
    "deepseek-r1-distill-llama-70b",
]
GPUS = [
    "A10G-24GB",
    "L4-24GB",
    "L40S-48GB",
    "A100-40GB",
    "A100-80GB",
    "H100-80GB",
    "H20-96GB",
    "H200-141GB",
    "B200-180GB",
]


def test_the_r1_family_and_the_gpus_are_there() -> None:
    assert list(model_catalog()) == R1_FAMILY
    assert list(gpu_catalog()) == GPUS
    assert REFERENCE_GPU in gpu_catalog()


@pytest.mark.parametrize("name", R1_FAMILY)
def test_kv_bytes_per_token_follows_from_the_architecture(name: str) -> None:
    m = get_model(name)
    if m.attention == "mla":
        assert m.kv_lora_rank and m.qk_rope_head_dim
        expected = m.num_hidden_layers * (m.kv_lora_rank + m.qk_rope_head_dim) * 2
    else:
        assert m.num_key_value_heads and m.head_dim
        expected = 2 * m.num_hidden_layers * m.num_key_value_heads * m.head_dim * 2
    assert m.kv_bytes_per_token == expected


@pytest.mark.parametrize("name", R1_FAMILY)
def test_disk_size_matches_parameters_in_the_native_dtype(name: str) -> None:
    m = get_model(name)
    from_params = m.params_total_b * 1e9 * BYTES_PER_PARAM[m.native_dtype]
    assert m.checkpoint_bytes == pytest.approx(from_params, rel=0.03)


@pytest.mark.parametrize("name", R1_FAMILY)
def test_every_model_names_its_sources(name: str) -> None:
    m = get_model(name)
    assert {"architecture", "params", "disk", "kv_bytes_per_token"} <= set(m.sources)
    assert m.repo.startswith("deepseek-ai/") and m.repo in m.sources["architecture"]


def test_same_as_copies_facts_but_not_identity() -> None:
    r1, r1_0528 = get_model("deepseek-r1"), get_model("deepseek-r1-0528")
    differ = {"name", "display_name", "repo", "sources"}
    assert r1.model_dump(exclude=differ) == r1_0528.model_dump(exclude=differ)
    assert r1_0528.repo == "deepseek-ai/DeepSeek-R1-0528"


def test_mixture_of_experts_and_kv_heads() -> None:
    assert get_model("deepseek-r1").is_moe and get_model("deepseek-r1").kv_heads == 1
    qwen = get_model("deepseek-r1-distill-qwen-7b")
    assert not qwen.is_moe and qwen.kv_heads == 4


@pytest.mark.parametrize("name", GPUS)
def test_fp8_follows_from_compute_capability(name: str) -> None:
    gpu = get_gpu(name)
    major, minor = (int(part) for part in gpu.compute_capability.split("."))
    assert gpu.fp8 == ((major, minor) >= (8, 9))
    assert gpu.memory_gib == gpu.memory_mib / 1024


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(UnknownNameError) as caught:
        get_model("deepseek-r2")
    assert caught.value.paths == ("spec.model.name",)
    assert "deepseek-r1-distill-llama-8b" in str(caught.value)
    assert "spec.model.facts" in str(caught.value)
    with pytest.raises(UnknownNameError) as caught:
        get_gpu("V100")
    assert caught.value.paths == ("spec.gpu.type",)
    assert caught.value.known == tuple(sorted(GPUS))


CUSTOM = CustomModelFacts(
    params_b=8.0,
    num_attention_heads=32,
    num_key_value_heads=8,
    num_hidden_layers=32,
    hidden_size=4096,
    kv_bytes_per_token=131072,
    max_position_embeddings=32768,
)


def test_custom_model_facts() -> None:
    facts = resolve_model(ModelSpec(name="my-llama", uri="s3://m/llama", facts=CUSTOM))
    assert facts.custom and facts.kv_heads == 8 and not facts.is_moe
    assert facts.checkpoint_bytes == 8.0e9 * 2  # no disk size: parameters x bf16
    mla = CUSTOM.model_copy(update={"attention": "mla", "active_params_b": 2.0})
    as_mla = ModelFacts.from_custom("x", mla)
    assert as_mla.kv_heads == 1 and as_mla.is_moe


def test_facts_for_a_catalog_name_are_ambiguous() -> None:
    spec = ModelSpec(name="deepseek-r1", uri="hf://a/b", facts=CUSTOM)
    with pytest.raises(SizingError) as caught:
        resolve_model(spec)
    assert caught.value.field == "spec.model.facts"


def test_gpu_resolution_and_the_reference_gpu() -> None:
    assert resolve_gpu(parse_spec({"model": {"name": "m"}}).gpu) == (get_gpu(REFERENCE_GPU), True)
    named = parse_spec({"model": {"name": "m"}, "gpu": {"type": "L4-24GB"}}).gpu
    assert resolve_gpu(named) == (get_gpu("L4-24GB"), False)


def test_gpu_type_description_names_the_reference_gpu() -> None:
    description = GPUSpec.model_fields["type"].description
    assert description is not None and REFERENCE_GPU in description


def test_model_uri_defaults_to_the_catalog_repository() -> None:
    assert model_uri(ModelSpec(name="deepseek-r1")) == "hf://deepseek-ai/DeepSeek-R1"
    assert model_uri(ModelSpec(name="deepseek-r1", uri="pvc://cache/r1")) == "pvc://cache/r1"


@pytest.mark.parametrize(
    ("spec", "size"),
    [
        # 689 GB x 1.25 = 861.25e9 bytes = 802.1 GiB, rounded up
        ({"model": {"name": "deepseek-r1"}}, "803Gi"),
        # fp8 of a bf16 model downloads the bf16 checkpoint: 15.2 GB x 1.25 = 17.7 GiB
        ({"model": {"name": "deepseek-r1-distill-qwen-7b", "quantization": "fp8"}}, "18Gi"),
        # an AWQ checkpoint: 7.62e9 x 0.5195 x 1.03 x 1.25 = 4.7 GiB
        (
            {
                "model": {
                    "name": "deepseek-r1-distill-qwen-7b",
                    "quantization": "awq",
                    "uri": "hf://a/b",
                }
            },
            "5Gi",
        ),
        ({"model": {"name": "deepseek-r1"}, "storage": {"size": "1Ti"}}, "1Ti"),
    ],
)
def test_cache_size(spec: dict[str, Any], size: str) -> None:
    assert cache_size(parse_spec(spec)) == size


@pytest.mark.parametrize(("text", "expect"), [
    ("900Gi", 900 * 2**30), ("1.5T", 1_500_000_000_000), ("100", 100), ("1Ki", 1024),
    ("0.5Mi", 2**19), ("2E", 2 * 10**18),
])
def test_storage_quantities_in_bytes(text: str, expect: int) -> None:
    assert quantity_bytes(text) == expect


@pytest.mark.parametrize("text", ["", "1.", "-1Gi", "1gi", "1 Gi", "1e9", "500m", "Gi"])
def test_what_is_not_a_storage_quantity_is_refused_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        quantity_bytes(text)
