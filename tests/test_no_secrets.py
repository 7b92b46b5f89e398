"""No secret in a spec, an argument, a ConfigMap or a message: every sample rendered with
an engine API key (`deepseek-operator render`) holds the key only as a Secret reference,
and every hostile spec that tries to put a secret where others can read it is refused with
messages (the ones status and events show) that never quote it."""

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deepseek_operator.api import parse_deployment
from deepseek_operator.api.secrets import (
    ENGINE_API_KEY_ENV,
    RESERVED_ENV,
    VLLM_API_KEY_ENV,
    is_secret_env_name,
    is_secret_flag_arg,
)
from deepseek_operator.cli import EXIT_INVALID, main
from deepseek_operator.render import RenderSettings
from deepseek_operator.render import render as render_objects

ROOT = Path(__file__).parent.parent
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))
VALUE = "sk-test-123-never-in-output"
KEY_REF = {"name": "engine-api-key", "key": "token"}


def render(cr: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
           ) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `deepseek-operator render -f` on `cr`, as the chart
    runs the operator (with the gateway's ServiceAccount)."""
    path = tmp_path / "cr.yaml"
    path.write_text(yaml.safe_dump(cr))
    code = main(["render", "-f", str(path), "--gateway-service-account",
                 "deepseek-operator-system/deepseek-gateway"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container and init container anywhere in a rendered object."""
    if isinstance(node, dict):
        for key in ("containers", "initContainers"):
            yield from node.get(key) or []
        for value in node.values():
            yield from containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from containers(item)


def with_key(sample: Path, engine: str) -> dict[str, Any]:
    cr = yaml.safe_load(sample.read_text())
    cr["spec"].setdefault("engine", {}).update(type=engine, apiKeySecret=KEY_REF)
    return dict(cr)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_a_sample_with_an_api_key_holds_only_the_reference(
        sample: Path, engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = render(with_key(sample, engine), tmp_path, capsys)
    assert code == 0, err
    objects = [o for o in yaml.safe_load_all(out) if o]
    assert "Secret" not in {o["kind"] for o in objects}
    (role,) = [o for o in objects if o["kind"] == "Role"
               and o["metadata"]["name"].endswith(".engine-api-key")]
    assert role["rules"][0]["resourceNames"] == [KEY_REF["name"]]
    serving = 0
    for obj in objects:
        for container in containers(obj):
            for var in container.get("env") or []:
                if is_secret_env_name(var["name"]) or var["name"] in RESERVED_ENV:
                    assert "value" not in var, (obj["kind"], var)
            args = container.get("args") or []
            for index, arg in enumerate(args):
                if is_secret_flag_arg(arg):
                    assert (arg, args[index + 1]) == ("--api-key", f"$({ENGINE_API_KEY_ENV})")
            name = VLLM_API_KEY_ENV if engine == "vllm" else ENGINE_API_KEY_ENV
            if container["name"] == "engine":
                serving += 1
                assert {"name": name, "valueFrom": {"secretKeyRef": KEY_REF}} in container["env"]
    assert serving >= 1
    runtime = next(o for o in objects if o["kind"] == "ConfigMap"
                   and o["metadata"]["name"].endswith("-runtime"))
    assert yaml.safe_load(runtime["data"]["runtime.yaml"])["apiKeySecret"] == KEY_REF


HOSTILE: list[dict[str, Any]] = [
    {"args": ["--api-key", VALUE]},
    {"args": [f"--api-key={VALUE}"]},
    {"args": [f"--api_key={VALUE}"]},
    {"args": ["--api-k", VALUE]},
    {"args": [f"--api-key {VALUE}"]},
    {"args": ["--hf-token", VALUE]},
    {"type": "sglang", "args": ["--admin-api-key", VALUE]},
    {"args": [f"--enable-prefix-caching {VALUE}"]},  # a flag and a value in one string
    {"args": ["--seed", "1" * 4096 + VALUE]},  # too long
    {"env": [{"name": "HF_TOKEN", "value": VALUE}]},
    {"env": [{"name": "HUGGING_FACE_HUB_TOKEN", "value": VALUE}]},
    {"env": [{"name": "OPENAI_API_KEY", "value": VALUE}]},
    {"env": [{"name": VLLM_API_KEY_ENV, "value": VALUE}]},
    {"env": [{"name": ENGINE_API_KEY_ENV, "valueFrom": {"secretKeyRef": KEY_REF}}]},
    {"env": [{"name": "NOT_A_SECRET_NAME", "value": VALUE * 3000}]},  # too long
    {"env": [{"name": "HF_TOKEN", "value": VALUE,
              "valueFrom": {"secretKeyRef": KEY_REF}}]},
]


@pytest.mark.parametrize("engine", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_spec_is_refused_without_quoting_the_secret(
        engine: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cr = with_key(SAMPLES[0], "vllm")
    cr["spec"]["engine"] = {**copy.deepcopy(engine), "apiKeySecret": KEY_REF}
    code, out, err = render(cr, tmp_path, capsys)
    assert code == EXIT_INVALID
    assert out == ""
    assert "spec.engine." in err
    assert VALUE not in err and VALUE[:12] not in err


@pytest.mark.parametrize("uri", [
    f"s3://AKIAIOSFODNN7EXAMPLE:{VALUE}@bucket/path",
    f"s3://user:{VALUE}@bucket/path",
    f"hf://user:{VALUE}@org/repo",
    f"https://user:{VALUE}@example.com/weights",
    f"s3://bucket/{VALUE}" + "x" * 1024,  # too long
])
def test_a_model_uri_with_credentials_is_refused_without_quoting_it(
        uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cr = yaml.safe_load(SAMPLES[0].read_text())
    cr["spec"]["model"]["uri"] = uri
    code, out, err = render(cr, tmp_path, capsys)
    assert (code, out) == (EXIT_INVALID, "")
    assert "spec.model.uri" in err
    assert VALUE not in err and VALUE[:12] not in err
    if len(uri) <= 1024:
        assert "spec.model.credentialsSecret" in err


@pytest.mark.parametrize("engine", [
    {"args": [f"--seed={index}" for index in range(1000)] + [VALUE]},  # too many
    {"env": [{"name": f"V{index}", "value": VALUE} for index in range(1000)]},  # too many
    {"args": VALUE},  # not a list
    {"env": {"HF_TOKEN": VALUE}},  # not a list
])
def test_a_hostile_engine_list_is_refused_without_quoting_it(
        engine: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cr = yaml.safe_load(SAMPLES[0].read_text())
    cr["spec"]["engine"] = engine
    code, _, err = render(cr, tmp_path, capsys)
    assert code == EXIT_INVALID
    assert "spec.engine." in err
    assert VALUE not in err and VALUE[:12] not in err


def test_a_prometheus_url_is_never_quoted(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cr = yaml.safe_load(SAMPLES[0].read_text())
    cr["spec"]["autoscaling"] = {"mode": "hpa", "prometheus": {"url": f"ftp://u:{VALUE}@x"}}
    code, _, err = render(cr, tmp_path, capsys)
    assert code == EXIT_INVALID
    assert "prometheus.url" in err
    assert VALUE not in err and VALUE[:12] not in err


def test_the_gateway_may_get_exactly_the_key_secret_and_the_operator_may_grant_it() -> None:
    cr = with_key(SAMPLES[0], "vllm")
    cr["metadata"]["namespace"] = "ai"
    dsd = parse_deployment(cr)
    name = cr["metadata"]["name"]
    plain = render_objects(dsd, RenderSettings())
    assert not [o for o in plain if o["metadata"]["name"].endswith(".engine-api-key")]
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render_objects(
        dsd, RenderSettings(gateway_service_account="deepseek-operator-system/deepseek-gateway"))}
    role = objects[("Role", f"{name}.engine-api-key")]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"],
                              "resourceNames": [KEY_REF["name"]], "verbs": ["get"]}]
    binding = objects[("RoleBinding", f"{name}.engine-api-key")]
    assert binding["roleRef"]["name"] == f"{name}.engine-api-key"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "deepseek-gateway",
                                    "namespace": "deepseek-operator-system"}]
    # The operator holds get on secrets (it may grant only what it has); the gateway not.
    # The kustomize base is the chart rendered (make manifests).
    base = (ROOT / "manifests" / "base" / "operator.yaml").read_text()
    roles = {d["metadata"]["name"]: d for d in yaml.safe_load_all(base)
             if d and d["kind"] == "ClusterRole"}
    for role_name, expected in (("deepseek-operator", True),
                                ("deepseek-operator-gateway", False)):
        holds = any("secrets" in rule["resources"] and "get" in rule["verbs"]
                    for rule in roles[role_name]["rules"])
        assert holds is expected, role_name


def test_a_gateway_service_account_must_be_namespace_slash_name() -> None:
    for bad in ("deepseek-gateway", "a/b/c", "NS/name", "/name"):
        with pytest.raises(ValueError, match="NAMESPACE/NAME"):
            RenderSettings(gateway_service_account=bad)
