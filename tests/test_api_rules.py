"""Each cross-field rule is written twice, in CEL (for the apiserver) and in Python: they
must agree. A CEL interpreter (cel-python) evaluates the rule on the object as the
apiserver would see it (wire names, defaults filled in) and the result is compared with the
Python predicate: on hand-picked objects that make every rule both pass and fail, then on
generated ones."""

from collections.abc import Iterator
from typing import Any

import celpy
import pytest
from celpy import celtypes
from celpy.adapter import json_to_cel
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_operator.api import (
    API_VERSION,
    KIND,
    AccessBinding,
    AccessSpec,
    AutoscalingSpec,
    CustomModelFacts,
    DeepSeekDeployment,
    DeepSeekDeploymentSpec,
    EngineSpec,
    EnvVar,
    EnvVarSource,
    FieldRef,
    GPUSpec,
    KeyRef,
    ModelSpec,
    ObjectMeta,
    PrometheusSpec,
    ServiceSpec,
    StorageSpec,
    Subject,
)
from deepseek_operator.api.rules import SpecModel

ENVIRONMENT = celpy.Environment()

SOURCE = EnvVarSource.model_construct(field_ref=FieldRef.model_construct(
    field_path="metadata.name"))


def cel(rule: str, obj: dict[str, Any]) -> bool:
    program = ENVIRONMENT.program(ENVIRONMENT.compile(rule))
    result = program.evaluate({"self": json_to_cel(obj)})
    assert isinstance(result, celtypes.BoolType), result
    return bool(result)


def assert_rules_agree(instance: SpecModel) -> None:
    wire = instance.model_dump(exclude_none=True)
    for rule in type(instance).cel_rules:
        expected = rule.check(instance)
        assert cel(rule.rule, wire) == expected, (rule.rule, wire)


def all_rule_classes() -> Iterator[type[SpecModel]]:
    pending: list[type[SpecModel]] = [SpecModel]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.cel_rules:
            yield cls


FACTS = CustomModelFacts(
    params_b=8.0,
    num_attention_heads=32,
    num_key_value_heads=8,
    num_hidden_layers=32,
    hidden_size=4096,
    kv_bytes_per_token=131072,
    max_position_embeddings=16384,
)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["r1", "a" * 40, "a" * 41, "1r", "r1.ai", "r-1", "r1-", "R1"])
    | st.text(alphabet="ab1-.", min_size=1, max_size=44)
)
def test_object_name_rule(name: str) -> None:
    dsd = DeepSeekDeployment.model_construct(
        api_version=API_VERSION,
        kind=KIND,
        metadata=ObjectMeta.model_construct(name=name),
        spec=DeepSeekDeploymentSpec(model=ModelSpec(name="deepseek-r1")),
    )
    assert_rules_agree(dsd)


