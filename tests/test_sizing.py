"""GPU sizing: public engine recipes, the formula on worked cases, every catalog model on
every GPU, and errors that carry the numbers."""

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_operator.api import CustomModelFacts, parse_spec
from deepseek_operator.catalog import (
    ACTIVATION_HIDDEN_MULTIPLE,
    ACTIVATION_TOKENS,
    GIB,
    MAX_NODES_PER_REPLICA,
    MIB,
    REFERENCE_GPU,
    RUNTIME_FIXED_GIB,
    GPUFacts,
    Layout,
    LayoutError,
    ModelFacts,
    SizingError,
    SizingResult,
    bytes_per_gpu,
    candidate_gpu_counts,
    get_gpu,
    get_model,
    gpu_catalog,
    kv_cache_bytes,
    layout_for_gpus,
    model_catalog,
    size_deployment,
    size_replica,
    weights_bytes,
)


def size(spec: dict[str, Any]) -> SizingResult:
    return size_deployment(parse_spec(spec))


def sizing_error(spec: dict[str, Any]) -> SizingError:
    with pytest.raises(SizingError) as caught:
        size(spec)
    return caught.value


def overhead(hidden_size: int) -> float:
    return (
        RUNTIME_FIXED_GIB * GIB + ACTIVATION_TOKENS * hidden_size * 2 * ACTIVATION_HIDDEN_MULTIPLE
    )


# Public recipes: vLLM/SGLang serve R1 on one node of 8 x H200 with TP 8, and on two nodes
# of 8 x H100 with TP 8 x PP 2; the distills on one or two GPUs at moderate contexts.
@pytest.mark.parametrize(
    ("spec", "layout"),
    [
        (
            {"model": {"name": "deepseek-r1"}, "gpu": {"type": "H200-141GB"}},
            Layout(tensor_parallel_size=8, pipeline_parallel_size=1, gpus_per_pod=8, nodes=1),
        ),
        (
            {"model": {"name": "deepseek-r1-0528"}, "gpu": {"type": "H100-80GB"}},
            Layout(tensor_parallel_size=8, pipeline_parallel_size=2, gpus_per_pod=8, nodes=2),
        ),
        (
            {
                "model": {"name": "deepseek-r1-distill-qwen-32b", "maxModelLen": 16384},
                "gpu": {"type": "H100-80GB", "maxConcurrentSequences": 8},
            },
            Layout(tensor_parallel_size=2, pipeline_parallel_size=1, gpus_per_pod=2, nodes=1),
        ),
        (
            {
                "model": {"name": "deepseek-r1-distill-qwen-7b", "maxModelLen": 16384},
                "gpu": {"type": "A100-40GB"},
            },
            Layout(tensor_parallel_size=1, pipeline_parallel_size=1, gpus_per_pod=1, nodes=1),
        ),
        (
            {
                "model": {"name": "deepseek-r1-distill-llama-8b", "maxModelLen": 4096},
                "gpu": {"type": "L4-24GB", "maxConcurrentSequences": 4},
            },
            Layout(tensor_parallel_size=1, pipeline_parallel_size=1, gpus_per_pod=1, nodes=1),
        ),
    ],
    ids=["r1-8xH200", "r1-2x8xH100", "qwen32b-tp2-H100", "qwen7b-A100-40GB", "llama8b-L4"],
)
def test_public_recipes(spec: dict[str, Any], layout: Layout) -> None:
    result = size(spec)
    assert (
        result.tensor_parallel_size,
        result.pipeline_parallel_size,
        result.gpus_per_pod,
        result.nodes_per_replica,
    ) == (
        layout.tensor_parallel_size,
        layout.pipeline_parallel_size,
        layout.gpus_per_pod,
        layout.nodes,
    )
    # The same count given explicitly is accepted and gives the same layout.
    explicit = size({**spec, "gpu": {**spec["gpu"], "count": layout.gpus}})
    assert explicit == result


