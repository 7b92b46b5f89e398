"""`deepseek-operator status NAME`: the pipeline view of one DeepSeekDeployment."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek_operator import cli
from deepseek_operator.pipeline_view import pipeline_text, progress_bar

T = "2026-01-01T00:00:00Z"


def _cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": T}


DOWNLOADING: dict[str, Any] = {
    "metadata": {"name": "r1", "namespace": "ai"},
    "spec": {"model": {"name": "deepseek-r1"}, "autoscaling": {"mode": "operator"}},
    "status": {
        "phase": "Downloading",
        "conditions": [
            _cond("StorageReady", "True", "ClaimBound",
                  "PersistentVolumeClaim r1-model-cache is Bound"),
            _cond("ModelCached", "False", "Downloading",
                  "Job r1-download-1a2b3c4d is downloading the weights: 200.1 GiB of 641.7 "
                  "GiB (31.2 %), 112.4 MiB/s over the last minute, about 1h07m left"),
            _cond("Ready", "False", "Downloading", "Job r1-download-1a2b3c4d is downloading"),
            _cond("AutoscalerReady", "Unknown", "AwaitingFirstDecision",
                  "the operator's autoscaler has not decided yet"),
        ],
        "modelCache": {"bytesPresent": 200 * 2**30, "bytesExpected": 640 * 2**30,
                       "percent": 31.2, "bytesPerSecond": 112.4 * 2**20, "etaSeconds": 4020},
        "desiredReplicas": 2, "readyReplicas": 0, "replicas": 0,
        "endpoint": "http://deepseek-gateway.deepseek-operator-system.svc/v1",
    },
}


def test_a_running_download_shows_a_bar_and_its_figures() -> None:
    assert pipeline_text(DOWNLOADING).splitlines() == [
        "ai/r1: Downloading (model deepseek-r1)",
        "claim     ok  ClaimBound: PersistentVolumeClaim r1-model-cache is Bound",
        "download  ..  Downloading: Job r1-download-1a2b3c4d is downloading the weights",
        "              [#########---------------------]  31.2 %  200.0 / 640.0 GiB  "
        "112.4 MiB/s  ETA 1h07m",
        "workload  ..  Downloading: 0/2 replicas ready (0 exist)",
        "scaling   ..  mode operator: the operator's autoscaler has not decided yet",
        "endpoint  ok  http://deepseek-gateway.deepseek-operator-system.svc/v1",
    ]


def test_a_stall_is_marked_as_a_problem_with_its_message() -> None:
    stalled = {**DOWNLOADING, "status": {**DOWNLOADING["status"], "conditions": [
        _cond("ModelCached", "False", "DownloadStalled",
              "Job r1-download-1a2b3c4d made no progress for 15m00s")]}}
    lines = pipeline_text(stalled).splitlines()
    assert lines[1] == "claim     ..  not reported yet"
    assert lines[2] == ("download  !!  DownloadStalled: Job r1-download-1a2b3c4d made no "
                        "progress for 15m00s")


def test_a_stalled_deployment_says_what_is_blocked_and_why() -> None:
    message = "spec.model.uri: must be hf://ORG/REPO, s3://BUCKET/PATH or pvc://CLAIM/PATH"
    invalid = {"metadata": {"name": "r1", "namespace": "ai"},
               "spec": {"model": {"name": "deepseek-r1"}},
               "status": {"phase": "Failed", "observedGeneration": 1, "conditions": [
                   _cond("Ready", "False", "InvalidSpec", message),
                   _cond("Stalled", "True", "InvalidSpec", message),
                   _cond("Progressing", "False", "InvalidSpec", "waiting for a spec change")],
                   "readyReplicas": 0, "replicas": 0, "desiredReplicas": 0}}
    assert pipeline_text(invalid).splitlines() == [
        "ai/r1: Failed (model deepseek-r1)",
        f"stalled   !!  InvalidSpec: {message}",
        "claim     !!  blocked: stalled by InvalidSpec",
        "download  !!  blocked: stalled by InvalidSpec",
        "workload  !!  InvalidSpec: 0/0 replicas ready (0 exist)",
        "scaling   !!  mode operator: blocked: stalled by InvalidSpec",
        "endpoint  ..  none yet",
    ]


def test_a_serving_deployment_shows_the_scaling_decision() -> None:
    ready = {"metadata": {"name": "small", "namespace": "ai"},
             "spec": {"model": {"name": "deepseek-r1-distill-qwen-7b"}},
             "status": {"phase": "Ready", "conditions": [
                 _cond("ModelCached", "True", "Downloaded", "Job small-download-1 filled it"),
                 _cond("Ready", "True", "ReplicasReady", "2/2 replicas ready"),
                 _cond("AutoscalerReady", "True", "MetricsAvailable", "ok")],
                 "autoscaling": {"desiredReplicas": 2, "observedQPS": 3.5,
                                 "reason": "ceil(3.50 / 2.00) = 2"},
                 "readyReplicas": 2, "desiredReplicas": 2, "replicas": 2}}
    lines = pipeline_text(ready).splitlines()
    assert lines[2] == "download  ok  Downloaded: Job small-download-1 filled it"
    assert lines[3] == "workload  ok  ReplicasReady: 2/2 replicas ready (2 exist)"
    assert lines[4] == "scaling   ok  mode operator: 2 replicas at 3.50 QPS: ceil(3.50 / 2.00) = 2"
    assert lines[5] == "endpoint  ..  none yet"


def test_progress_bar_bounds() -> None:
    assert progress_bar(0, 4) == "[----]"
    assert progress_bar(100, 4) == "[####]"
    assert progress_bar(250, 4) == "[####]"


def test_status_command_prints_the_view(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("deepseek_operator.pipeline_view.fetch",
                        lambda namespace, name: DOWNLOADING if name == "r1" else None)
    assert cli.main(["status", "r1", "-n", "ai"]) == 0
    assert capsys.readouterr().out == pipeline_text(DOWNLOADING) + "\n"
    assert cli.main(["status", "nope", "-n", "ai"]) == 1
    assert "deepseekdeployment ai/nope not found" in capsys.readouterr().err
