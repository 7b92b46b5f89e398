"""The command line: models, size and crd; errors on stderr with exit code 2."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deepseek_operator.api import parse_spec
from deepseek_operator.api.crd import crd_yaml
from deepseek_operator.catalog import get_model, gpu_catalog, model_catalog, size_deployment
from deepseek_operator.cli import build_parser, main, sizing_rows


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def rows(out: str) -> dict[str, str]:
    """The size table as label -> value (labels are separated by two spaces or more)."""
    table = {}
    for line in out.splitlines():
        label, _, value = line.partition("  ")
        table[label] = value.strip()
    return table


def test_models_lists_every_model_and_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "models")
    assert (code, err) == (0, "")
    lines = [line for line in out.splitlines() if line]
    assert lines[0].split()[:3] == ["MODEL", "PARAMS", "ACTIVE"]
    for name, model in model_catalog().items():
        assert any(line.split()[0] == name and model.repo in line for line in lines)
    for name, gpu in gpu_catalog().items():
        assert any(line.split()[0] == name and str(gpu.memory_mib) in line for line in lines)


def test_size_prints_the_layout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "size", "--model", "deepseek-r1", "--gpu", "H100-80GB")
    assert (code, err) == (0, "")
    table = rows(out)
    assert table["gpus per replica"] == "16"
    assert table["tensor parallel"] == "8"
    assert table["pipeline parallel"] == "2"
    assert table["nodes per replica"] == "2"
    assert table["kv cache"].endswith("(16 sequences x 32768 tokens x 70272 B/token)")
    assert "GiB usable" in table["per gpu"]


def test_size_options_reach_the_spec(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "size",
        "--model",
        "deepseek-r1-distill-qwen-32b",
        "--gpu",
        "H100-80GB",
        "--max-model-len",
        "16384",
        "--concurrency",
        "8",
        "--engine",
        "sglang",
        "--gpu-memory-utilization",
        "0.85",
    )
    assert code == 0
    table = rows(out)
    assert table["tensor parallel"] == "2"
    assert table["engine"] == "sglang"
    assert "x 0.85" in table["per gpu"]
    assert table["kv cache"].startswith("32.0 GiB (8 sequences x 16384 tokens")


def test_size_without_gpu_uses_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "size", "--model", "deepseek-r1-distill-qwen-7b")
    assert code == 0
    assert rows(out)["gpu"].startswith("H100-80GB (reference")


def test_fp8_on_ampere_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "size", "--model", "deepseek-r1", "--gpu", "A100-80GB")
    assert code == 0
    assert "Marlin" in rows(out)["weights format"]


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        (
            ["--model", "deepseek-r1", "--gpu", "A100-40GB", "--gpu-count", "1"],
            "spec.gpu.count (--gpu-count)",
        ),
        (["--model", "deepseek-r2"], "spec.model.name (--model)"),
        (["--model", "deepseek-r1", "--gpu", "V100"], "spec.gpu.type (--gpu)"),
        (
            ["--model", "deepseek-r1", "--max-model-len", "50"],
            "spec.model.maxModelLen (--max-model-len)",
        ),
        (["--model", "deepseek-r1", "--quantization", "awq"], "spec.model.uri (--uri)"),
    ],
)
def test_size_errors_name_the_field_and_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], where: str
) -> None:
    code, out, err = run(capsys, "size", *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"error: {where}: ")


def test_invalid_choice_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["size", "--model", "deepseek-r1", "--engine", "tgi"])
    assert caught.value.code == 2
    assert "--engine" in capsys.readouterr().err


def test_crd_prints_the_generated_crd(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "crd")
    assert (code, out) == (0, crd_yaml())
    target = tmp_path / "crd.yaml"
    assert run(capsys, "crd", "--output", str(target))[:2] == (0, "")
    assert target.read_text(encoding="utf-8") == crd_yaml()
    missing = tmp_path / "no-such-dir" / "crd.yaml"
    code, out, err = run(capsys, "crd", "--output", str(missing))
    assert (code, out) == (2, "")
    assert err == f"error: {missing}: cannot write: No such file or directory\n"


def test_console_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deepseek_operator.cli", "size", "--model", "deepseek-r2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "spec.model.name (--model): unknown model 'deepseek-r2'" in done.stderr


def test_an_unknown_flag_is_reported_with_the_commands_usage(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["size", "--model", "deepseek-r1", "--max-concurrent-sequences", "8"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: deepseek-operator size ")
    assert "error: unrecognized arguments: --max-concurrent-sequences 8" in err


def test_size_explains_memory_reserved_above_the_sum(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "size", "--model", "deepseek-r1", "--gpu", "H200-141GB")
    table = rows(out)
    assert code == 0
    assert table["gpu memory reserved"].startswith("943.9 GiB (8 x 118.0 GiB); more than the sum")
    assert table["weights + kv + overhead"] == "703.7 GiB"


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "--metrics-port", "99999"],
     "--metrics-port / DEEPSEEK_OPERATOR_METRICS_PORT: Input should be less than or equal to"),
    (["run", "--metrics-port", "-1"],
     "--metrics-port / DEEPSEEK_OPERATOR_METRICS_PORT: Input should be greater than or equal"),
    (["run", "--relist-seconds", "0"],
     "--relist-seconds / DEEPSEEK_OPERATOR_RELIST_SECONDS: Input should be greater than or "
     "equal to 10"),
    (["run", "--relist-seconds", "soon"],
     "--relist-seconds / DEEPSEEK_OPERATOR_RELIST_SECONDS: Input should be a valid number"),
    (["run", "--liveness", "notaurl"],
     "--liveness / DEEPSEEK_OPERATOR_LIVENESS: Value error, 'notaurl' is not an http://"),
    (["run", "--scraper-pod-selector", "app"],
     "--scraper-pod-selector / DEEPSEEK_OPERATOR_SCRAPER_POD_SELECTOR: Value error, 'app' is"),
    (["run", "--scraper-namespace-selector", "a b=c"],
     "DEEPSEEK_OPERATOR_SCRAPER_NAMESPACE_SELECTOR: Value error, 'a b=c' is not a label"),
    (["run", "--gateway-url", "deepseek-gateway:80"],
     "--gateway-url / DEEPSEEK_OPERATOR_GATEWAY_URL: Value error, not an http(s) base URL"),
    (["run", "--cluster-domain", "Corp Internal"],
     "--cluster-domain / DEEPSEEK_OPERATOR_CLUSTER_DOMAIN: must be a DNS domain"),
    (["run", "--run-as-user", "0"],
     "--run-as-user / DEEPSEEK_OPERATOR_RUN_AS_USER: Input should be greater than or equal"),
    (["run", "--vllm-image", "vllm/vllm openai"],
     "--vllm-image / DEEPSEEK_OPERATOR_VLLM_IMAGE: must be an image reference"),
    (["run", "-n", "Team_A"], "--namespace / DEEPSEEK_OPERATOR_NAMESPACES: must be a namespace"),
])
def test_run_refuses_bad_settings_before_starting(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The settings model validates every flag; the error names the flag and its variable,
    and the operator never starts (exit code 2, before any connection)."""
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_run_warns_of_an_unknown_variable_by_name_only(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DEEPSEEK_OPERATOR_RESYNC_SECOND", "secret-looking-value")
    monkeypatch.setenv("DEEPSEEK_OPERATOR_STATE", "/tmp/state")
    monkeypatch.setenv("DEEPSEEK_OPERATOR_RUN_AS_USER", "0")  # stops before the start
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "warning: DEEPSEEK_OPERATOR_RESYNC_SECOND is not a setting of the operator" in err
    assert "DEEPSEEK_OPERATOR_STATE" not in err
    assert "secret-looking-value" not in err


def test_run_refuses_a_bad_environment_variable_naming_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DEEPSEEK_OPERATOR_STORAGE_CLASS", "Fast SSD")
    monkeypatch.setenv("DEEPSEEK_OPERATOR_AUTOSCALER_TICK_SECONDS", "0.1")
    assert main(["run"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: --autoscaler-tick-seconds / DEEPSEEK_OPERATOR_AUTOSCALER_TICK_SECONDS: "
        "Input should be greater than or equal to 1",
        "error: --storage-class / DEEPSEEK_OPERATOR_STORAGE_CLASS: must be a StorageClass "
        "name (lowercase letters, digits, '-' and '.')",
    ]


def test_render_of_a_binary_file_is_an_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cr.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    assert main(["render", "-f", str(path)]) == 2
    assert capsys.readouterr().err == f"error: {path}: cannot read: not UTF-8 text\n"


def test_size_table_shows_the_kv_cache_the_engine_args_ask_for() -> None:
    spec = parse_spec({"model": {"name": "deepseek-r1"}, "gpu": {"type": "H100-80GB"},
                       "engine": {"args": ["--kv-cache-dtype", "fp8"]}})
    table = dict(sizing_rows(size_deployment(spec)))
    per_token = get_model("deepseek-r1").kv_bytes_per_token // 2
    assert table["kv cache"].endswith(f"(16 sequences x 32768 tokens x {per_token} B/token)")


def _settings(argv: list[str]) -> Any:
    """The OperatorSettings `run ARGV` would start with (flags over the environment)."""
    from deepseek_operator.controller.settings import load, settings_given

    return load(settings_given(vars(build_parser().parse_args(["run", *argv]))))


def test_run_passes_gateway_and_scraper_options_to_rendering() -> None:
    settings = _settings([
        "--gateway", "--scraper-namespace-selector", "kubernetes.io/metadata.name=monitoring",
        "--scraper-pod-selector", "app.kubernetes.io/name=prometheus,team=obs"]).render_settings()
    assert settings.gateway
    assert settings.scraper_namespace_labels == (("kubernetes.io/metadata.name", "monitoring"),)
    assert settings.scraper_pod_labels == (("app.kubernetes.io/name", "prometheus"),
                                           ("team", "obs"))
    defaults = _settings([]).render_settings()
    assert not defaults.gateway and not defaults.gateway_url
    assert defaults.scraper_namespace_labels == ()
    assert defaults.scraper_pod_labels == (("app.kubernetes.io/name", "prometheus"),)


def test_run_takes_the_gateway_url_as_the_endpoint() -> None:
    from deepseek_operator.api.resource import parse_deployment
    from deepseek_operator.render.service import endpoint

    settings = _settings(["--gateway-url", "http://deepseek-gateway.gw.svc/"]).render_settings()
    assert settings.gateway
    dsd = parse_deployment({"apiVersion": "deepseek-operator.io/v1alpha1",
                            "kind": "DeepSeekDeployment",
                            "metadata": {"name": "r1", "namespace": "ai"},
                            "spec": {"model": {"name": "deepseek-r1-distill-qwen-1.5b"}}})
    assert endpoint(dsd, settings) == "http://deepseek-gateway.gw.svc/v1"
