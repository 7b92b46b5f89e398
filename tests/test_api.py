"""The typed DeepSeekDeployment API: defaults, parsing, and errors that name the field."""

from types import MappingProxyType
from typing import Any

import pytest

from deepseek_operator.api import (
    API_VERSION,
    DEFAULT_ROLES,
    KIND,
    MAX_NAME_LENGTH,
    Condition,
    ConditionType,
    DeepSeekDeployment,
    DeepSeekDeploymentSpec,
    GPUSpec,
    InvalidSpecError,
    ModelSpec,
    parse_deployment,
    parse_spec,
)
from deepseek_operator.api.patterns import PATTERN_HINTS


def cr(spec: dict[str, Any], name: str = "r1", **extra: Any) -> dict[str, Any]:
    """A DeepSeekDeployment as kubectl would send it."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": "ai", "uid": "u-1", "generation": 3},
        "spec": spec,
        **extra,
    }


MINIMAL = {"model": {"name": "deepseek-r1-distill-qwen-7b"}}


def issues_of(obj: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidSpecError) as caught:
        parse_deployment(obj)
    return {issue.path: issue.message for issue in caught.value.issues}


def test_literal_types_match_the_constants() -> None:
    dsd = parse_deployment(cr(MINIMAL))
    assert (dsd.api_version, dsd.kind) == (API_VERSION, KIND)


def test_minimal_spec_gets_the_defaults_of_the_design() -> None:
    spec = parse_deployment(cr(MINIMAL)).spec
    wire = spec.model_dump(exclude_none=True)
    assert wire["model"] == {
        "name": "deepseek-r1-distill-qwen-7b",
        "uri": "",
        "revision": "main",
        "quantization": "none",
        "maxModelLen": 32768,
        "servedName": "",
        "credentialsSecret": "",
    }
    assert wire["engine"] == {
        "type": "vllm",
        "image": "",
        "args": [],
        "env": [],
        "gpuMemoryUtilization": 0.9,
    }
    assert wire["gpu"] == {"type": "", "count": 0, "perNode": 8, "maxConcurrentSequences": 16}
    assert wire["replicas"] == 1
    assert wire["autoscaling"] == {
        "mode": "operator",
        "minReplicas": 1,
        "maxReplicas": 4,
        "targetQPSPerReplica": 2.0,
        "intervalSeconds": 15,
        "scaleUpStabilizationSeconds": 60,
        "scaleUpTolerance": 0.06,
        "scaleDownTolerance": 0.1,
        "scaleDownStabilizationSeconds": 300,
        "scaleToZeroIdleSeconds": 600,
        "prometheus": {"url": "http://prometheus-operated.monitoring:9090", "query": ""},
    }
    assert wire["storage"] == {
        "size": "",
        "storageClassName": "",
        "accessMode": "ReadWriteMany",
        "existingClaim": "",
        "retainOnDelete": True,
    }
    assert wire["access"] == {
        "roles": {
            "admin": ["model:read", "model:write", "system:configure"],
            "user": ["model:query"],
        },
        "bindings": [],
    }
    assert wire["scheduling"] == {
        "nodeSelector": {},
        "tolerations": [],
        "affinity": {},
        "priorityClassName": "",
        "runtimeClassName": "",
    }
    assert wire["service"] == {"type": "ClusterIP", "port": 8000}


def test_default_roles_are_copied_not_shared() -> None:
    first = parse_spec(MINIMAL)
    first.access.roles["admin"].append("model:query")
    assert parse_spec(MINIMAL).access.roles == DEFAULT_ROLES


def test_design_sample_parses_and_round_trips() -> None:
    spec = {
        "model": {
            "name": "deepseek-r1-distill-qwen-32b",
            "uri": "hf://deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
            "revision": "main",
            "quantization": "none",
            "maxModelLen": 32768,
            "servedName": "deepseek-r1",
            "credentialsSecret": "hf-token",
        },
        "engine": {
            "type": "vllm",
            "args": ["--enable-prefix-caching"],
            "env": [
                {"name": "VLLM_LOGGING_LEVEL", "value": "INFO"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
        },
        "gpu": {"type": "H100-80GB", "count": 0, "maxConcurrentSequences": 16},
        "autoscaling": {"mode": "operator", "minReplicas": 1, "maxReplicas": 4},
        "access": {
            "roles": {"admin": ["model:read", "model:write", "system:configure"]},
            "bindings": [{"role": "admin", "subjects": [{"kind": "Group", "name": "ml-ops"}]}],
        },
        "scheduling": {
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {}},
        },
        "service": {"type": "ClusterIP", "port": 8080},
    }
    dsd = parse_deployment(cr(spec, status={"phase": "Ready", "replicas": 2}))
    value_from = dsd.spec.engine.env[1].value_from
    assert value_from is not None
    assert value_from.model_dump(exclude_none=True) == {"secretKeyRef": {"name": "s", "key": "k"}}
    assert dsd.status.phase == "Ready"
    again = parse_deployment(dsd.model_dump(exclude_none=True))
    assert again == dsd


def test_python_names_and_wire_names_are_both_accepted() -> None:
    by_name = GPUSpec(type="L4-24GB", max_concurrent_sequences=4, per_node=4)
    by_alias = GPUSpec.model_validate(
        {"type": "L4-24GB", "maxConcurrentSequences": 4, "perNode": 4}
    )
    assert by_name == by_alias
    assert by_name.model_dump() == {
        "type": "L4-24GB",
        "count": 0,
        "perNode": 4,
        "maxConcurrentSequences": 4,
    }


def test_kopf_style_mappings_are_accepted() -> None:
    body = MappingProxyType(
        {
            **cr({}),
            "spec": MappingProxyType(
                {"model": MappingProxyType({"name": "deepseek-r1"}), "engine": {"args": ("-x",)}}
            ),
        }
    )
    dsd = parse_deployment(body)
    assert dsd.spec.model.name == "deepseek-r1"
    assert dsd.spec.engine.args == ["-x"]


def test_metadata_extra_keys_are_kept() -> None:
    obj = cr(MINIMAL)
    obj["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    dsd = parse_deployment(obj)
    assert dsd.metadata.model_dump()["managedFields"] == [{"manager": "kubectl"}]
    assert (dsd.metadata.uid, dsd.metadata.generation) == ("u-1", 3)


def test_typo_is_an_error_naming_the_field_and_the_known_ones() -> None:
    issues = issues_of(cr({**MINIMAL, "gpu": {"cout": 2}}))
    assert issues == {
        "spec.gpu.cout": "unknown field; known fields: count, maxConcurrentSequences, perNode, type"
    }


def test_typo_inside_a_list_item_names_the_index() -> None:
    spec = {**MINIMAL, "engine": {"env": [{"name": "A", "valu": "1"}]}}
    issues = issues_of(cr(spec))
    assert list(issues) == ["spec.engine.env[0].valu"]
    assert "known fields: name, value, valueFrom" in issues["spec.engine.env[0].valu"]


def test_every_offending_field_is_listed_with_the_value() -> None:
    spec = {
        "model": {"name": "deepseek-r1", "quantization": "fp4"},
        "engine": {"type": "vlm"},
        "gpu": {"count": -1},
        "service": {"port": "8000"},
    }
    issues = issues_of(cr(spec))
    assert set(issues) == {
        "spec.model.quantization",
        "spec.engine.type",
        "spec.gpu.count",
        "spec.service.port",
    }
    assert "'vllm' or 'sglang'" in issues["spec.engine.type"]
    assert "(got 'vlm')" in issues["spec.engine.type"]
    assert "greater than or equal to 0 (got -1)" in issues["spec.gpu.count"]
    assert "(got '8000')" in issues["spec.service.port"]  # strict: no string to int coercion


def test_missing_required_fields() -> None:
    assert issues_of(cr({"model": {}})) == {"spec.model.name": "required field is missing"}
    no_spec = cr(MINIMAL)
    del no_spec["spec"]
    assert issues_of(no_spec) == {"spec": "required field is missing"}


def test_wrong_api_version_and_kind() -> None:
    obj = cr(MINIMAL)
    obj["apiVersion"] = "deepseek-operator.io/v1"
    obj["kind"] = "Deployment"
    assert set(issues_of(obj)) == {"apiVersion", "kind"}


@pytest.mark.parametrize(
    ("spec", "path", "fragment"),
    [
        (
            {**MINIMAL, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
            "spec.autoscaling.minReplicas",
            "minReplicas must not exceed maxReplicas",
        ),
        (
            {**MINIMAL, "autoscaling": {"mode": "hpa", "minReplicas": 0}},
            "spec.autoscaling.minReplicas",
            "cannot scale to zero",
        ),
        (
            {**MINIMAL, "storage": {"accessMode": "ReadWriteOnce"}},
            "spec.storage.accessMode",
            "use ReadWriteMany",
        ),
        (
            {"model": {"name": "deepseek-r1", "quantization": "awq"}},
            "spec.model.uri",
            "need a checkpoint quantized that way",
        ),
        (
            {
                **MINIMAL,
                "access": {
                    "bindings": [{"role": "ops", "subjects": [{"kind": "User", "name": "a"}]}]
                },
            },
            "spec.access.bindings",
            "must be a key of roles",
        ),
        (
            {**MINIMAL, "gpu": {"count": 12, "perNode": 8}},
            "spec.gpu.count",
            "multiple of perNode",
        ),
        (
            {**MINIMAL, "engine": {"env": [{"name": "A", "value": "1", "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.name"}}}]}},
            "spec.engine.env[0].valueFrom",
            "not both",
        ),
        (
            {**MINIMAL, "engine": {"env": [{"name": "A", "valueFrom": {}}]}},
            "spec.engine.env[0].valueFrom",
            "give exactly one of secretKeyRef",
        ),
    ],
)
def test_cross_field_rules_name_the_field(spec: dict[str, Any], path: str, fragment: str) -> None:
    issues = issues_of(cr(spec))
    assert list(issues) == [path]
    assert fragment in issues[path]


def test_single_writer_cache_is_fine_for_one_replica() -> None:
    one = {
        **MINIMAL,
        "storage": {"accessMode": "ReadWriteOncePod"},
        "autoscaling": {"mode": "none", "maxReplicas": 4},
    }
    assert parse_spec(one).storage.access_mode == "ReadWriteOncePod"
    capped = {
        **MINIMAL,
        "storage": {"accessMode": "ReadWriteOnce"},
        "autoscaling": {"maxReplicas": 1},
    }
    assert parse_spec(capped).autoscaling.max_replicas == 1
    existing = {
        **MINIMAL,
        "replicas": 3,
        "storage": {"accessMode": "ReadWriteOnce", "existingClaim": "models"},
    }
    assert parse_spec(existing).replicas == 3


def test_custom_model_needs_facts_uri_and_a_context_it_supports() -> None:
    facts = {
        "paramsB": 8.0,
        "numAttentionHeads": 32,
        "numKeyValueHeads": 8,
        "numHiddenLayers": 32,
        "hiddenSize": 4096,
        "kvBytesPerToken": 131072,
        "maxPositionEmbeddings": 8192,
    }
    model = {"name": "my-llama", "uri": "s3://models/llama", "facts": facts, "maxModelLen": 8192}
    assert parse_spec({"model": model}).model.facts is not None
    issues = issues_of(cr({"model": {**model, "uri": "", "maxModelLen": 16384}}))
    assert set(issues) == {"spec.model.uri", "spec.model.maxModelLen"}
    bad_heads = {**facts, "numKeyValueHeads": 5}
    issues = issues_of(cr({"model": {**model, "facts": bad_heads}}))
    assert list(issues) == ["spec.model.facts.numKeyValueHeads"]


def test_role_names_and_permissions_are_checked() -> None:
    roles = {"Admin": ["model:read"], "x": ["model:fly"], "y": []}
    issues = issues_of(cr({**MINIMAL, "access": {"roles": roles}}))
    assert set(issues) == {
        "spec.access.roles.Admin",
        "spec.access.roles.x[0]",
        "spec.access.roles.y",
    }
    twice = {"user": ["model:query", "model:query"]}
    issues = issues_of(cr({**MINIMAL, "access": {"roles": twice}}))
    assert issues == {"spec.access.roles": "role 'user' lists a permission twice"}


@pytest.mark.parametrize("service_type", ["NodePort", "LoadBalancer"])
def test_an_exposed_engine_service_is_refused_naming_the_gateway(service_type: str) -> None:
    issues = issues_of(cr({**MINIMAL, "service": {"type": service_type}}))
    message = issues["spec.service.type"]
    assert "gateway.service.type" in message and "ClusterIP" in message


def test_duplicate_env_names_are_refused() -> None:
    env = [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]
    issues = issues_of(cr({**MINIMAL, "engine": {"env": env}}))
    assert "duplicate environment variable names: A" in issues["spec.engine.env"]


@pytest.mark.parametrize(
    "uri", ["hf://deepseek-ai/DeepSeek-R1", "s3://bucket/a/b", "pvc://cache/r1"]
)
def test_model_uri_schemes(uri: str) -> None:
    assert parse_spec({"model": {"name": "deepseek-r1", "uri": uri}}).model.uri == uri


@pytest.mark.parametrize("uri", ["http://x/y", "hf://only-org", "pvc://Bad_Claim/x", "s3:/b"])
def test_bad_model_uris_are_refused(uri: str) -> None:
    assert "spec.model.uri" in issues_of(cr({"model": {"name": "deepseek-r1", "uri": uri}}))


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("r1", True),
        ("a" * MAX_NAME_LENGTH, True),
        ("a" * (MAX_NAME_LENGTH + 1), False),
        ("1r", False),
        ("r1.ai", False),
        ("r1-", False),
    ],
)
def test_object_name_must_suit_child_names(name: str, valid: bool) -> None:
    if valid:
        assert parse_deployment(cr(MINIMAL, name=name)).metadata.name == name
    else:
        assert list(issues_of(cr(MINIMAL, name=name))) == ["metadata.name"]


def test_parse_spec_prefixes_paths_with_spec() -> None:
    with pytest.raises(InvalidSpecError) as caught:
        parse_spec({"model": {"name": "x", "maxModelLen": 1}})
    assert caught.value.paths == ("spec.model.maxModelLen",)
    assert str(caught.value).startswith("spec.model.maxModelLen: ")


def test_status_is_typed_and_tolerates_keys_of_other_versions() -> None:
    status = {
        "observedGeneration": 3,
        "phase": "Ready",
        "conditions": [
            {
                "type": ConditionType.READY,
                "status": "True",
                "reason": "AllReplicasReady",
                "message": "2/2 ready",
                "lastTransitionTime": "2025-01-31T12:00:00Z",
                "observedGeneration": 3,
            }
        ],
        "replicas": 2,
        "readyReplicas": 2,
        "selector": "app.kubernetes.io/instance=r1",
        "endpoint": "http://r1.ai.svc:8000/v1",
        "sizing": {"gpusPerReplica": 2, "gpuMemoryRequiredGiB": 140.0},
        "autoscaling": {"observedQPS": 3.1, "desiredReplicas": 2},
        "kopf": {"progress": {}},
    }
    dsd = parse_deployment(cr(MINIMAL, status=status))
    assert dsd.status.conditions[0] == Condition(
        type="Ready",
        status="True",
        reason="AllReplicasReady",
        message="2/2 ready",
        last_transition_time="2025-01-31T12:00:00Z",
        observed_generation=3,
    )
    assert dsd.status.sizing is not None and dsd.status.sizing.gpus_per_replica == 2
    assert "kopf" not in dsd.status.model_dump()
    bad = issues_of(cr(MINIMAL, status={"phase": "Sleeping"}))
    assert list(bad) == ["status.phase"]


def test_models_are_constructible_in_python() -> None:
    spec = DeepSeekDeploymentSpec(model=ModelSpec(name="deepseek-r1", max_model_len=8192))
    assert spec.model_dump()["model"]["maxModelLen"] == 8192
    assert spec.gpu.per_node == 8


@pytest.mark.parametrize(("field", "value"), [
    ("scaleUpTolerance", 1), ("scaleUpTolerance", -0.1), ("scaleDownTolerance", 2.5),
])
def test_tolerances_outside_0_to_1_are_refused(field: str, value: float) -> None:
    issues = issues_of(cr({**MINIMAL, "autoscaling": {field: value}}))
    assert f"spec.autoscaling.{field}" in issues


@pytest.mark.parametrize(("spec", "path", "message"), [
    ({"model": {"name": "deepseek-r1", "uri": "ftp://x/y"}}, "spec.model.uri",
     "must be hf://ORG/REPO, s3://BUCKET/PATH or pvc://CLAIM/PATH, without credentials "
     "(no user:password@): put them in a Secret named by spec.model.credentialsSecret"),
    ({**MINIMAL, "engine": {"image": "$(rm -rf /)"}}, "spec.engine.image",
     "must be an image reference such as vllm/vllm-openai:v0.8.5: letters, digits, '-', "
     "'_', '.', '/', ':' and '@', starting with a letter or digit"),
    ({**MINIMAL, "storage": {"size": "lots"}}, "spec.storage.size",
     "must be a Kubernetes quantity such as 900Gi or 1T (got 'lots')"),
    ({**MINIMAL, "storage": {"existingClaim": "Bad_Claim"}}, "spec.storage.existingClaim",
     "must be a DNS subdomain: lowercase letters, digits, '-' and '.', each part starting "
     "and ending with a letter or digit (got 'Bad_Claim')"),
])
def test_pattern_errors_say_what_is_accepted_in_words(spec: dict[str, Any], path: str,
                                                      message: str) -> None:
    assert issues_of(cr(spec))[path] == message


def schema_patterns(node: Any) -> set[str]:
    """Every `pattern` in a JSON schema, at any depth."""
    if isinstance(node, dict):
        own = {node["pattern"]} if isinstance(node.get("pattern"), str) else set()
        return own.union(*(schema_patterns(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(schema_patterns(item) for item in node))
    return set()


def test_every_pattern_of_the_api_has_words_for_its_errors() -> None:
    used = schema_patterns(DeepSeekDeployment.model_json_schema(by_alias=True))
    assert len(used) >= 10
    assert used <= set(PATTERN_HINTS), used - set(PATTERN_HINTS)


@pytest.mark.parametrize(("spec", "path"), [
    ({"model": {"name": "deepseek-r1", "revision": "bräch"}}, "spec.model.revision"),
    ({"model": {"name": "deepseek-r1", "servedName": "r1·chat"}}, "spec.model.servedName"),
    ({"model": {"name": "deepseek-r1", "uri": "hf://org/repö"}}, "spec.model.uri"),
])
def test_word_characters_are_ascii_as_in_the_apiservers_re2(spec: dict[str, Any],
                                                             path: str) -> None:
    assert issues_of(cr(spec))[path].startswith("must be ")



@pytest.mark.parametrize("claim", [
    {"storage": {"existingClaim": "models"}},
    {"model": {"name": "deepseek-r1-distill-qwen-7b", "uri": "pvc://models/qwen-7b"}},
])
@pytest.mark.parametrize(("storage", "path"), [
    ({"size": "900Gi"}, "spec.storage.size"),
    ({"storageClassName": "fast"}, "spec.storage.storageClassName"),
    ({"retainOnDelete": False}, "spec.storage.retainOnDelete"),
])
def test_a_claim_the_operator_does_not_create_refuses_the_fields_it_ignores(
        claim: dict[str, Any], storage: dict[str, Any], path: str) -> None:
    spec = {**MINIMAL, **claim}
    spec["storage"] = {**spec.get("storage", {}), **storage}
    issues = issues_of(cr(spec))
    assert list(issues) == [path]
    assert issues[path].startswith(f"{path.removeprefix('spec.')} ")
    assert "existingClaim" in issues[path] and "pvc://" in issues[path]


def test_existing_claim_is_refused_with_pvc_weights() -> None:
    spec = {"model": {"name": "deepseek-r1-distill-qwen-7b", "uri": "pvc://models/qwen-7b"},
            "storage": {"existingClaim": "cache"}}
    issues = issues_of(cr(spec))
    assert list(issues) == ["spec.storage.existingClaim"]
    assert "pvc://" in issues["spec.storage.existingClaim"]


def test_existing_claim_keeps_the_defaults_and_retain_true() -> None:
    spec = parse_spec({**MINIMAL, "storage": {"existingClaim": "models", "retainOnDelete": True}})
    assert (spec.storage.size, spec.storage.retain_on_delete) == ("", True)


@pytest.mark.parametrize(("engine", "args", "fmt"), [
    ("vllm", [], "16-bit"),
    ("vllm", ["--kv-cache-dtype", "fp8"], "fp8"),
    ("vllm", ["--kv-cache-dtype=fp8_e5m2"], "fp8"),
    ("vllm", ["--kv_cache_dtype=fp8_e4m3"], "fp8"),
    ("vllm", ["--kv-cache-dt", "fp8"], "fp8"),
    ("vllm", ["--kv-cache-dtype", "fp8", "--kv-cache-dtype", "auto"], "16-bit"),
    ("vllm", ["--enforce-eager", "--kv-cache-dtype", "bfloat16"], "16-bit"),
    ("sglang", ["--kv-cache-dtype", "fp8_e4m3"], "fp8"),
    ("sglang", ["--kv-cache-dtype", "bf16"], "16-bit"),
])
def test_engine_args_set_the_kv_cache_format(engine: str, args: list[str], fmt: str) -> None:
    spec = parse_spec({**MINIMAL, "engine": {"type": engine, "args": args}})
    assert spec.engine.kv_cache_format == fmt


@pytest.mark.parametrize(("engine", "args", "index"), [
    ("vllm", ["--kv-cache-dtype", "fp4_e2m1"], 0),
    ("vllm", ["--enforce-eager", "--kv-cache-dtype=fp8_ds_mla"], 1),
    ("vllm", ["--kv-cache-dtype", "bf16"], 0),  # SGLang's spelling; vLLM says bfloat16
    ("sglang", ["--kv-cache-dtype", "fp8"], 0),  # vLLM's spelling; SGLang names the format
    ("sglang", ["--kv-cache-dtype", "fp8_e4m3", "--kv-cache-dtype"], 2),
])
def test_a_kv_cache_dtype_sizing_does_not_know_is_refused(
        engine: str, args: list[str], index: int) -> None:
    issues = issues_of(cr({**MINIMAL, "engine": {"type": engine, "args": args}}))
    path = f"spec.engine.args[{index}]"
    assert list(issues) == [path]
    assert issues[path].startswith("--kv-cache-dtype ")
    assert "fp8_e5m2 (fp8)" in issues[path] and "auto (16-bit)" in issues[path]


def test_an_empty_resource_field_divisor_is_refused() -> None:
    """The apiserver cannot convert an empty quantity (it answers 500), so the API refuses
    it; an absent divisor stays the default."""
    from deepseek_operator.api import InvalidSpecError

    env = [{"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                               "divisor": ""}}}]
    with pytest.raises(InvalidSpecError) as refused:
        parse_spec({"model": {"name": "deepseek-r1-distill-qwen-1.5b"}, "engine": {"env": env}})
    assert "engine.env[0].valueFrom.resourceFieldRef.divisor" in str(refused.value)
    del env[0]["valueFrom"]["resourceFieldRef"]["divisor"]
    parse_spec({"model": {"name": "deepseek-r1-distill-qwen-1.5b"}, "engine": {"env": env}})