def test_formula_for_qwen_32b_at_tensor_parallel_2() -> None:
    result = size(
        {
            "model": {"name": "deepseek-r1-distill-qwen-32b", "maxModelLen": 16384},
            "gpu": {"type": "H100-80GB", "maxConcurrentSequences": 8},
        }
    )
    weights = 65.5e9  # native bf16 checkpoint on disk
    kv = 262144 * 16384 * 8  # bytes/token x tokens x sequences, sharded over 8 KV heads
    per_gpu = weights / 2 + kv / 2 + overhead(5120)
    assert result.weights_gib == pytest.approx(weights / GIB)
    assert result.kv_cache_gib == pytest.approx(kv / GIB)
    assert result.memory_per_gpu_gib == pytest.approx(per_gpu / GIB)
    assert result.usable_gib_per_gpu == pytest.approx(81559 * MIB * 0.9 / GIB)
    assert result.total_gib == pytest.approx((weights + kv + 2 * overhead(5120)) / GIB)
    assert result.gpu_memory_required_gib == pytest.approx(2 * per_gpu / GIB)
    assert result.min_gpu_memory_mib == math.ceil(per_gpu / MIB / 0.9)


def test_formula_for_r1_over_two_pipeline_stages() -> None:
    result = size({"model": {"name": "deepseek-r1"}, "gpu": {"type": "H100-80GB"}})
    stage = math.ceil(61 / 2) / 61  # the larger of the two stages holds 31 of 61 layers
    kv = 70272 * 32768 * 16  # MLA: one latent cache, held in full by each of the 8 TP ranks
    per_gpu = 689e9 * stage / 8 + kv * stage + overhead(7168)
    assert result.memory_per_gpu_gib == pytest.approx(per_gpu / GIB)


def test_mla_cache_is_replicated_and_gqa_cache_is_sharded() -> None:
    r1 = get_model("deepseek-r1")
    llama = get_model("deepseek-r1-distill-llama-70b")
    for model, shards_at_tp8 in ((r1, 1), (llama, 8)):
        kv = kv_cache_bytes(model, 8192, 4)
        one = bytes_per_gpu(model, layout_for_gpus(1, **_dims(model)), 0.0, kv)
        eight = bytes_per_gpu(model, layout_for_gpus(8, **_dims(model)), 0.0, kv)
        assert one - overhead(model.hidden_size) == pytest.approx(kv)
        assert eight - overhead(model.hidden_size) == pytest.approx(kv / shards_at_tp8)


def _dims(model: ModelFacts, gpus_per_node: int = 8) -> dict[str, int]:
    return {
        "num_attention_heads": model.num_attention_heads,
        "num_hidden_layers": model.num_hidden_layers,
        "gpus_per_node": gpus_per_node,
    }


def test_weight_formats() -> None:
    qwen = get_model("deepseek-r1-distill-qwen-7b")
    native = weights_bytes(qwen, "none")
    assert native == qwen.disk_gb * 1e9
    assert weights_bytes(qwen, "fp8") == pytest.approx(7.62e9 * 1.0 * 1.03)
    assert weights_bytes(qwen, "int8") == weights_bytes(qwen, "fp8")
    assert weights_bytes(qwen, "awq") == weights_bytes(qwen, "gptq") < weights_bytes(qwen, "fp8")
    r1 = get_model("deepseek-r1")
    assert weights_bytes(r1, "fp8") == weights_bytes(r1, "none") == 689e9  # already fp8


@pytest.mark.parametrize(
    ("gpus", "heads", "layers", "per_node", "expected"),
    [
        (1, 40, 64, 8, Layout(1, 1, 1, 1)),
        (8, 128, 61, 8, Layout(8, 1, 8, 1)),
        (8, 28, 28, 8, Layout(4, 2, 8, 1)),  # heads stop TP at 4: the node's rest are stages
        (6, 40, 64, 8, Layout(2, 3, 6, 1)),
        (16, 128, 61, 8, Layout(8, 2, 8, 2)),
        (32, 128, 61, 8, Layout(8, 4, 8, 4)),
        (16, 12, 28, 8, Layout(4, 4, 8, 2)),
        (12, 128, 61, 6, Layout(2, 6, 6, 2)),
    ],
)
def test_layouts(gpus: int, heads: int, layers: int, per_node: int, expected: Layout) -> None:
    layout = layout_for_gpus(
        gpus, num_attention_heads=heads, num_hidden_layers=layers, gpus_per_node=per_node
    )
    assert layout == expected


@pytest.mark.parametrize(
    ("gpus", "layers", "fragment"),
    [(12, 61, "multiple of 8"), (0, 61, "at least one"), (8, 2, "8 pipeline stages")],
)
def test_impossible_layouts(gpus: int, layers: int, fragment: str) -> None:
    with pytest.raises(LayoutError, match=fragment):
        layout_for_gpus(gpus, num_attention_heads=1, num_hidden_layers=layers, gpus_per_node=8)


