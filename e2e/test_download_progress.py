"""Download progress, stall and deadline on the local control plane.

The download Job's pod of a model at s3://e2e-slow/weights keeps running on the kwok node
(the e2e-download-runs Stage). Its container log is served by kwok's ClusterLogs from
controlplane.DOWNLOAD_LOG, through the apiserver's pods/log as on a real node; the test
writes into it the output of the real download script, run as a local process against the
local S3 server (e2e/rig/s3.py) through a proxy that throttles, stalls and resumes. The
operator runs with --download-poll-seconds 5 (e2e/conftest.py).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from deepseek_operator.api.constants import GROUP, PLURAL, VERSION
from deepseek_operator.controller.reconciler import PROGRESS_WRITE_SECONDS
from e2e.cluster import controlplane
from e2e.kube import wait_for
from e2e.rig.s3 import TOTAL, Download, ThrottleProxy, s3_server, tools
from e2e.test_controller import (
    condition,
    create,
    get,
    operator_writes,
    run_kubectl,
    small_model,
    utc_now,
)

SLOW_URI = "s3://e2e-slow/weights"


@pytest.fixture(scope="module")
def s3() -> Iterator[int]:
    """The local S3 server with the rig's bucket; its port."""
    with s3_server(tools()) as port:
        yield port


def _slow(name: str, **download: Any) -> dict[str, Any]:
    body = small_model(name)
    body["spec"]["model"]["uri"] = SLOW_URI
    body["spec"]["download"] = download
    return body


def _cache(obj: dict[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("modelCache") or {})


def _write_log(line: str) -> None:
    with controlplane.download_log_path().open("a") as log:
        log.write(controlplane.container_log_line(line))


def _running_download_pod(kube: client.ApiClient, namespace: str) -> str | None:
    pods = client.CoreV1Api(kube).list_namespaced_pod(
        namespace, label_selector="batch.kubernetes.io/job-name").items
    return next((p.metadata.name for p in pods if p.status.phase == "Running"), None)


def test_progress_stall_and_resume_reach_status_printer_column_and_cli(
        kube: client.ApiClient, dsd_api: client.CustomObjectsApi, namespace: str,
        kubectl: Path, kubeconfig: Path, s3: int, tmp_path: Path) -> None:
    since, started = utc_now(), time.monotonic()
    create(dsd_api, namespace, _slow("slow", stallSeconds=30))
    pod = wait_for("the download pod running",
                   lambda: _running_download_pod(kube, namespace), 90)
    proxy = ThrottleProxy(s3, rate=64 * 1024, stall_after=TOTAL // 2)
    download = Download(tools(), tmp_path, proxy.port, on_line=_write_log)
    try:
        logs = run_kubectl(kubectl, kubeconfig, "-n", namespace, "logs", pod, "--tail=1")
        assert "deepseek-operator-progress" in logs or logs == "", logs

        midway = wait_for("figures on the way in status", lambda: (
            lambda o: o if 0 < _cache(o).get("percent", 0) < 100 else None)(
                get(dsd_api, namespace, "slow")), 90)
        cached = condition(midway, "ModelCached")
        assert cached["reason"] == "Downloading"
        assert "GiB of" in cached["message"]
        assert _cache(midway)["bytesExpected"] == TOTAL
        table = run_kubectl(kubectl, kubeconfig, "-n", namespace, "get", "dsd", "slow")
        header, row = table.splitlines()[:2]
        start = header.index("DOWNLOAD%")  # columns are aligned; empty ones are blank
        assert 0 < float(row[start:].split()[0]) < 100, table
        view = subprocess.run(
            [sys.executable, "-m", "deepseek_operator.cli", "status", "slow", "-n", namespace],
            capture_output=True, text=True, check=True,
            env={"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}).stdout
        # By now the source may have stalled for stallSeconds: either reason, with the bar.
        assert "download  ..  Downloading" in view or "download  !!  DownloadStalled" in view
        assert "[#" in view and " %  " in view, view

        stalled = wait_for("DownloadStalled", lambda: (
            lambda o: o if condition(o, "ModelCached").get("reason") == "DownloadStalled"
            else None)(get(dsd_api, namespace, "slow")), 120)
        assert "made no progress" in condition(stalled, "ModelCached")["message"]
        events = client.CoreV1Api(kube).list_namespaced_event(namespace).items
        assert any(e.type == "Warning" and e.reason == "DownloadStalled" for e in events)

        proxy.resume()
        assert download.process.wait(120) == 0, download.log
        done = wait_for("100 % in status", lambda: (
            lambda o: o if _cache(o).get("percent") == 100 else None)(
                get(dsd_api, namespace, "slow")), 90)
        assert condition(done, "ModelCached")["reason"] == "Downloading", \
            "the pod still runs (kwok), so the Job is not complete yet"
        # Status writes of the whole download: progress coalesced to one per
        # PROGRESS_WRITE_SECONDS, plus the urgent ones (the first status, the stall).
        elapsed = time.monotonic() - started
        writes = [w for w in operator_writes(since)
                  if w[1] == "deepseekdeployments/status" and w[2] == "slow"]
        print(f"status writes: {len(writes)} in {elapsed:.0f} s of download")
        assert len(writes) <= elapsed / PROGRESS_WRITE_SECONDS + 3
    finally:
        download.stop()
        proxy.close()


def test_the_deadline_fails_the_job_and_status_says_so(
        dsd_api: client.CustomObjectsApi, namespace: str) -> None:
    create(dsd_api, namespace, _slow("deadline", activeDeadlineSeconds=5))
    obj = wait_for("ModelCached DownloadFailed", lambda: (
        lambda o: o if condition(o, "ModelCached").get("reason") == "DownloadFailed"
        else None)(get(dsd_api, namespace, "deadline")), 120)
    message = condition(obj, "ModelCached")["message"]
    assert "DeadlineExceeded: the download ran longer than its deadline, " \
           "activeDeadlineSeconds 5 (5s" in message
    assert "delete the Job" in message
    assert obj["status"]["phase"] == "Failed"

    # A longer deadline in the spec does not rewrite what the failed Job failed on: the
    # Job is left as it failed until it is deleted, as the message says.
    generation = dsd_api.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "deadline",
        {"spec": {"download": {"activeDeadlineSeconds": 3600}}})["metadata"]["generation"]
    edited = wait_for("the edit observed", lambda: (
        lambda o: o if o["status"].get("observedGeneration") == generation else None)(
            get(dsd_api, namespace, "deadline")), 60)
    assert condition(edited, "ModelCached")["reason"] == "DownloadFailed"
    assert "activeDeadlineSeconds 5 (5s" in condition(edited, "ModelCached")["message"]
    jobs = client.BatchV1Api(dsd_api.api_client).list_namespaced_job(
        namespace, label_selector="deepseek-operator.io/deployment=deadline").items
    assert [j.spec.active_deadline_seconds for j in jobs] == [5]
