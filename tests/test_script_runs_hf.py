"""The rendered hf:// download Job container, run as a real process (e2e/rig/container.py)
with the real huggingface_hub client and its ``hf`` CLI against a local endpoint that
answers as the Hub does (e2e/rig/hf_hub.py, HF_ENDPOINT pointing at it).

The container is the one ``deepseek-operator render`` prints for the L4 sample with an
hf:// uri and a credentials Secret; /models and /tmp are mapped into the test's directory.
Failures are followed through the operator's status code into ModelCached
(e2e/rig/download_status.py).
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.rig.container import LocalContainer, container, find, half_written, render
from e2e.rig.download_status import failed_download_condition
from e2e.rig.hf_hub import HubRepo, LocalHub

from deepseek_operator.api.conditions import REASON_DOWNLOAD_FAILED
from deepseek_operator.render.download import PERMANENT_FAILURE_EXIT_CODE
from deepseek_operator.render.source import MARKER_FILE

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "manifests" / "samples" / "distill-llama-8b-l4.yaml"
SECRET = "hf-token"
GRANTED, OTHER = "hf_granted_token", "hf_other_token"
FILES = {"config.json": b'{"model_type": "llama"}', "tokenizer.json": os.urandom(4096),
         "model-00001-of-00002.safetensors": os.urandom(400 * 1024),
         "model-00002-of-00002.safetensors": os.urandom(300 * 1024)}
TOTAL = sum(len(data) for data in FILES.values())
REPOS = {"model": HubRepo("org/model", FILES),
         "gated": HubRepo("org/gated", FILES, gated=True, readers=frozenset({GRANTED})),
         "private": HubRepo("org/private", FILES, private=True, readers=frozenset({GRANTED}))}
FAST_S = 30.0  # a permanent error must end the container well within this
VENV_BIN = Path(sys.executable).parent  # .venv/bin: python3 with huggingface_hub, and `hf`


@pytest.fixture
def hub() -> Iterator[LocalHub]:
    """The local Hub serving REPOS; it knows the tokens GRANTED and OTHER."""
    with LocalHub(list(REPOS.values()), tokens=frozenset({GRANTED, OTHER})) as running:
        yield running


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The rendered download container of the sample per repository: model, gated,
    private, and missing (org/missing, which the Hub does not hold)."""
    sample = yaml.safe_load(SAMPLE.read_text())
    crs = []
    for name in [*REPOS, "missing"]:
        cr = copy.deepcopy(sample)
        cr["metadata"]["name"] = name
        cr["spec"]["model"] |= {"uri": f"hf://org/{name}", "credentialsSecret": SECRET}
        crs.append(cr)
    objects = render(crs, tmp_path_factory.mktemp("render"))
    return {name: container(find(objects, "Job", f"{name}-download-"), "download")
            for name in [*REPOS, "missing"]}


def local(spec: dict[str, Any], root: Path, hub: LocalHub,
          token: str | None = None) -> LocalContainer:
    """``spec`` mapped onto ``root``, its Secret holding HF_TOKEN ``token`` (None: a Secret
    without it), the Hub at ``hub``."""
    secret = {"HF_TOKEN": token} if token else {}
    return LocalContainer(spec, root, tools=[VENV_BIN], secrets={SECRET: secret},
                          extra_env={"HF_ENDPOINT": hub.url, "PROGRESS_SECONDS": "1"})