def test_candidate_counts() -> None:
    assert candidate_gpu_counts(8) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert candidate_gpu_counts(6, max_nodes=3) == [1, 2, 4, 6, 12, 18]
    assert candidate_gpu_counts(1, max_nodes=2) == [1, 2]


def test_full_r1_on_one_40gb_gpu_is_refused_with_the_numbers() -> None:
    spec = {"model": {"name": "deepseek-r1"}, "gpu": {"type": "A100-40GB", "count": 1}}
    error = sizing_error(spec)
    assert error.field == "spec.gpu.count"
    auto = size({"model": {"name": "deepseek-r1"}, "gpu": {"type": "A100-40GB"}})
    needed = (689e9 + 70272 * 32768 * 16 + overhead(7168)) / GIB
    assert f"needs ~{needed:.1f} GiB per replica" in error.message
    assert "36.0 GiB usable (40.0 GiB x 0.90)" in error.message
    assert f"smallest layout that fits is {auto.gpus_per_replica} x A100-40GB" in error.message


def test_the_article_claim_does_not_fit_either() -> None:
    """ "Compresses to 320 GB and runs on one 40 GB GPU": int4 weights alone are ~335 GiB."""
    spec = {
        "model": {"name": "deepseek-r1", "quantization": "awq", "uri": "hf://org/r1-awq"},
        "gpu": {"type": "A100-40GB", "count": 1},
    }
    error = sizing_error(spec)
    assert error.field == "spec.gpu.count"
    weights = weights_bytes(get_model("deepseek-r1"), "awq") / GIB
    assert weights > 300 and f"weights {weights:.1f} GiB" in error.message


def test_explicit_count_that_no_layout_can_use() -> None:
    # The API refuses this count already; sizing refuses it on its own too.
    with pytest.raises(SizingError) as caught:
        size_replica(
            get_model("deepseek-r1"),
            get_gpu("H100-80GB"),
            max_model_len=4096,
            max_concurrent_sequences=1,
            gpu_count=12,
        )
    assert caught.value.field == "spec.gpu.count"
    assert "multiple of 8" in caught.value.message


def test_explicit_count_larger_than_needed_is_honoured() -> None:
    result = size({"model": {"name": "deepseek-r1"}, "gpu": {"type": "H200-141GB", "count": 16}})
    assert (result.tensor_parallel_size, result.pipeline_parallel_size) == (8, 2)
    assert result.nodes_per_replica == 2


def test_context_beyond_the_model_is_refused() -> None:
    error = sizing_error({"model": {"name": "deepseek-r1", "maxModelLen": 200_000}})
    assert error.field == "spec.model.maxModelLen"
    assert "163840" in error.message


def test_kv_cache_that_fits_nowhere_names_max_model_len() -> None:
    spec = {
        "model": {"name": "deepseek-r1", "maxModelLen": 131072},
        "gpu": {"type": "A10G-24GB", "maxConcurrentSequences": 256},
    }
    error = sizing_error(spec)
    assert error.field == "spec.model.maxModelLen"
    assert "KV cache" in error.message and f"{MAX_NODES_PER_REPLICA} nodes" in error.message


def test_weights_that_fit_nowhere_name_the_gpu_type() -> None:
    giant = ModelFacts.from_custom(
        "giant",
        CustomModelFacts(
            params_b=20_000,
            num_attention_heads=128,
            num_hidden_layers=200,
            hidden_size=16384,
            kv_bytes_per_token=1024,
            max_position_embeddings=8192,
        ),
    )
    with pytest.raises(SizingError) as caught:
        size_replica(giant, get_gpu("L4-24GB"), max_model_len=4096, max_concurrent_sequences=1)
    assert caught.value.field == "spec.gpu.type"


def test_fp8_on_ampere_per_engine() -> None:
    r1_a100 = {"model": {"name": "deepseek-r1"}, "gpu": {"type": "A100-80GB"}}
    vllm = size(r1_a100)
    assert vllm.fp8_weight_only and vllm.weight_format == "fp8"
    error = sizing_error({**r1_a100, "engine": {"type": "sglang"}})
    assert error.field == "spec.model.quantization"
    assert "compute capability 8.0" in error.message and "engine.type vllm" in error.message
    dense = {
        "model": {"name": "deepseek-r1-distill-qwen-7b", "quantization": "fp8"},
        "gpu": {"type": "A10G-24GB", "maxConcurrentSequences": 4},
        "engine": {"type": "sglang"},
    }
    assert size(dense).fp8_weight_only  # dense FP8 has a weight-only fallback in SGLang too
    hopper = size({**r1_a100, "gpu": {"type": "H200-141GB"}, "engine": {"type": "sglang"}})
    assert not hopper.fp8_weight_only and hopper.requires_fp8_gpu


