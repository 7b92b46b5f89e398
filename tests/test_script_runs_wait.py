"""The rendered ``wait-for-model`` init container run as a real process (e2e/rig/container.py)
against an empty, a partial, a foreign and a complete model cache.

Design (render/pod.py, templates/scripts/wait-for-model.sh.j2): the engine pod does not
start its engine until the download Job's marker holds this source; until then the init
container prints ``waiting for SOURCE in MODEL_DIR`` every 10 s and never fails by itself
(a failed download shows in ModelCached, not in the pod). Locally MODEL_DIR is the mapped
directory; in a pod it reads /models/....
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.rig.container import LocalContainer, container, find, render

from deepseek_operator.render.source import MARKER_FILE

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "manifests" / "samples" / "distill-llama-8b-l4.yaml"
SOURCE = "hf://deepseek-ai/DeepSeek-R1-Distill-Llama-8B@main"
POLL_S = 10  # the script's sleep between checks


@pytest.fixture(scope="module")
def init(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The rendered wait-for-model init container of the sample's Deployment."""
    objects = render([yaml.safe_load(SAMPLE.read_text())], tmp_path_factory.mktemp("render"))
    return container(find(objects, "Deployment", "distill-llama-8b"), "wait-for-model")


def cache(init: dict[str, Any], root: Path) -> tuple[LocalContainer, Path]:
    """The container mapped onto ``root`` and its local MODEL_DIR."""
    run = LocalContainer(init, root)
    return run, Path(run.env["MODEL_DIR"])


def test_the_rendered_container_reads_the_cache_read_only_at_the_sources_directory(
        init: dict[str, Any]) -> None:
    env = {var["name"]: var["value"] for var in init["env"]}
    assert env["MODEL_SOURCE_ID"] == SOURCE
    assert env["MODEL_DIR"] == "/models/hf/deepseek-ai/DeepSeek-R1-Distill-Llama-8B"
    assert init["volumeMounts"] == [{"name": "model-cache", "mountPath": "/models",
                                     "readOnly": True}]


@pytest.mark.parametrize("state", ["empty", "partial", "other-source"])
def test_it_waits_and_says_for_what_until_the_marker_holds_this_source(
        init: dict[str, Any], tmp_path: Path, state: str) -> None:
    run, model_dir = cache(init, tmp_path)
    if state != "empty":
        model_dir.mkdir(parents=True)
        (model_dir / "config.json").write_text("{}")
        (model_dir / "model-00001-of-00002.safetensors").write_bytes(b"\0" * 4096)
    if state == "other-source":  # the cache of an earlier revision
        (model_dir / MARKER_FILE).write_text(SOURCE.replace("@main", "@v0.9"))
    process = run.start()
    try:
        process.wait_until(lambda: bool(process.lines), 10)
        time.sleep(1.5)
        assert process.process.poll() is None, f"it must keep waiting: {process.log}"
        assert process.lines == [f"waiting for {SOURCE} in {model_dir}"]
    finally:
        process.kill()


def test_it_returns_at_once_from_a_complete_cache(init: dict[str, Any], tmp_path: Path) -> None:
    run, model_dir = cache(init, tmp_path)
    model_dir.mkdir(parents=True)
    (model_dir / MARKER_FILE).write_text(SOURCE)
    process = run.start()
    assert process.wait(10) == 0
    assert process.lines == [f"model cache holds {SOURCE}"]


def test_it_returns_within_one_poll_once_the_download_completes(
        init: dict[str, Any], tmp_path: Path) -> None:
    run, model_dir = cache(init, tmp_path)
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    process = run.start()
    try:
        process.wait_until(lambda: bool(process.lines), 10)
        (model_dir / f"{MARKER_FILE}.tmp").write_text(SOURCE)
        (model_dir / f"{MARKER_FILE}.tmp").rename(model_dir / MARKER_FILE)  # as the Job does
        written = time.monotonic()
        assert process.wait(POLL_S + 5) == 0, process.log
        assert time.monotonic() - written <= POLL_S + 5
        assert process.lines[0] == f"waiting for {SOURCE} in {model_dir}"
        assert process.lines[-1] == f"model cache holds {SOURCE}"
    finally:
        process.kill()