@settings(max_examples=80, deadline=None)
@given(
    access_mode=st.sampled_from(["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]),
    replicas=st.integers(0, 3),
    mode=st.sampled_from(["operator", "hpa", "keda", "none"]),
    max_replicas=st.integers(1, 3),
    existing_claim=st.sampled_from(["", "models"]),
)
def test_single_writer_storage_rule(
    access_mode: str, replicas: int, mode: str, max_replicas: int, existing_claim: str
) -> None:
    spec = DeepSeekDeploymentSpec.model_construct(
        model=ModelSpec(name="deepseek-r1"),
        replicas=replicas,
        autoscaling=AutoscalingSpec.model_construct(
            mode=mode, min_replicas=1, max_replicas=max_replicas
        ),
        storage=StorageSpec.model_construct(access_mode=access_mode, existing_claim=existing_claim),
    )
    assert_rules_agree(spec)


@settings(max_examples=80, deadline=None)
@given(
    facts=st.sampled_from([None, FACTS]),
    uri=st.sampled_from(["", "hf://org/repo"]),
    quantization=st.sampled_from(["none", "fp8", "int8", "awq", "gptq"]),
    max_model_len=st.sampled_from([4096, 16384, 16385, 65536]),
)
def test_model_rules(
    facts: CustomModelFacts | None, uri: str, quantization: str, max_model_len: int
) -> None:
    model = ModelSpec.model_construct(
        name="m", uri=uri, quantization=quantization, max_model_len=max_model_len, facts=facts
    )
    assert_rules_agree(model)


@settings(max_examples=60, deadline=None)
@given(
    mode=st.sampled_from(["operator", "hpa", "keda", "none"]),
    min_replicas=st.integers(0, 5),
    max_replicas=st.integers(1, 5),
    target=st.sampled_from([-1.0, 0.0, 0.25, 2.0]),
    query=st.sampled_from(["", "sum(rate(gateway_requests_total[1m]))"]),
)
def test_autoscaling_rules(mode: str, min_replicas: int, max_replicas: int, target: float,
                           query: str) -> None:
    autoscaling = AutoscalingSpec.model_construct(
        mode=mode,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_qps_per_replica=target,
        prometheus=PrometheusSpec(query=query),
    )
    assert_rules_agree(autoscaling)


@settings(max_examples=60, deadline=None)
@given(
    roles=st.sets(st.sampled_from(["admin", "user", "ops"])),
    bound=st.lists(st.sampled_from(["admin", "user", "ops", "nobody"]), max_size=3),
)
def test_access_rules(roles: set[str], bound: list[str]) -> None:
    subject = Subject(kind="Group", name="g")
    access = AccessSpec.model_construct(
        roles={role: ["model:read"] for role in roles},
        bindings=[AccessBinding(role=role, subjects=[subject]) for role in bound],
    )
    assert_rules_agree(access)


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 40), per_node=st.integers(1, 16))
def test_gpu_rules(count: int, per_node: int) -> None:
    assert_rules_agree(GPUSpec.model_construct(count=count, per_node=per_node))


@settings(max_examples=100, deadline=None)
@given(
    uri=st.sampled_from(["", "hf://org/repo", "pvc://weights/r1"]),
    existing_claim=st.sampled_from(["", "models"]),
    size=st.sampled_from(["", "900Gi"]),
    storage_class=st.sampled_from(["", "fast"]),
    retain=st.booleans(),
)
def test_storage_rules(
    uri: str, existing_claim: str, size: str, storage_class: str, retain: bool
) -> None:
    spec = DeepSeekDeploymentSpec.model_construct(
        model=ModelSpec(name="deepseek-r1", uri=uri),
        replicas=1,
        autoscaling=AutoscalingSpec(),
        storage=StorageSpec.model_construct(
            existing_claim=existing_claim, size=size, storage_class_name=storage_class,
            retain_on_delete=retain, access_mode="ReadWriteMany",
        ),
    )
    assert_rules_agree(spec)


@settings(max_examples=20, deadline=None)
@given(value=st.sampled_from([None, "", "1"]), value_from=st.sampled_from([None, SOURCE]))
def test_env_var_rules(value: str | None, value_from: EnvVarSource | None) -> None:
    assert_rules_agree(EnvVar.model_construct(name="A", value=value, value_from=value_from))


ENV_NAMES = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "hf_token", "AWS_SECRET_ACCESS_KEY",
             "OPENAI_API_KEY", "OPENAI-APIKEY", "DB.PASSWORD", "TOKEN", "VLLM_API_KEY",
             "DEEPSEEK_ENGINE_API_KEY", "VLLM_MAX_TOKENS", "TOKENIZERS_PARALLELISM",
             "NCCL_DEBUG", "KEY", "SECRETARY", "MY_SECRET"]


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(ENV_NAMES) | st.text(alphabet="AEKNOSTY_-.", min_size=1,
                                                  max_size=12),
       value=st.sampled_from([None, "", "hf_x"]), value_from=st.sampled_from([None, SOURCE]))
def test_secret_env_rules(name: str, value: str | None, value_from: EnvVarSource | None) -> None:
    assert_rules_agree(EnvVar.model_construct(name=name, value=value, value_from=value_from))


SECRET_ARGS = ["--api-key", "--api-key=sk-1", "--api_key", "--api-k", "--a", "--api-key x",
               "--api-key\tx", "--admin-api-key", "--admin_api", "--hf-token=hf_1", "--hf-t",
               "--hf", "--h"]