def test_any_gpu_sizes_against_the_reference_and_states_the_memory_needed() -> None:
    result = size({"model": {"name": "deepseek-r1-distill-qwen-14b"}})
    assert (result.gpu_type, result.any_gpu) == (REFERENCE_GPU, True)
    assert result.min_gpu_memory_mib <= get_gpu(REFERENCE_GPU).memory_mib
    assert result.min_gpu_memory_mib * MIB * 0.9 >= result.memory_per_gpu_gib * GIB
    sglang = size({"model": {"name": "deepseek-r1"}, "engine": {"type": "sglang"}})
    assert sglang.requires_fp8_gpu


def test_multi_node_replica_needs_a_shared_cache() -> None:
    spec = {
        "model": {"name": "deepseek-r1"},
        "gpu": {"type": "H100-80GB"},
        "replicas": 1,
        "autoscaling": {"mode": "none"},
        "storage": {"accessMode": "ReadWriteOnce"},
    }
    error = sizing_error(spec)
    assert error.field == "spec.storage.accessMode"
    assert "spans 2 nodes" in error.message
    spec["storage"] = {"accessMode": "ReadWriteOnce", "existingClaim": "r1-weights"}
    assert size(spec).nodes_per_replica == 2


def test_a_cache_smaller_than_the_checkpoint_is_refused_with_both_sizes() -> None:
    spec: dict[str, Any] = {
        "model": {"name": "deepseek-r1"},
        "gpu": {"type": "H200-141GB"},
        "storage": {"size": "500Gi"},
    }
    error = sizing_error(spec)
    assert error.field == "spec.storage.size"
    assert "500Gi (500.0 GiB) cannot hold the checkpoint" in error.message
    assert "use at least 803Gi" in error.message
    spec["storage"] = {"size": "700Gi"}  # above the checkpoint, below the x1.25 default
    assert size(spec).gpus_per_replica == 8


def test_status_block() -> None:
    result = size({"model": {"name": "deepseek-r1"}, "gpu": {"type": "H200-141GB"}})
    status = result.to_status().model_dump(exclude_none=True)
    assert status["gpusPerReplica"] == 8 and status["tensorParallelSize"] == 8
    assert status["gpuMemoryRequiredGiB"] == round(result.gpu_memory_required_gib, 1)
    assert status["gpuType"] == "H200-141GB"


def assert_invariants(
    result: SizingResult, model: ModelFacts, gpu: GPUFacts, per_node: int
) -> None:
    tp, pp = result.tensor_parallel_size, result.pipeline_parallel_size
    assert tp & (tp - 1) == 0 and model.num_attention_heads % tp == 0 and tp <= per_node
    assert tp * pp == result.gpus_per_replica == result.gpus_per_pod * result.nodes_per_replica
    assert result.gpus_per_pod <= per_node and result.nodes_per_replica <= MAX_NODES_PER_REPLICA
    assert result.memory_per_gpu_gib <= result.usable_gib_per_gpu
    assert result.min_gpu_memory_mib <= gpu.memory_mib
    # Minimal: no smaller candidate count fits.
    weights = weights_bytes(model, result.quantization)
    kv = kv_cache_bytes(model, result.max_model_len, result.max_concurrent_sequences)
    for count in candidate_gpu_counts(per_node):
        if count >= result.gpus_per_replica:
            break
        try:
            layout = layout_for_gpus(count, **_dims(model, per_node))
        except LayoutError:
            continue
        assert bytes_per_gpu(model, layout, weights, kv) > result.usable_gib_per_gpu * GIB


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize(("max_model_len", "sequences"), [(4096, 4), (32768, 16), (131072, 64)])
def test_every_catalog_model_on_every_gpu(engine: str, max_model_len: int, sequences: int) -> None:
    fits, refused = 0, 0
    for model in model_catalog().values():
        for gpu in gpu_catalog().values():
            try:
                result = size_replica(
                    model,
                    gpu,
                    max_model_len=max_model_len,
                    max_concurrent_sequences=sequences,
                    engine=engine,
                )
            except SizingError as error:
                refused += 1
                if error.field == "spec.model.quantization":
                    assert engine == "sglang" and model.is_moe and not gpu.fp8
                else:
                    assert error.field in ("spec.gpu.type", "spec.model.maxModelLen")
                    assert "GiB usable" in error.message and "needs ~" in error.message
                continue
            fits += 1
            assert_invariants(result, model, gpu, per_node=8)
    assert fits > 0
    if engine == "sglang":
        assert refused > 0


