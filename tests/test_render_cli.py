"""`deepseek-operator render`: golden files of the samples, YAML streams in and out, errors."""

import io
from pathlib import Path

import pytest
import yaml

from deepseek_operator.cli import EXIT_INVALID, main

ROOT = Path(__file__).parent.parent
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))
REFUSED = ROOT / "manifests" / "samples" / "refused" / "r1-single-a100-40gb.yaml"
GOLDEN = Path(__file__).parent / "golden"

SMALL = """\
apiVersion: deepseek-operator.io/v1alpha1
kind: DeepSeekDeployment
metadata:
  name: {name}
spec:
  model: {{name: deepseek-r1-distill-qwen-1.5b, maxModelLen: 4096}}
  gpu: {{type: L4-24GB, maxConcurrentSequences: {concurrency}}}
"""


def test_every_sample_has_a_golden_file() -> None:
    assert SAMPLES
    assert sorted(p.name for p in GOLDEN.glob("*.yaml")) == [p.name for p in SAMPLES]


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_renders_to_its_golden_file(
    sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", "-f", str(sample)]) == 0
    out = capsys.readouterr().out
    assert out == (GOLDEN / sample.name).read_text(), "run `make golden` and review the diff"


def test_the_article_claim_is_refused_with_the_numbers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["render", "-f", str(REFUSED)]) == EXIT_INVALID
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith(f"error: {REFUSED}: document 1 (r1-single-a100): spec.gpu.count: ")
    assert "641.7 GiB" in line and "36.0 GiB usable" in line


def test_several_documents_render_into_one_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crs = tmp_path / "crs.yaml"
    crs.write_text(SMALL.format(name="a", concurrency=1) + "---\n---\n"
                   + SMALL.format(name="b", concurrency=2))
    assert main(["render", "-f", str(crs), "-n", "team"]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    instances = {d["metadata"]["labels"]["app.kubernetes.io/instance"] for d in documents}
    assert instances == {"a", "b"}
    assert {d["metadata"]["namespace"] for d in documents} == {"team"}
    assert [d["kind"] for d in documents].count("Deployment") == 2


def test_stdin_and_pod_monitors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(SMALL.format(name="a", concurrency=1)))
    assert main(["render", "-f", "-", "--pod-monitor"]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out)]
    assert kinds[-1] == "PodMonitor"


def test_errors_name_the_file_document_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crs = tmp_path / "crs.yaml"
    crs.write_text(SMALL.format(name="good", concurrency=1) + "---\n"
                   + SMALL.format(name="bad", concurrency=0))
    assert main(["render", "-f", str(crs)]) == EXIT_INVALID
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing is printed unless every document renders
    assert captured.err.startswith(
        f"error: {crs}: document 2 (bad): spec.gpu.maxConcurrentSequences: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: [", "line "),
        ("- just\n- a list\n", "document 1: must be a mapping"),
        (SMALL.format(name="a", concurrency=1).replace("metadata:\n  name: a", "metadata: a"),
         "document 1: metadata: must be a mapping"),
        (SMALL.format(name="a", concurrency=1).replace("name: a", "name: a\n  namespace: x"),
         "metadata.namespace: is 'x' but namespace 'y' was asked"),
    ],
)
def test_malformed_input_exits_2(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cr.yaml"
    path.write_text(text)
    assert main(["render", "-f", str(path), "-n", "y"]) == EXIT_INVALID
    assert message in capsys.readouterr().err


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(tmp_path / "nope.yaml")]) == EXIT_INVALID
    assert "cannot read" in capsys.readouterr().err


def test_a_file_without_documents_exits_2(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n")
    assert main(["render", "-f", str(path)]) == EXIT_INVALID
    assert capsys.readouterr().err == f"error: {path}: no DeepSeekDeployment to render\n"


def test_an_invalid_namespace_names_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(SAMPLES[0]), "-n", "Bad_NS!"]) == EXIT_INVALID
    assert "metadata.namespace" in capsys.readouterr().err


NAMESPACE_DOC = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ai}\n"
SECRET_DOC = "apiVersion: v1\nkind: Secret\nmetadata: {name: hf-token}\n"


def test_documents_of_other_kinds_are_skipped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crs = tmp_path / "crs.yaml"
    crs.write_text(NAMESPACE_DOC + "---\n" + SMALL.format(name="a", concurrency=1) + "---\n"
                   + SECRET_DOC)
    assert main(["render", "-f", str(crs), "-n", "ai"]) == 0
    captured = capsys.readouterr()
    kinds = [d["kind"] for d in yaml.safe_load_all(captured.out)]
    assert "Deployment" in kinds and "Namespace" not in kinds and "Secret" not in kinds
    assert captured.err == (f"skipped 2 document(s) of other kinds: {crs}: document 1 "
                            f"(Namespace ai); {crs}: document 3 (Secret hf-token)\n")


def test_a_file_without_a_deepseekdeployment_exits_2_naming_what_was_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ns.yaml"
    path.write_text(NAMESPACE_DOC)
    assert main(["render", "-f", str(path)]) == EXIT_INVALID
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"skipped 1 document(s) of other kinds: {path}: document 1 (Namespace ai)",
        f"error: {path}: no DeepSeekDeployment to render",
    ]


def test_a_document_without_kind_is_an_error_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cr.yaml"
    path.write_text(SMALL.format(name="a", concurrency=1).replace("kind: DeepSeekDeployment\n", ""))
    assert main(["render", "-f", str(path)]) == EXIT_INVALID
    assert capsys.readouterr().err.startswith(f"error: {path}: document 1 (a): kind: ")


def test_scale_to_zero_renders_with_the_gateway_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cr = yaml.safe_load(SMALL.format(name="z", concurrency=1))
    cr["spec"]["autoscaling"] = {"mode": "keda", "minReplicas": 0}
    path = tmp_path / "zero.yaml"
    path.write_text(yaml.safe_dump(cr))
    assert main(["render", "-f", str(path)]) == EXIT_INVALID
    assert "spec.autoscaling.minReplicas" in capsys.readouterr().err
    assert main(["render", "-f", str(path), "--gateway"]) == 0
    (scaled,) = [d for d in yaml.safe_load_all(capsys.readouterr().out)
                 if d["kind"] == "ScaledObject"]
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    assert 'deepseek_gateway_queued_requests{namespace="default",deployment="z"}' in query