OTHER_ARGS = ["--api-keys", "--api-server-count", "--hf-overrides", "--async-scheduling",
              "-a", "sk-test-123", "api-key", "---api-key", "--enable-prefix-caching",
              "--kv-cache-dtype", "fp8", "--", "--admin-apikey"]


@pytest.mark.parametrize("arg", SECRET_ARGS)
def test_secret_flags_are_refused_in_both_forms(arg: str) -> None:
    engine = EngineSpec.model_construct(args=[arg])
    (rule,) = EngineSpec.cel_rules
    assert not rule.check(engine)
    assert_rules_agree(engine)


@pytest.mark.parametrize("arg", OTHER_ARGS)
def test_other_flags_pass_in_both_forms(arg: str) -> None:
    engine = EngineSpec.model_construct(args=[arg])
    (rule,) = EngineSpec.cel_rules
    assert rule.check(engine)
    assert_rules_agree(engine)


@settings(max_examples=100, deadline=None)
@given(args=st.lists(st.sampled_from(SECRET_ARGS + OTHER_ARGS)
                     | st.text(alphabet="-_=akpiey htfo", max_size=12), max_size=4))
def test_secret_flag_rule_agrees_on_generated_args(args: list[str]) -> None:
    assert_rules_agree(EngineSpec.model_construct(args=args))


@settings(max_examples=60, deadline=None)
@given(
    attention=st.sampled_from(["gqa", "mla"]),
    heads=st.integers(1, 64),
    kv_heads=st.integers(0, 16),
    active=st.sampled_from([0.0, 4.0, 8.0, 9.0]),
)
def test_custom_facts_rules(attention: str, heads: int, kv_heads: int, active: float) -> None:
    facts = FACTS.model_copy(
        update={
            "attention": attention,
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "active_params_b": active,
        }
    )
    assert_rules_agree(facts)


def dsd_named(name: str) -> DeepSeekDeployment:
    return DeepSeekDeployment.model_construct(
        api_version=API_VERSION,
        kind=KIND,
        metadata=ObjectMeta.model_construct(name=name),
        spec=DeepSeekDeploymentSpec(model=ModelSpec(name="deepseek-r1")),
    )


def spec_with(access_mode: str, replicas: int, mode: str, claim: str = "", uri: str = "",
              size: str = "", storage_class: str = "", retain: bool = True) -> SpecModel:
    return DeepSeekDeploymentSpec.model_construct(
        model=ModelSpec(name="deepseek-r1", uri=uri),
        replicas=replicas,
        autoscaling=AutoscalingSpec.model_construct(mode=mode, min_replicas=1, max_replicas=4),
        storage=StorageSpec.model_construct(
            access_mode=access_mode, existing_claim=claim, size=size,
            storage_class_name=storage_class, retain_on_delete=retain,
        ),
    )


