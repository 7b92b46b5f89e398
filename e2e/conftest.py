"""Session fixtures for the e2e suite: a real control plane and per-test namespaces.

The control plane is the one named by ``KUBECONFIG`` when that is set; otherwise the
session brings up the local one (``python -m e2e.cluster up``) and, if it started it, stops
it again at the end so nothing is left running.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from e2e.cluster import build, controlplane, paths
from e2e.kube import api_client, wait_for
from e2e.operator_process import OperatorProcess, install_manifests
from e2e.rig.fixtures import rig_fleet, rig_load, rig_prometheus  # noqa: F401  (fixtures)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under e2e/ as e2e, so `-m "not e2e"` runs the unit tests alone."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    """Path of an admin kubeconfig for a running control plane."""
    given = os.environ.get("KUBECONFIG")
    if given:
        yield Path(given)
        return
    was_running = controlplane.running()
    path = controlplane.up()
    yield path
    if not was_running:
        controlplane.down()


@pytest.fixture(scope="session")
def kube(kubeconfig: Path) -> client.ApiClient:
    """An admin ApiClient (group system:masters)."""
    return api_client(kubeconfig)


@pytest.fixture
def namespace(kube: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test (with its default ServiceAccount), deleted afterwards."""
    core = client.CoreV1Api(kube)
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(f"ServiceAccount {name}/default",
             lambda: any(sa.metadata.name == "default"
                         for sa in core.list_namespaced_service_account(name).items), 30)
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Iterator[Path]:
    """The kubectl binary built by the project's tooling."""
    yield build.build_all()["kubectl"]


@pytest.fixture(scope="session")
def operator(kubeconfig: Path, kubectl: Path) -> Iterator[OperatorProcess]:
    """The CRDs and RBAC installed, and the operator running as its ServiceAccount."""
    install_manifests(kubectl, kubeconfig)
    proc = OperatorProcess(controlplane.kubeconfig_path("operator"),
                           paths.state_dir() / "logs" / "operator-e2e.log")
    proc.start()
    yield proc
    proc.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
        item: pytest.Item, call: pytest.CallInfo[None],
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item, so fixtures can see a failure."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def dsd_api(request: pytest.FixtureRequest, kube: client.ApiClient,
            operator: OperatorProcess) -> Iterator[client.CustomObjectsApi]:
    """CustomObjectsApi for DeepSeekDeployments; when the test fails, the operator's log
    tail is printed (pytest shows it with the failure)."""
    yield client.CustomObjectsApi(kube)
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(f"--- operator log tail ({operator.log_path}) ---\n{operator.log_tail()}")