def test_complete_download_writes_the_marker_after_every_file(
        hub: LocalHub, jobs: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    run = local(jobs["model"], tmp_path, hub)
    process = run.start()
    assert process.wait(120) == 0, process.log
    model_dir = Path(run.env["MODEL_DIR"])
    assert model_dir == tmp_path / "model-cache" / "hf" / "org" / "model"
    for name, data in FILES.items():
        assert (model_dir / name).read_bytes() == data, name
    assert (model_dir / MARKER_FILE).read_text() == "hf://org/model@main"
    assert not (model_dir / ".download-errors.log").exists(), "work files stay out"
    # Only the Hub's model API and files (and the registry huggingface_hub 2.x reads for its
    # user agent); no update check against PyPI, which leaves this file when it runs.
    paths = {path for _, path, _ in hub.state.requests} - {"/api/agent-harnesses"}
    assert all(p.startswith(("/api/models/org/model/", "/org/model/resolve/")) for p in paths), \
        paths
    assert not (Path(run.env["HOME"]) / ".cache" / "huggingface" / ".check_for_update_done"
                ).exists()


def test_a_gated_repository_downloads_with_a_granted_token(
        hub: LocalHub, jobs: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    run = local(jobs["gated"], tmp_path, hub, GRANTED)
    process = run.start()
    assert process.wait(120) == 0, process.log
    assert (Path(run.env["MODEL_DIR"]) / MARKER_FILE).read_text() == "hf://org/gated@main"


def test_a_download_killed_half_way_leaves_no_marker_and_the_rerun_completes(
        hub: LocalHub, jobs: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    hub.state.rate = 150 * 1024
    first = local(jobs["model"], tmp_path, hub)
    model_dir = Path(first.env["MODEL_DIR"])
    process = first.start()

    process.wait_until(half_written(model_dir, MARKER_FILE, TOTAL), 60)
    process.kill()  # SIGKILL: a node lost, an OOM kill: nothing gets to clean up
    assert not (model_dir / MARKER_FILE).exists()
    assert list(model_dir.rglob("*.incomplete")), "huggingface_hub leaves its partial files"
    assert any((model_dir / n).is_file() is False or (model_dir / n).read_bytes() != d
               for n, d in FILES.items()), "the kill came before the end"

    # The rerun meets the Hub down: `hf download` would take the non-empty local dir for
    # a usable copy; the script must not write the marker over a partial model.
    hub.state.outage = True
    down = local(jobs["model"], tmp_path, hub).start()
    code = down.wait(120)
    assert code not in (0, PERMANENT_FAILURE_EXIT_CODE), down.log  # retried, not final
    assert not (model_dir / MARKER_FILE).exists()
    assert "(retried)" in down.termination_message()

    hub.state.outage, hub.state.rate = False, None
    rerun = local(jobs["model"], tmp_path, hub).start()
    assert rerun.wait(120) == 0, rerun.log
    for name, data in FILES.items():
        assert (model_dir / name).read_bytes() == data, name
    assert (model_dir / MARKER_FILE).read_text() == "hf://org/model@main"
    assert not list(model_dir.rglob("*.incomplete")), "the killed run's partial files are gone"
    # huggingface_hub 2.x names each partial file per process (PR 4228), so a rerun does not
    # resume a file half-way: it keeps the files that were whole and fetches the rest.
    assert not hub.ranged_gets()


@pytest.mark.parametrize(("repo", "token", "said"), [
    ("gated", None, "org/gated is gated and no HF_TOKEN was given (spec.model.credentialsSecret)"
                    " (HTTP 401)"),
    ("gated", OTHER, "org/gated is gated and HF_TOKEN has not been granted access (HTTP 403)"),
    ("gated", "hf_revoked_token", "the Hub refused HF_TOKEN (HTTP 401: Invalid credentials"),
    ("private", None, "repository org/private not found, or private and no HF_TOKEN was given"),
    ("private", OTHER, "repository org/private not found, or private and HF_TOKEN cannot read "
                       "it (HTTP 404)"),
    ("missing", GRANTED, "repository org/missing not found, or private and HF_TOKEN cannot "
                         "read it (HTTP 404)"),
    ("missing", None, "repository org/missing not found"),
], ids=["gated-no-token", "gated-no-access", "gated-unknown-token", "private-no-token",
        "private-other-token", "missing", "missing-anonymous"])
def test_refused_or_missing_repositories_fail_at_once_and_say_why_in_model_cached(
        hub: LocalHub, jobs: dict[str, dict[str, Any]], tmp_path: Path,
        repo: str, token: str | None, said: str) -> None:
    run = local(jobs[repo], tmp_path, hub, token)
    process = run.start()
    assert process.wait(FAST_S) == PERMANENT_FAILURE_EXIT_CODE, process.log
    assert time.monotonic() - process.started < FAST_S
    message = process.termination_message()
    assert message.startswith(f"permanent download error for org/{repo}@main: "), message
    assert said in message
    model_dir = Path(run.env["MODEL_DIR"])
    assert not (model_dir / MARKER_FILE).exists()
    assert not [p for p in model_dir.rglob("*") if p.is_file()], "nothing written"
    cached = failed_download_condition(PERMANENT_FAILURE_EXIT_CODE, message)
    assert cached.status == "False" and cached.reason == REASON_DOWNLOAD_FAILED
    assert said in cached.message