GROUP = Subject(kind="Group", name="g")
EXAMPLES: dict[type[SpecModel], list[SpecModel]] = {
    DeepSeekDeployment: [dsd_named("r1"), dsd_named("a" * 41), dsd_named("1r")],
    DeepSeekDeploymentSpec: [
        spec_with("ReadWriteMany", 3, "operator"),
        spec_with("ReadWriteOnce", 1, "none"),
        spec_with("ReadWriteOnce", 1, "operator"),
        spec_with("ReadWriteOncePod", 2, "none"),
        spec_with("ReadWriteOncePod", 2, "none", claim="models"),
        spec_with("ReadWriteMany", 1, "none", size="900Gi", storage_class="fast", retain=False),
        spec_with("ReadWriteMany", 1, "none", claim="models", size="900Gi",
                  storage_class="fast", retain=False),
        spec_with("ReadWriteMany", 1, "none", uri="pvc://weights/r1", claim="models"),
    ],
    ModelSpec: [
        ModelSpec.model_construct(name="m", uri="", quantization="none", max_model_len=8192),
        ModelSpec.model_construct(name="m", uri="", quantization="awq", max_model_len=8192),
        ModelSpec.model_construct(name="m", uri="", quantization="none", facts=FACTS),
        ModelSpec.model_construct(
            name="m", uri="s3://b/m", quantization="int8", max_model_len=32768, facts=FACTS
        ),
        ModelSpec.model_construct(
            name="m", uri="s3://b/m", quantization="gptq", max_model_len=8192, facts=FACTS
        ),
    ],
    AutoscalingSpec: [
        AutoscalingSpec.model_construct(
            mode="hpa", min_replicas=1, max_replicas=4, target_qps_per_replica=2.0
        ),
        AutoscalingSpec.model_construct(
            mode="hpa", min_replicas=0, max_replicas=4, target_qps_per_replica=2.0
        ),
        AutoscalingSpec.model_construct(
            mode="operator", min_replicas=5, max_replicas=4, target_qps_per_replica=0.0
        ),
        AutoscalingSpec.model_construct(
            mode="keda", min_replicas=0, max_replicas=4, target_qps_per_replica=2.0
        ),
    ],
    AccessSpec: [
        AccessSpec(bindings=[AccessBinding(role="user", subjects=[GROUP])]),
        AccessSpec.model_construct(
            roles={"user": ["model:query"]},
            bindings=[AccessBinding(role="admin", subjects=[GROUP])],
        ),
    ],
    Subject: [
        GROUP,
        Subject.model_construct(kind="User", name="Jane Doe <jane@example.com>", namespace=""),
        Subject.model_construct(kind="ServiceAccount", name="ci.bot-1", namespace=""),
        Subject.model_construct(kind="ServiceAccount", name="CI Bot", namespace=""),
        Subject.model_construct(kind="ServiceAccount", name="bot-", namespace="team"),
    ],
    GPUSpec: [
        GPUSpec.model_construct(count=16, per_node=8),
        GPUSpec.model_construct(count=4, per_node=8),
        GPUSpec.model_construct(count=12, per_node=8),
    ],
    EnvVar: [
        EnvVar.model_construct(name="A", value="1", value_from=None),
        EnvVar.model_construct(name="A", value="1", value_from=SOURCE),
        EnvVar.model_construct(name="HF_TOKEN", value="hf_x", value_from=None),
        EnvVar.model_construct(name="VLLM_API_KEY", value=None, value_from=SOURCE),
    ],
    EngineSpec: [
        EngineSpec.model_construct(args=["--enable-prefix-caching"]),
        EngineSpec.model_construct(args=["--api-key", "sk-test-123"]),
    ],
    EnvVarSource: [
        SOURCE,
        EnvVarSource.model_construct(),
        EnvVarSource.model_construct(field_ref=SOURCE.field_ref,
                                     secret_key_ref=KeyRef.model_construct(name="s", key="k")),
    ],
    ServiceSpec: [
        ServiceSpec.model_construct(type=kind, port=8000)
        for kind in ("ClusterIP", "NodePort", "LoadBalancer")
    ],
    CustomModelFacts: [
        FACTS,
        FACTS.model_copy(update={"num_key_value_heads": 5, "active_params_b": 9.0}),
    ],
}


@pytest.mark.parametrize(
    "instance",
    [instance for examples in EXAMPLES.values() for instance in examples],
    ids=lambda instance: type(instance).__name__,
)
def test_rules_agree_on_examples(instance: SpecModel) -> None:
    assert_rules_agree(instance)


def test_examples_make_every_rule_pass_and_fail() -> None:
    classes = set(all_rule_classes())
    assert classes == set(EXAMPLES)
    for cls in classes:
        for rule in cls.cel_rules:
            outcomes = {rule.check(instance) for instance in EXAMPLES[cls]}
            assert outcomes == {True, False}, (cls.__name__, rule.rule)


@pytest.mark.parametrize("cls", list(all_rule_classes()), ids=lambda cls: cls.__name__)
def test_rule_messages_fit_the_apiserver(cls: type[SpecModel]) -> None:
    for rule in cls.cel_rules:
        assert rule.message and "\n" not in rule.message
        assert rule.field_path == "" or rule.field_path.startswith(".")
