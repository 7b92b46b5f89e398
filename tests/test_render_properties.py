"""Properties of rendering over generated specs (hypothesis): every spec the API accepts
either renders to valid, deterministic, correctly owned objects or is refused with the
documented InvalidSpecError naming a field; no other exception escapes."""

from typing import Any

import kubernetes_validate
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from kubernetes_validate.utils import SchemaNotFoundError

from deepseek_operator.api import API_VERSION, KIND, InvalidSpecError, parse_deployment
from deepseek_operator.catalog import gpu_catalog, model_catalog
from deepseek_operator.render import RenderSettings, children_selector, render

SETTINGS = RenderSettings(pod_monitor=True)
DNS_LABEL = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
ANY_TEXT = st.text(max_size=24)
PERMISSIONS = ["model:read", "model:write", "system:configure", "model:query"]

weight_uris = st.one_of(
    st.builds("hf://{}/{}".format, DNS_LABEL, st.from_regex(r"[-\w.]{1,20}", fullmatch=True)),
    st.builds("s3://{}/{}".format, DNS_LABEL, st.from_regex(r"\S{0,20}", fullmatch=True)),
    st.builds("pvc://{}/{}".format, DNS_LABEL, st.from_regex(r"[a-z0-9/._-]{0,20}",
                                                             fullmatch=True)),
)
uris = st.one_of(st.just(""), weight_uris)
facts = st.fixed_dictionaries(
    {
        "paramsB": st.floats(0.5, 800),
        "numAttentionHeads": st.sampled_from([8, 12, 28, 32, 40, 64, 128]),
        "numHiddenLayers": st.integers(1, 96),
        "hiddenSize": st.integers(512, 16384),
        "kvBytesPerToken": st.integers(1024, 1 << 20),
        "maxPositionEmbeddings": st.integers(4096, 262144),
    },
    optional={"attention": st.sampled_from(["gqa", "mla"]), "diskGB": st.floats(0, 2000)},
)
model = st.fixed_dictionaries(
    {"name": st.sampled_from(list(model_catalog()))},
    optional={
        "uri": uris,
        "revision": st.sampled_from(["main", "v1.0", "refs/pr/1"]),
        "quantization": st.sampled_from(["none", "fp8", "int8", "awq", "gptq"]),
        "maxModelLen": st.integers(128, 200_000),
        "servedName": st.from_regex(r"[-a-zA-Z0-9_./:]{0,20}", fullmatch=True),
        "credentialsSecret": st.sampled_from(["", "hf-token"]),
    },
)
custom_model = st.fixed_dictionaries(
    {"name": st.just("my-model"), "uri": weight_uris, "facts": facts,
     "maxModelLen": st.integers(128, 4096)},
)
env_var = st.one_of(
    st.fixed_dictionaries({"name": st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True),
                           "value": ANY_TEXT}),
    st.fixed_dictionaries({
        "name": st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True),
        "valueFrom": st.fixed_dictionaries({"secretKeyRef": st.fixed_dictionaries(
            {"name": DNS_LABEL, "key": DNS_LABEL})}),
    }),
)
engine = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["vllm", "sglang"]),
        "image": st.one_of(st.just(""), ANY_TEXT),
        "args": st.lists(ANY_TEXT, max_size=4),
        "env": st.lists(env_var, max_size=4, unique_by=lambda v: str(v["name"])),
        "gpuMemoryUtilization": st.floats(0.1, 1.0),
    },
)
gpu = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["", *gpu_catalog()]),
        "count": st.sampled_from([0, 0, 1, 2, 3, 4, 8, 16, 24, 32]),
        "perNode": st.sampled_from([1, 2, 4, 8, 16]),
        "maxConcurrentSequences": st.integers(1, 128),
    },
)
query = st.one_of(
    st.just(""),
    ANY_TEXT,
    st.sampled_from(['sum(rate(x{namespace="{namespace}",pod=~"{pod_regex}"}[1m]))',
                     'sum(rate(x{app="{name}"}[1m]))', "rate(x{{unknown}}[1m])"]),
)
autoscaling = st.fixed_dictionaries(
    {},
    optional={
        "mode": st.sampled_from(["operator", "hpa", "keda", "none"]),
        "minReplicas": st.integers(0, 3),
        "maxReplicas": st.integers(1, 6),
        "targetQPSPerReplica": st.floats(1e-6, 1000, exclude_min=True),
        "intervalSeconds": st.integers(5, 120),
        "scaleUpStabilizationSeconds": st.integers(0, 600),
        "scaleDownStabilizationSeconds": st.integers(0, 600),
        "scaleToZeroIdleSeconds": st.integers(0, 3600),
        "prometheus": st.fixed_dictionaries({"query": query}),
    },
)
storage = st.fixed_dictionaries(
    {},
    optional={
        "size": st.sampled_from(["", "100Gi", "1Ti", "500G"]),
        "storageClassName": st.sampled_from(["", "fast"]),
        "accessMode": st.sampled_from(["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]),
        "existingClaim": st.sampled_from(["", "shared-models"]),
        "retainOnDelete": st.booleans(),
    },
)
roles = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True),
    st.lists(st.sampled_from(PERMISSIONS), min_size=1, max_size=4, unique=True),
    min_size=1,
    max_size=3,
)
subject = st.one_of(
    st.fixed_dictionaries({"kind": st.sampled_from(["User", "Group"]),
                           "name": st.text(min_size=1, max_size=20)}),
    st.fixed_dictionaries({"kind": st.just("ServiceAccount"), "name": DNS_LABEL},
                          optional={"namespace": DNS_LABEL}),
)


