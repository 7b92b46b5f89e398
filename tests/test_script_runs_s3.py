"""The rendered s3:// download Job container, run as a real process (e2e/rig/container.py)
against a local S3 server (moto, e2e/rig/s3.py) that checks credentials as S3 does.

The container is the one ``deepseek-operator render`` prints for the L4 sample with an
s3:// uri; its /models and /tmp are mapped into the test's directory. What the script
leaves for the kubelet (its termination message) is fed through the operator's own status
code (e2e/rig/download_status.py), so each test checks the ModelCached a user would read.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from e2e.rig.container import LocalContainer, container, find, half_written, render
from e2e.rig.download_status import failed_download_condition
from e2e.rig.s3 import BUCKET, FILES, PREFIX, TOTAL, ThrottleProxy, s3_server, tools

from deepseek_operator.api.conditions import REASON_DOWNLOAD_FAILED
from deepseek_operator.render.download import PERMANENT_FAILURE_EXIT_CODE
from deepseek_operator.render.source import MARKER_FILE

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "manifests" / "samples" / "distill-llama-8b-l4.yaml"
SECRET = "s3-creds"
# The sources under test, by CR name: the bucket's model, a prefix with nothing under it,
# a bucket that does not exist.
SOURCES = {"whole": f"s3://{BUCKET}/{PREFIX}", "empty-prefix": f"s3://{BUCKET}/no-such-model",
           "no-bucket": "s3://no-such-bucket/r1"}
FAST_S = 20.0  # a permanent error must end the container well within this


@dataclass(frozen=True)
class Moto:
    """The S3 endpoint and the access key of an IAM user allowed s3:*."""

    url: str
    port: int
    key_id: str
    secret: str


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    """moto's S3 holding s3://weights-bucket/r1/, an IAM user with an access key, and then
    authentication switched on (moto's /moto-api/reset-auth): from there on a request is
    refused unless signed with a key moto issued, as S3 refuses it."""
    bin_dir = tools()
    with s3_server(bin_dir) as port:
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": url}

        def aws(*args: str) -> Any:
            out = subprocess.run([str(bin_dir / "aws"), *args], env=env, check=True,
                                 capture_output=True, text=True).stdout
            return json.loads(out) if out.strip() else {}

        aws("iam", "create-user", "--user-name", "downloader")
        key = aws("iam", "create-access-key", "--user-name", "downloader")["AccessKey"]
        aws("iam", "put-user-policy", "--user-name", "downloader", "--policy-name", "read",
            "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        requests.post(f"{url}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        yield Moto(url, port, key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The rendered download container of the sample, per entry of SOURCES."""
    sample = yaml.safe_load(SAMPLE.read_text())
    crs = []
    for name, uri in SOURCES.items():
        cr = copy.deepcopy(sample)
        cr["metadata"]["name"] = name
        cr["spec"]["model"] |= {"uri": uri, "credentialsSecret": SECRET}
        crs.append(cr)
    objects = render(crs, tmp_path_factory.mktemp("render"))
    return {name: container(find(objects, "Job", f"{name}-download-"), "download")
            for name in SOURCES}


def local(spec: dict[str, Any], root: Path, secret: dict[str, str]) -> LocalContainer:
    """``spec`` mapped onto ``root`` with Secret SECRET holding ``secret``."""
    return LocalContainer(spec, root, tools=[tools()], secrets={SECRET: secret},
                          extra_env={"PROGRESS_SECONDS": "1", "AWS_DEFAULT_REGION": "us-east-1",
                                     "AWS_EC2_METADATA_DISABLED": "true"})


def good(moto: Moto, port: int | None = None) -> dict[str, str]:
    """The Secret's keys for moto's IAM user, toward ``port`` (default: moto itself)."""
    return {"AWS_ACCESS_KEY_ID": moto.key_id, "AWS_SECRET_ACCESS_KEY": moto.secret,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port or moto.port}"}


def weights(run: LocalContainer) -> Path:
    """The local directory of MODEL_DIR."""
    return Path(run.env["MODEL_DIR"])


def test_complete_download_writes_the_marker_after_every_object(
        moto: Moto, jobs: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    run = local(jobs["whole"], tmp_path, good(moto))
    process = run.start()
    assert process.wait(120) == 0, process.log
    model_dir = weights(run)
    assert model_dir == tmp_path / "model-cache" / "s3" / BUCKET / PREFIX
    assert {p.name: p.stat().st_size for p in model_dir.iterdir()} == \
        FILES | {MARKER_FILE: len(SOURCES["whole"])}, "only the weights and the marker"
    assert (model_dir / MARKER_FILE).read_text() == SOURCES["whole"]
    # A second run (the Job recreated with the same source) skips the download.
    again = run.start()
    assert again.wait(60) == 0
    assert again.lines[-1] == f"model cache holds {SOURCES['whole']} in {model_dir}"


def test_a_download_killed_half_way_leaves_no_marker_and_the_rerun_completes(
        moto: Moto, jobs: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    proxy = ThrottleProxy(moto.port, rate=200 * 1024)
    try:
        first = local(jobs["whole"], tmp_path, good(moto, proxy.port))
        model_dir = weights(first)
        process = first.start()

        process.wait_until(half_written(model_dir, MARKER_FILE, TOTAL), 60)
        process.kill()  # SIGKILL: a node lost, an OOM kill: nothing gets to clean up
    finally:
        proxy.close()
    assert not (model_dir / MARKER_FILE).exists()
    whole = {p.name for p in model_dir.iterdir() if FILES.get(p.name) == p.stat().st_size}
    assert whole != set(FILES), "the kill came before the end"

    partial = {p.name for p in model_dir.iterdir()} - set(FILES)
    assert partial, "the aws CLI leaves its partial files (NAME.<8 characters>)"
    rerun = local(jobs["whole"], tmp_path, good(moto)).start()
    assert rerun.wait(120) == 0, rerun.log
    assert (model_dir / MARKER_FILE).read_text() == SOURCES["whole"]
    assert {p.name: p.stat().st_size for p in model_dir.iterdir()} == \
        FILES | {MARKER_FILE: len(SOURCES["whole"])}, "the killed run's partial files are gone"


@pytest.mark.parametrize(("secret", "said"), [
    ({}, "Unable to locate credentials"),
    ({"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-key"},
     "InvalidAccessKeyId"),
    ({"AWS_SECRET_ACCESS_KEY": "wrong-secret"}, "SignatureDoesNotMatch"),
], ids=["missing", "unknown-key", "wrong-secret"])
def test_refused_credentials_fail_at_once_and_say_why_in_model_cached(
        moto: Moto, jobs: dict[str, dict[str, Any]], tmp_path: Path,
        secret: dict[str, str], said: str) -> None:
    keys = good(moto)
    if secret:
        keys |= secret
    else:
        keys = {"AWS_ENDPOINT_URL": keys["AWS_ENDPOINT_URL"]}
    run = local(jobs["whole"], tmp_path, keys)
    process = run.start()
    assert process.wait(FAST_S) == PERMANENT_FAILURE_EXIT_CODE, process.log
    assert time.monotonic() - process.started < FAST_S
    message = process.termination_message()
    assert message.startswith(f"permanent download error for {SOURCES['whole']}: ")
    assert said in message
    assert not (weights(run) / MARKER_FILE).exists()
    cached = failed_download_condition(PERMANENT_FAILURE_EXIT_CODE, message)
    assert cached.status == "False" and cached.reason == REASON_DOWNLOAD_FAILED
    assert said in cached.message and "exit code 3" in cached.message


@pytest.mark.parametrize(("name", "said"), [
    ("no-bucket", "NoSuchBucket"),
    ("empty-prefix", "no objects under this prefix"),
])
def test_a_missing_bucket_or_prefix_fails_at_once_without_a_marker(
        moto: Moto, jobs: dict[str, dict[str, Any]], tmp_path: Path,
        name: str, said: str) -> None:
    run = local(jobs[name], tmp_path, good(moto))
    process = run.start()
    assert process.wait(FAST_S) == PERMANENT_FAILURE_EXIT_CODE, process.log
    message = process.termination_message()
    assert message.startswith(f"permanent download error for {SOURCES[name]}: ")
    assert said in message
    assert not (weights(run) / MARKER_FILE).exists()
    cached = failed_download_condition(PERMANENT_FAILURE_EXIT_CODE, message)
    assert cached.reason == REASON_DOWNLOAD_FAILED and said in cached.message
