"""The operator's settings (controller/settings.py): flags over environment variables over
defaults, one validation for both, and what they change in rendered objects."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek_operator.api import parse_deployment
from deepseek_operator.controller.settings import (
    MIN_PERIOD_SECONDS,
    OperatorSettings,
    SettingsError,
    env_var,
    flag,
    load,
    unknown_variables,
)
from deepseek_operator.render import DEFAULT_ENGINE_IMAGES, DEFAULT_S3_DOWNLOAD_IMAGE, render
from deepseek_operator.render.service import endpoint


def _dsd(spec: dict[str, Any]) -> Any:
    return parse_deployment({"apiVersion": "deepseek-operator.io/v1alpha1",
                             "kind": "DeepSeekDeployment",
                             "metadata": {"name": "r1", "namespace": "ai"}, "spec": spec})


def _kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind)


def test_every_setting_has_a_flag_and_a_variable_the_run_command_knows() -> None:
    from deepseek_operator.cli import build_parser

    run = next(a for a in build_parser()._subparsers._group_actions
               if a.dest == "command").choices["run"]
    flags = {option for action in run._actions for option in action.option_strings}
    for name in OperatorSettings.model_fields:
        assert flag(name) in flags, name
        assert env_var(name) == "DEEPSEEK_OPERATOR_" + name.upper()
    assert "DEEPSEEK_OPERATOR_NAMESPACES" in (run.description or "")


def test_environment_sets_what_no_flag_gives_and_a_flag_wins(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSEEK_OPERATOR_CLUSTER_DOMAIN", "corp.internal")
    monkeypatch.setenv("DEEPSEEK_OPERATOR_NAMESPACES", "team-a, team-b")
    monkeypatch.setenv("DEEPSEEK_OPERATOR_RUN_AS_USER", "2000")
    monkeypatch.setenv("DEEPSEEK_OPERATOR_SCRAPER_POD_SELECTOR", "app=prom,team=obs")
    # Variables of the test tooling share the prefix; they are not settings.
    monkeypatch.setenv("DEEPSEEK_OPERATOR_STATE", "/somewhere")
    settings = load({"run_as_user": "3000"})
    assert settings.cluster_domain == "corp.internal"
    assert settings.namespaces == ("team-a", "team-b")
    assert settings.run_as_user == 3000
    assert settings.scraper_pod_selector == (("app", "prom"), ("team", "obs"))
    assert load({"namespaces": ["x"]}).namespaces == ("x",)


def test_an_empty_variable_keeps_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSEEK_OPERATOR_CLUSTER_DOMAIN", "")
    assert load().cluster_domain == "cluster.local"


def test_every_bad_setting_is_named_and_no_value_is_echoed() -> None:
    with pytest.raises(SettingsError) as error:
        load({"registry_prefix": "mirror example", "run_as_group": "0",
              "hf_download_image": "x'; rm -rf /", "resync_seconds": "inf"})
    problems = error.value.problems
    assert [p.split(":")[0] for p in problems] == [
        "--resync-seconds / DEEPSEEK_OPERATOR_RESYNC_SECONDS",
        "--hf-download-image / DEEPSEEK_OPERATOR_HF_DOWNLOAD_IMAGE",
        "--registry-prefix / DEEPSEEK_OPERATOR_REGISTRY_PREFIX",
        "--run-as-group / DEEPSEEK_OPERATOR_RUN_AS_GROUP",
    ]
    assert not any("rm -rf" in p or "^" in p for p in problems)


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(SettingsError, match="unknown setting 'cluster_domian'"):
        load({"cluster_domian": "x"})


def test_registry_prefix_moves_the_pinned_images_not_the_given_ones() -> None:
    settings = load({"registry_prefix": "mirror.example.com:5000/hub/",
                     "sglang_image": "own.registry/sglang:v1"}).render_settings()
    assert settings.vllm_image == f"mirror.example.com:5000/hub/{DEFAULT_ENGINE_IMAGES['vllm']}"
    assert settings.sglang_image == "own.registry/sglang:v1"
    assert settings.s3_download_image == f"mirror.example.com:5000/hub/{DEFAULT_S3_DOWNLOAD_IMAGE}"
    assert settings.hf_download_image == ""
    plain = load().render_settings()
    assert plain.vllm_image == DEFAULT_ENGINE_IMAGES["vllm"]
    assert plain.s3_download_image == DEFAULT_S3_DOWNLOAD_IMAGE


def test_settings_reach_the_rendered_objects() -> None:
    settings = load({"registry_prefix": "mirror.local", "cluster_domain": "corp.internal",
                     "run_as_user": "2000", "run_as_group": "3000",
                     "storage_class": "fast-ssd"}).render_settings()
    objects = render(_dsd({"model": {"name": "deepseek-r1-distill-qwen-1.5b"}}), settings)
    pod = _kind(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"mirror.local/{DEFAULT_ENGINE_IMAGES['vllm']}"
    assert pod["securityContext"]["runAsUser"] == 2000
    assert pod["securityContext"]["runAsGroup"] == 3000
    job_pod = _kind(objects, "Job")["spec"]["template"]["spec"]
    assert job_pod["securityContext"]["fsGroup"] == 3000
    assert job_pod["containers"][0]["image"] == f"mirror.local/{DEFAULT_ENGINE_IMAGES['vllm']}"
    claim = _kind(objects, "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    dsd = _dsd({"model": {"name": "deepseek-r1-distill-qwen-1.5b"}})
    assert endpoint(dsd, settings) == "http://r1.ai.svc.corp.internal:8000/v1"


def test_a_class_in_the_spec_wins_over_the_operator_default() -> None:
    settings = load({"storage_class": "fast-ssd"}).render_settings()
    objects = render(_dsd({"model": {"name": "deepseek-r1-distill-qwen-1.5b"},
                           "storage": {"storageClassName": "nfs"}}), settings)
    assert _kind(objects, "PersistentVolumeClaim")["spec"]["storageClassName"] == "nfs"
    plain = render(_dsd({"model": {"name": "deepseek-r1-distill-qwen-1.5b"}}),
                   load().render_settings())
    assert "storageClassName" not in _kind(plain, "PersistentVolumeClaim")["spec"]


@pytest.mark.parametrize("prefix", [
    "http://x/", "https://mirror.example.com", "UPPER/Case", "Mirror.example.com",
    "mirror.example.com/Hub", "mirror.example.com:port", "mirror..example.com", "-mirror",
    "mirror.example.com//hub", "mirror.example.com/hub/_x", "mirror example",
])
def test_a_registry_prefix_that_would_spoil_every_default_image_is_refused(
        prefix: str) -> None:
    with pytest.raises(SettingsError) as error:
        load({"registry_prefix": prefix})
    (problem,) = error.value.problems
    assert problem.startswith("--registry-prefix / DEEPSEEK_OPERATOR_REGISTRY_PREFIX: must be "
                              "a registry host[:port][/path] in lowercase, without a scheme")
    assert prefix not in problem


@pytest.mark.parametrize("prefix", [
    "", "mirror.local", "localhost:5000", "mirror.example.com:5000/hub/",
    "registry-1.example.com/team_a/docker-hub", "10.0.0.1:5000/x.y",
])
def test_a_lowercase_registry_host_port_and_path_is_accepted(prefix: str) -> None:
    assert load({"registry_prefix": prefix}).registry_prefix == prefix


@pytest.mark.parametrize("name", ["relist_seconds", "resync_seconds"])
def test_relist_and_resync_periods_have_a_floor(name: str) -> None:
    with pytest.raises(SettingsError, match=f"{flag(name)} / {env_var(name)}: Input should be "
                                            "greater than or equal to 10"):
        load({name: "0.0001"})
    assert getattr(load({name: str(MIN_PERIOD_SECONDS)}), name) == MIN_PERIOD_SECONDS


def test_unknown_variables_of_the_prefix_are_named_but_not_the_tooling_ones() -> None:
    environ = {"DEEPSEEK_OPERATOR_RELIST_SECOND": "5", "DEEPSEEK_OPERATOR_STATE": "/x",
               "DEEPSEEK_OPERATOR_CACHE": "/y", "DEEPSEEK_OPERATOR_CLUSTER_DOMAIN": "a.b",
               "deepseek_operator_verbose": "1", "DEEPSEEK_OPERATOR_TOKEN": "secret-value",
               "HOME": "/root"}
    assert unknown_variables(environ) == ["DEEPSEEK_OPERATOR_RELIST_SECOND",
                                          "DEEPSEEK_OPERATOR_TOKEN"]


def test_a_bad_gateway_url_is_refused_without_quoting_it() -> None:
    with pytest.raises(SettingsError) as error:
        load({"gateway_url": "ftp://user:hunter2-secret@gateway"})
    assert "not an http(s) base URL" in str(error.value)
    assert "hunter2" not in str(error.value)