@st.composite
def access(draw: st.DrawFn) -> dict[str, Any]:
    role_map = draw(roles)
    bindings = draw(st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(sorted(role_map)),
                               "subjects": st.lists(subject, min_size=1, max_size=3)}),
        max_size=3,
    ))
    return {"roles": role_map, "bindings": bindings}


toleration = st.fixed_dictionaries(
    {"key": DNS_LABEL, "operator": st.just("Equal"), "value": DNS_LABEL,
     "effect": st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule"])}
)
node_term = st.fixed_dictionaries(
    {"matchExpressions": st.lists(st.fixed_dictionaries(
        {"key": DNS_LABEL, "operator": st.just("In"), "values": st.lists(DNS_LABEL, min_size=1,
                                                                           max_size=2)}),
        max_size=2)}
)
affinity = st.one_of(
    st.just({}),
    st.builds(
        lambda terms: {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms}}},
        st.lists(node_term, max_size=2),
    ),
    # Not a NodeAffinity where the GPU requirement must be merged: refused by field.
    st.sampled_from([{"nodeAffinity": "x"}, {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [1]}}}]),
)
scheduling = st.fixed_dictionaries(
    {},
    optional={
        "nodeSelector": st.dictionaries(DNS_LABEL, DNS_LABEL, max_size=2),
        "tolerations": st.lists(toleration, max_size=2),
        "affinity": affinity,
        "priorityClassName": st.sampled_from(["", "high"]),
        "runtimeClassName": st.sampled_from(["", "nvidia"]),
    },
)
specs = st.fixed_dictionaries(
    {"model": st.one_of(model, model, model, custom_model)},
    optional={
        "engine": engine,
        "gpu": gpu,
        "replicas": st.integers(0, 5),
        "autoscaling": autoscaling,
        "storage": storage,
        "access": access(),
        "scheduling": scheduling,
        "service": st.fixed_dictionaries({"type": st.just(
            "ClusterIP"), "port": st.integers(1, 65535)}),
    },
)


def validate(obj: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(obj, "1.37.0", strict=True)
    except SchemaNotFoundError:
        assert obj["kind"] in {"LeaderWorkerSet", "ScaledObject", "PodMonitor"}


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=specs, name=DNS_LABEL)
def test_accepted_specs_render_or_are_refused_by_field(spec: dict[str, Any], name: str) -> None:
    body = {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": name, "namespace": "ns", "uid": "uid-1"}, "spec": spec}
    try:
        dsd = parse_deployment(body)
    except InvalidSpecError:
        event("refused by the API")
        return
    try:
        objects = render(dsd, SETTINGS)
    except InvalidSpecError as error:
        event(f"refused at {error.issues[0].path.split('.')[1]}")
        assert all(issue.path.startswith("spec.") and issue.message for issue in error.issues)
        return
    event("rendered")
    assert yaml.safe_dump_all(objects, sort_keys=False) == yaml.safe_dump_all(
        render(parse_deployment(body), SETTINGS), sort_keys=False)
    selector = dict(term.split("=") for term in children_selector(name).split(","))
    for obj in objects:
        assert selector.items() <= obj["metadata"]["labels"].items()
        validate(obj)
    (workload,) = [o for o in objects if o["kind"] in ("Deployment", "LeaderWorkerSet")]
    template = workload["spec"].get("template") or workload["spec"]["leaderWorkerTemplate"][
        "leaderTemplate"]
    (container,) = template["spec"]["containers"]
    user_args = list(dsd.spec.engine.args)
    assert container["args"][len(container["args"]) - len(user_args):] == user_args