@settings(max_examples=150, deadline=None)
@given(
    params_b=st.floats(0.5, 3000),
    heads=st.sampled_from([8, 12, 28, 32, 40, 64, 128]),
    kv_heads=st.sampled_from([0, 1, 2, 4, 8]),
    layers=st.integers(4, 128),
    hidden=st.sampled_from([1536, 4096, 8192]),
    kv_per_token=st.integers(1024, 400_000),
    max_model_len=st.integers(128, 131072),
    sequences=st.integers(1, 256),
    gpu_name=st.sampled_from(list(gpu_catalog())),
    per_node=st.sampled_from([1, 2, 4, 6, 8]),
    utilization=st.floats(0.5, 0.95),
    count=st.integers(0, 24),
)
def test_any_model_either_fits_or_is_refused_with_numbers(
    params_b: float,
    heads: int,
    kv_heads: int,
    layers: int,
    hidden: int,
    kv_per_token: int,
    max_model_len: int,
    sequences: int,
    gpu_name: str,
    per_node: int,
    utilization: float,
    count: int,
) -> None:
    model = ModelFacts.from_custom(
        "custom",
        CustomModelFacts(
            params_b=params_b,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads if kv_heads and heads % kv_heads == 0 else 0,
            num_hidden_layers=layers,
            hidden_size=hidden,
            kv_bytes_per_token=kv_per_token,
            max_position_embeddings=131072,
        ),
    )
    gpu = get_gpu(gpu_name)
    try:
        result = size_replica(
            model,
            gpu,
            max_model_len=max_model_len,
            max_concurrent_sequences=sequences,
            gpus_per_node=per_node,
            gpu_memory_utilization=utilization,
            gpu_count=count,
        )
    except SizingError as error:
        assert error.field.startswith("spec.")
        assert any(char.isdigit() for char in error.message)
        return
    if count:
        assert result.gpus_per_replica == count
    else:
        assert_invariants(result, model, gpu, per_node)


@pytest.mark.parametrize("name", ["deepseek-r1", "deepseek-r1-distill-llama-70b"])
def test_an_fp8_kv_cache_halves_the_kv_cache(name: str) -> None:
    spec: dict[str, Any] = {"model": {"name": name}, "gpu": {"type": "H100-80GB"}}
    sixteen = size(spec)
    fp8 = size({**spec, "engine": {"args": ["--kv-cache-dtype", "fp8"]}})
    assert (sixteen.kv_cache_format, fp8.kv_cache_format) == ("16-bit", "fp8")
    assert fp8.kv_bytes_per_token == get_model(name).kv_bytes_per_token / 2
    assert fp8.kv_cache_gib == pytest.approx(sixteen.kv_cache_gib / 2)
    assert fp8.weights_gib == sixteen.weights_gib
    model = get_model(name)
    layout = layout_for_gpus(fp8.gpus_per_replica, **_dims(model))
    kv = kv_cache_bytes(model, fp8.max_model_len, fp8.max_concurrent_sequences, "fp8")
    per_gpu = bytes_per_gpu(model, layout, fp8.weights_gib * GIB, kv)
    assert fp8.memory_per_gpu_gib == pytest.approx(per_gpu / GIB)
    assert fp8.gpus_per_replica <= sixteen.gpus_per_replica


def test_an_fp8_kv_cache_can_need_fewer_gpus() -> None:
    spec: dict[str, Any] = {"model": {"name": "deepseek-r1-distill-qwen-32b"},
                            "gpu": {"type": "H100-80GB"}}
    sixteen = size(spec)
    fp8 = size({**spec, "engine": {"type": "sglang", "args": ["--kv-cache-dtype=fp8_e4m3"]}})
    assert fp8.gpus_per_replica < sixteen.gpus_per_replica
    assert fp8.kv_cache_format == "fp8"
